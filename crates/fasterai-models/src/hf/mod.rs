//! Hugging Face checkpoint folders in and out: `config.json` with `model.safetensors` (or
//! shards listed by `model.safetensors.index.json`) in f32, f16 or bf16, and an optional
//! `tokenizer.json`. Tensors are read one at a time as the graph's weights are set, so an
//! import holds one copy of the model, not two.

pub mod config;
pub mod names;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;
use fasterai_core::graph::{Graph, InitScheme, Layer};
use fasterai_core::io::{
    DeferredTensor, StoredTensor, TensorFile, pytorch_tensors, set_deferred_tensors, write_atomic,
    write_float_arrays,
};
use fasterai_core::model::{Model, TextModel};
use safetensors::Dtype;

use crate::ModelsError;
use crate::decoder::DecoderConfig;
use names::{Rule, Source};

/// Largest `config.json` or index read (they are a few kilobytes).
const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Largest `tokenizer.json` read (GPT-2's is 1.4 MB, Llama 3's 9 MB).
const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

fn problem(dir: &Path, reason: impl Into<String>) -> ModelsError {
    ModelsError::Checkpoint {
        dir: dir.to_path_buf(),
        reason: reason.into(),
    }
}

/// A small text file of the folder, bounded; `None` when absent.
fn read_small(dir: &Path, name: &str, limit: u64) -> Result<Option<String>, ModelsError> {
    let path = dir.join(name);
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(None);
    };
    if meta.len() > limit {
        return Err(problem(
            dir,
            format!(
                "{name} is {} bytes, more than the {limit} allowed",
                meta.len()
            ),
        ));
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| problem(dir, format!("{name}: {e}")))
}

/// An opened checkpoint folder: its config, every tensor with the file holding it, and the
/// tokenizer.
pub struct Checkpoint {
    dir: PathBuf,
    /// `config.json` as read.
    pub config: serde_json::Value,
    /// The decoder it describes.
    pub decoder: DecoderConfig,
    tensors: HashMap<String, (Arc<TensorFile>, StoredTensor)>,
    /// `tokenizer.json`, if the folder has one.
    pub tokenizer: Option<String>,
}

impl Checkpoint {
    /// Opens `dir`: `config.json` must be there, and either `model.safetensors` or
    /// `model.safetensors.index.json` with every shard it lists.
    pub fn open(dir: &Path) -> Result<Self, ModelsError> {
        if !dir.is_dir() {
            return Err(problem(dir, "not a folder"));
        }
        let config_json = read_small(dir, "config.json", MAX_CONFIG_BYTES)?.ok_or_else(|| {
            problem(
                dir,
                "no config.json: a Hugging Face checkpoint folder holds config.json beside its \
                 model.safetensors",
            )
        })?;
        let decoder = config::parse(&config_json)?;
        let config: serde_json::Value = serde_json::from_str(&config_json)
            .map_err(|e| problem(dir, format!("config.json: {e}")))?;
        let mut tensors = HashMap::new();
        for file in Self::files(dir)? {
            let file = Arc::new(TensorFile::open(&file)?);
            for (name, info) in file.tensors() {
                if tensors.insert(name.clone(), (file.clone(), info)).is_some() {
                    return Err(problem(dir, format!("tensor `{name}` is in two shards")));
                }
            }
        }
        // Every block has tensors of its own: a config that declares more blocks than the
        // files hold tensors is refused before its graph is even described.
        if decoder.layers > tensors.len() {
            return Err(problem(
                dir,
                format!(
                    "config.json declares {} blocks but the checkpoint holds {} tensors",
                    decoder.layers,
                    tensors.len()
                ),
            ));
        }
        let tokenizer = read_small(dir, "tokenizer.json", MAX_TOKENIZER_BYTES)?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            decoder,
            tensors,
            tokenizer,
        })
    }

    /// The safetensors files: the shards the index lists (each must exist), or the one file.
    fn files(dir: &Path) -> Result<Vec<PathBuf>, ModelsError> {
        let index = "model.safetensors.index.json";
        let Some(json) = read_small(dir, index, MAX_CONFIG_BYTES * 16)? else {
            let single = dir.join("model.safetensors");
            if single.is_file() {
                return Ok(vec![single]);
            }
            let why = if dir.join("pytorch_model.bin").exists() {
                "only pytorch_model.bin: save the model with safe_serialization (the default of \
                 save_pretrained) to get model.safetensors"
            } else {
                "neither model.safetensors nor model.safetensors.index.json"
            };
            return Err(problem(dir, why));
        };
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| problem(dir, format!("{index}: {e}")))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| problem(dir, format!("{index} has no weight_map")))?;
        let mut shards = BTreeSet::new();
        for (tensor, shard) in map {
            let shard = shard
                .as_str()
                .filter(|s| !s.is_empty() && Path::new(s).file_name() == Some(s.as_ref()))
                .ok_or_else(|| {
                    problem(
                        dir,
                        format!("{index}: `{tensor}` names {shard}, not a file of the folder"),
                    )
                })?;
            shards.insert(shard.to_string());
        }
        let missing: Vec<&String> = shards.iter().filter(|s| !dir.join(s).is_file()).collect();
        if !missing.is_empty() {
            return Err(problem(
                dir,
                format!("shards listed in {index} are missing: {missing:?}"),
            ));
        }
        Ok(shards.into_iter().map(|s| dir.join(s)).collect())
    }

    /// The reads that make each of our tensors, after checking every source tensor's presence
    /// and shape; every tensor of the checkpoint must be used (or be a known buffer).
    fn deferred(&self, rules: Vec<Rule>) -> Result<Vec<DeferredTensor>, ModelsError> {
        let mut used = BTreeSet::new();
        let mut out = Vec::with_capacity(rules.len());
        for rule in rules {
            let mut parts = Vec::new();
            for (key, want) in rule.source.keys().into_iter().zip(&rule.source_shapes) {
                let key = self.resolve(key);
                let (file, info) = self.tensors.get(&key).ok_or_else(|| {
                    problem(
                        &self.dir,
                        format!("tensor `{key}` is missing from the checkpoint"),
                    )
                })?;
                if &info.shape != want {
                    return Err(problem(
                        &self.dir,
                        format!(
                            "tensor `{key}` has shape {:?}, but config.json implies {want:?}",
                            info.shape
                        ),
                    ));
                }
                if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                    return Err(problem(
                        &self.dir,
                        format!(
                            "tensor `{key}` is {:?}; weights must be F32, F16 or BF16",
                            info.dtype
                        ),
                    ));
                }
                used.insert(key.clone());
                parts.push((file.clone(), key, want.clone()));
            }
            let read: fasterai_core::io::ReadValues = match rule.source {
                Source::Same(_) | Source::Stacked(_) => Box::new(move || {
                    let mut values = Vec::new();
                    for (file, key, _) in &parts {
                        values.extend(file.read_f32(key)?);
                    }
                    Ok(values)
                }),
                Source::Transposed(_) => Box::new(move || {
                    let (file, key, shape) = &parts[0];
                    Ok(names::transpose(&file.read_f32(key)?, shape[0], shape[1]))
                }),
            };
            out.push(DeferredTensor {
                key: rule.key,
                shape: rule.shape,
                read,
            });
        }
        let mut unused: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !used.contains(*k) && !names::ignorable(k) && !self.is_tied_copy(k))
            .collect();
        if !unused.is_empty() {
            unused.sort();
            return Err(problem(
                &self.dir,
                format!(
                    "{} tensors have no place in a {} of this config (e.g. {:?})",
                    unused.len(),
                    self.decoder.family.model_type(),
                    &unused[..unused.len().min(5)]
                ),
            ));
        }
        Ok(out)
    }

    /// The checkpoint's key for one of Hugging Face's full keys: GPT-2 saved as `GPT2Model`
    /// has no `transformer.` prefix.
    fn resolve(&self, key: &str) -> String {
        if !self.tensors.contains_key(key)
            && let Some(bare) = key.strip_prefix("transformer.")
            && self.tensors.contains_key(bare)
        {
            return bare.to_string();
        }
        key.to_string()
    }

    /// A stored copy of the tied head (some exporters write `lm_head.weight` anyway).
    fn is_tied_copy(&self, key: &str) -> bool {
        self.decoder.tied && key == "lm_head.weight"
    }
}

/// Imports the checkpoint folder `dir` as a model: the graph its config describes, every
/// weight read from the safetensors files (widened to f32), the tokenizer carried along.
pub fn import_folder(dir: &Path, device: &Device) -> Result<Model, ModelsError> {
    let checkpoint = Checkpoint::open(dir)?;
    let decoder = &checkpoint.decoder;
    let spec = decoder.spec()?;
    let input = vec![decoder.max_positions];
    spec.check(&input)?;
    let tensors = checkpoint.deferred(names::rules(decoder))?;
    if let Some(json) = &checkpoint.tokenizer {
        crate::tokenizer::Tokenizer::from_json(json)?.check_fits(decoder.vocab_size)?;
    }
    let mut net = Graph::from_spec(&spec, InitScheme::Zeros, device);
    set_deferred_tensors(&mut net, tensors, dir)?;
    let name = checkpoint
        .config
        .get("_name_or_path")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| decoder.family.model_type().into());
    let mut model = Model::new(name, input, net)?;
    model.text = Some(TextModel {
        family: checkpoint
            .config
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or(decoder.family.model_type())
            .to_string(),
        eos_token_id: config::eos_token_id(&checkpoint.config),
        config: checkpoint.config,
        tokenizer: checkpoint.tokenizer,
    });
    Ok(model)
}

/// The decoder config a language model's graph follows, or why a `config.json` cannot
/// describe it (layers that differ after pruning, a graph that is not a decoder).
pub fn decoder_of(model: &Model) -> Result<DecoderConfig, ModelsError> {
    let text = model.text.as_ref().ok_or_else(|| {
        ModelsError::InvalidConfig(format!(
            "`{}` is not a language model imported from a Hugging Face folder",
            model.name
        ))
    })?;
    let json = serde_json::to_string(&text.config).unwrap_or_default();
    let mut decoder = config::parse(&json)?;
    // The vocabulary and width are read back from the token table.
    let spec = model.net.spec();
    let table = match decoder.family {
        crate::decoder::DecoderFamily::Gpt2 => "transformer.wte",
        crate::decoder::DecoderFamily::Llama => "model.embed_tokens",
    };
    if let Some(Layer::Embedding(e)) = model.net.get(table) {
        [decoder.vocab_size, decoder.hidden] = e.weight.dims();
    }
    if decoder.spec()? != spec {
        return Err(ModelsError::InvalidConfig(
            "this model's layers no longer follow one config.json (compressed unevenly, or \
             changed by hand): Hugging Face's format cannot describe it"
                .into(),
        ));
    }
    Ok(decoder)
}

/// Writes `model` as a Hugging Face folder `dir` (`config.json`, `model.safetensors` in f32,
/// `tokenizer.json` when the model has one) that `transformers` loads. Refuses to replace an
/// existing folder's files unless `overwrite`.
pub fn export_folder(model: &Model, dir: &Path, overwrite: bool) -> Result<(), ModelsError> {
    let decoder = decoder_of(model)?;
    let text = model.text.as_ref().expect("decoder_of checked it");
    let rules = names::rules(&decoder);
    let mut ours: BTreeMap<String, (Vec<usize>, Vec<f32>)> = pytorch_tensors(&model.net)?
        .into_iter()
        .map(|(k, data)| {
            let shape = data.shape().to_vec();
            (k, (shape, data.try_into_vec::<f32>().unwrap_or_default()))
        })
        .collect();
    let mut theirs = fasterai_core::io::Arrays::new();
    for rule in rules {
        let (_, values) = ours
            .remove(&rule.key)
            .ok_or_else(|| problem(dir, format!("the model has no tensor `{}`", rule.key)))?;
        match &rule.source {
            Source::Same(k) => {
                theirs.insert(k.clone(), (rule.shape.clone(), values));
            }
            Source::Transposed(k) => {
                let [rows, cols] = rule.shape[..] else {
                    unreachable!("2-D rule")
                };
                theirs.insert(
                    k.clone(),
                    (vec![cols, rows], names::transpose(&values, rows, cols)),
                );
            }
            Source::Stacked(keys) => {
                let mut at = 0;
                for (k, shape) in keys.iter().zip(&rule.source_shapes) {
                    let n: usize = shape.iter().product();
                    theirs.insert(k.clone(), (shape.clone(), values[at..at + n].to_vec()));
                    at += n;
                }
            }
        }
    }
    if let Some(extra) = ours.keys().next() {
        return Err(problem(
            dir,
            format!(
                "tensor `{extra}` has no place in a Hugging Face {}",
                decoder.family.model_type()
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| problem(dir, e.to_string()))?;
    let config = config::write(&decoder, &text.config);
    let config = serde_json::to_string_pretty(&config).expect("JSON serialises");
    let files = [
        ("config.json", Some(config.into_bytes())),
        (
            "tokenizer.json",
            text.tokenizer.clone().map(String::into_bytes),
        ),
    ];
    for (name, bytes) in &files {
        if bytes.is_some() && dir.join(name).exists() && !overwrite {
            return Err(fasterai_core::CoreError::WouldOverwrite(dir.join(name)).into());
        }
    }
    let weights = dir.join("model.safetensors");
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_float_arrays(&weights, theirs, metadata, overwrite)?;
    for (name, bytes) in files {
        if let Some(bytes) = bytes {
            write_atomic(&dir.join(name), &bytes, overwrite)?;
        }
    }
    Ok(())
}
