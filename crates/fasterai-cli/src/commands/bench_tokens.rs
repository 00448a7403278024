//! `fasterai bench LM --tokens N`: a language model's tokens per second, for a prefill of `N`
//! tokens (one pass) and for decoding (one token per pass over the key/value cache).

use std::time::Instant;

use anyhow::Result;
use fasterai::burn::tensor::{Device, Tensor, TensorData};
use fasterai::core::graph::sequence::Decoding;
use fasterai::core::model::Model;
use serde::Serialize;

#[derive(Serialize)]
struct Report {
    model: String,
    device: String,
    params: usize,
    batch: usize,
    prefill_tokens: usize,
    decode_tokens: usize,
    runs: usize,
    /// Median milliseconds of one prefill pass.
    prefill_ms: f64,
    prefill_tokens_per_second: f64,
    /// Median milliseconds of one decoding step (one token per sequence).
    decode_ms_per_token: f64,
    decode_tokens_per_second: f64,
    peak_rss_mb: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Token ids that stay inside any vocabulary (`i mod vocabulary`).
fn ids(batch: usize, tokens: usize, vocabulary: usize, device: &Device) -> Tensor<2> {
    let values: Vec<f32> = (0..batch * tokens)
        .map(|i| ((i * 7919) % vocabulary) as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, [batch, tokens]), device)
}

/// Times prefill and decoding; prints a line per phase or JSON.
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: &Model,
    device: &Device,
    device_name: &str,
    batch: usize,
    tokens: usize,
    new_tokens: usize,
    runs: usize,
    json: bool,
    peak_rss_mb: impl Fn() -> Option<f64>,
) -> Result<()> {
    let context = model.input_shape[0];
    anyhow::ensure!(
        tokens >= 1 && tokens + new_tokens <= context,
        "--tokens {tokens} and --new-tokens {new_tokens} must fit the context of {context}"
    );
    let vocabulary = crate::text::vocabulary(model).unwrap_or(1);
    let net = &model.net;
    let prompt = ids(batch, tokens, vocabulary, device);
    let runs = runs.max(1);
    let bar = crate::text::progress((runs + 1) as u64, "runs", json);
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    // The first run warms up and is not counted.
    for run in 0..=runs {
        let mut state = Decoding::new();
        let start = Instant::now();
        let y = net.forward_decoding(prompt.clone(), None, &mut state)?;
        fasterai::core::linalg::host_values(y.flatten());
        let prefill_ms = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        for step in 0..new_tokens {
            let next = ids(batch, 1, vocabulary, device).add_scalar(step as f32 % 2.0);
            let y = net.forward_decoding(next, None, &mut state)?;
            fasterai::core::linalg::host_values(y.flatten());
        }
        let decode_ms = start.elapsed().as_secs_f64() * 1e3 / new_tokens.max(1) as f64;
        if run > 0 {
            prefill.push(prefill_ms);
            decode.push(decode_ms);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (prefill_ms, decode_ms) = (median(prefill), median(decode));
    let report = Report {
        model: model.name.clone(),
        device: device_name.to_string(),
        params: model.num_params(),
        batch,
        prefill_tokens: tokens,
        decode_tokens: new_tokens,
        runs,
        prefill_ms,
        prefill_tokens_per_second: (batch * tokens) as f64 / (prefill_ms / 1e3),
        decode_ms_per_token: decode_ms,
        decode_tokens_per_second: batch as f64 / (decode_ms / 1e3),
        peak_rss_mb: peak_rss_mb(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} on {} · batch {} · median of {} runs",
        report.model, report.device, batch, runs
    );
    println!(
        "  prefill {tokens:>5} tokens   {:>9.1} ms   {:>9.1} tokens/s",
        report.prefill_ms, report.prefill_tokens_per_second
    );
    println!(
        "  decode  {new_tokens:>5} tokens   {:>9.2} ms/token   {:>7.1} tokens/s (cache after {tokens})",
        report.decode_ms_per_token, report.decode_tokens_per_second
    );
    if let Some(mb) = report.peak_rss_mb {
        println!("  peak memory {mb:.0} MB");
    }
    Ok(())
}
