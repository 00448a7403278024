//! `fasterai generate MODEL --prompt "..."`: continue texts with a language model.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use fasterai::models::generate::{GenerateConfig, Sampling, generate};
use fasterai::models::tokenizer::Tokenizer;

use crate::model_arg::{DeviceArgs, ModelArgs};

/// Continue one or more prompts with a language model, each new token one pass over the
/// key/value cache. Greedy by default; `--temperature` samples (with `--top-k`, `--top-p`,
/// `--seed`). Prompts of different lengths run as one batch, padded and masked.
///
///   fasterai generate gpt2.safetensors --prompt "The meaning of life" --max-new-tokens 40
///   fasterai generate tiny.safetensors --prompt-ids 1,5,9 --prompt-ids 3 --json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// A prompt, as text (read with the model's tokenizer, or as bytes); repeat for a batch.
    #[arg(long)]
    prompt: Vec<String>,
    /// A prompt as comma-separated token ids; repeat for a batch.
    #[arg(long, value_name = "IDS")]
    prompt_ids: Vec<String>,
    /// New tokens per prompt, at most (fewer where the end-of-text token comes).
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Sample with this softmax temperature instead of taking the likeliest token.
    #[arg(long)]
    temperature: Option<f32>,
    /// When sampling, keep the K likeliest tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// When sampling, keep the likeliest tokens until their probability reaches P.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON (ids, text, timing) instead of the texts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.device.device()?;
    let model = args.model.load(None, &device)?;
    let Some(text) = &model.text else {
        bail!(
            "{} is not a language model (import one with `fasterai import DIR`)",
            model.name
        );
    };
    let tokenizer = Tokenizer::of(text)?;
    let mut prompts = Vec::new();
    for p in &args.prompt {
        prompts.push(tokenizer.encode(p)?);
    }
    for p in &args.prompt_ids {
        let ids: Vec<u32> = p
            .split(',')
            .map(|s| s.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("--prompt-ids `{p}`: expected ids like 1,5,9"))?;
        prompts.push(ids);
    }
    if prompts.is_empty() {
        bail!("give --prompt TEXT or --prompt-ids IDS");
    }
    for ids in &prompts {
        let as_float: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
        crate::text::check_ids(&model, &as_float, ids.len())?;
    }
    let sampling = match args.temperature {
        None => Sampling::Greedy,
        Some(temperature) => Sampling::Sample {
            temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
    };
    let config = GenerateConfig {
        max_new_tokens: args.max_new_tokens,
        sampling,
        eos_token_id: text.eos_token_id,
        context: model.input_shape[0],
    };
    let bar = crate::text::progress(args.max_new_tokens as u64, "tokens", args.json);
    let start = Instant::now();
    let outputs = generate(&model.net, &prompts, &config, &device, |_| bar.inc(1))?;
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let texts: Vec<String> = outputs
        .iter()
        .map(|ids| tokenizer.decode(ids))
        .collect::<Result<_, _>>()?;
    let new_tokens: usize = outputs.iter().map(Vec::len).sum();
    if args.json {
        let value = serde_json::json!({
            "prompts": prompts,
            "new_ids": outputs,
            "texts": texts,
            "new_tokens": new_tokens,
            "seconds": seconds,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    for (i, (prompt, text)) in prompts.iter().zip(&texts).enumerate() {
        let prompt = tokenizer.decode(prompt)?;
        if prompts.len() > 1 {
            println!("[{i}]");
        }
        println!("{prompt}\x1b[1m{text}\x1b[0m");
    }
    eprintln!(
        "{new_tokens} new tokens in {seconds:.2} s ({:.1} tokens/s over the batch)",
        new_tokens as f64 / seconds.max(1e-9)
    );
    Ok(())
}
