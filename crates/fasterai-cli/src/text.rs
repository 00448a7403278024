//! What commands share about language models: telling one from an image model before loading
//! it, and checking token ids against its vocabulary and context.

use std::path::Path;

use anyhow::{Result, bail};
use fasterai::core::graph::Layer;
use fasterai::core::graph::ops::check_token_ids;
use fasterai::core::io::{ARCHITECTURE_KEY, read_safetensors_metadata};
use fasterai::core::model::{Architecture, Model};

use crate::model_arg::ModelArgs;

/// Whether MODEL is a language-model file (token ids in), from its header alone.
pub fn is_language_model(model: &ModelArgs) -> Result<bool> {
    let path = Path::new(&model.model);
    if !path.is_file() || crate::commands::import::is_onnx(path) {
        return Ok(false);
    }
    let Ok(metadata) = read_safetensors_metadata(path) else {
        return Ok(false);
    };
    let arch = metadata
        .get(ARCHITECTURE_KEY)
        .and_then(|v| v.as_str())
        .and_then(|json| Architecture::from_json(json).ok());
    Ok(arch.is_some_and(|a| a.text.is_some()))
}

/// Rows of the model's token table.
pub fn vocabulary(model: &Model) -> Option<usize> {
    model.net.nodes.iter().find_map(|n| match &n.layer {
        Layer::Embedding(e) => Some(e.weight.dims()[0]),
        _ => None,
    })
}

/// Checks a batch of ids (`tokens` per sequence) against the model's vocabulary and context.
pub fn check_ids(model: &Model, ids: &[f32], tokens: usize) -> Result<()> {
    let Some(vocabulary) = vocabulary(model) else {
        bail!("{} has no token table: not a language model", model.name);
    };
    let context = model.input_shape.first().copied().unwrap_or(0);
    if tokens > context {
        bail!(
            "a sequence of {tokens} tokens is longer than the model's context of {context}; \
             shorten it (or evaluate with a sliding window)"
        );
    }
    check_token_ids(ids, vocabulary).map_err(anyhow::Error::msg)
}

/// A progress bar over `len` units (hidden for JSON output).
pub fn progress(len: u64, unit: &str, hidden: bool) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    let template = format!("{{bar:30}} {{pos}}/{{len}} {unit} ({{elapsed}}, {{per_sec}})");
    indicatif::ProgressBar::new(len)
        .with_style(indicatif::ProgressStyle::with_template(&template).expect("valid template"))
}
