//! Text for language models: `text:FILE` (calibration, evaluation) and `text:DIR` (its
//! `train.txt` and `valid.txt`), and perplexity by the sliding-window method.
//!
//! Perplexity of a text longer than the model's context: windows of `window` tokens start
//! every `stride` tokens; each window scores only the tokens no earlier window scored, with
//! everything before them in the window as context (so with `stride < window` every token but
//! the first is scored once, with at least `window − stride` tokens of context once the text is
//! that long; with `stride = window` each window's first token goes unscored).

use std::path::{Path, PathBuf};

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

use crate::TrainError;
use crate::data::DataError;

/// Largest text file read (the corpus here is 10 MB).
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// Where text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSource {
    /// One UTF-8 file.
    File(PathBuf),
    /// A folder with `train.txt` and `valid.txt`.
    Dir(PathBuf),
}

impl TextSource {
    /// Parses `text:PATH`; `None` when the argument is not a text source at all.
    pub fn parse(arg: &str) -> Option<Result<Self, TrainError>> {
        let path = PathBuf::from(arg.strip_prefix("text:")?);
        Some(if path.is_dir() {
            Ok(TextSource::Dir(path))
        } else if path.is_file() {
            Ok(TextSource::File(path))
        } else {
            Err(DataError::Missing {
                path,
                hint: "text:FILE, or text:DIR holding train.txt and valid.txt".into(),
            }
            .into())
        })
    }

    /// The file to evaluate on: the file itself, or the folder's `valid.txt`.
    pub fn evaluation_file(&self) -> PathBuf {
        match self {
            TextSource::File(p) => p.clone(),
            TextSource::Dir(d) => d.join("valid.txt"),
        }
    }

    /// The file to train on: the folder's `train.txt` (a single file is refused: evaluation
    /// on the text trained on says nothing).
    pub fn training_file(&self) -> Result<PathBuf, TrainError> {
        match self {
            TextSource::Dir(d) => Ok(d.join("train.txt")),
            TextSource::File(p) => Err(TrainError::Config(format!(
                "training reads text:DIR (train.txt and valid.txt), not the single file {}",
                p.display()
            ))),
        }
    }
}

/// Reads a UTF-8 text file, bounded by [`MAX_TEXT_BYTES`].
pub fn read_text(path: &Path) -> Result<String, TrainError> {
    let bad = |reason: String| DataError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if len > MAX_TEXT_BYTES {
        return Err(bad(format!("{len} bytes, more than the {MAX_TEXT_BYTES} read")).into());
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "not UTF-8 (byte {}); convert it first",
            e.utf8_error().valid_up_to()
        ))
        .into()
    })
}

/// Perplexity and bits per byte of a text, with their uncertainty.
#[derive(Debug, Clone, Serialize)]
pub struct PerplexityReport {
    /// Tokens scored.
    pub tokens: usize,
    /// Bytes of text those tokens cover.
    pub bytes: usize,
    /// Window (tokens) and stride.
    pub window: usize,
    /// Start-to-start distance of windows.
    pub stride: usize,
    /// Mean negative log-likelihood per token, in nats.
    pub nll_per_token: f64,
    /// Its standard error, from the spread of the windows' means (tokens within a window are
    /// not independent; windows nearly are).
    pub nll_std_error: f64,
    /// `exp(nll_per_token)`.
    pub perplexity: f64,
    /// 95 % interval of the perplexity.
    pub perplexity_interval: [f64; 2],
    /// Bits per byte (comparable across tokenizers).
    pub bits_per_byte: f64,
    /// Its standard error.
    pub bits_per_byte_std_error: f64,
}

impl std::fmt::Display for PerplexityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "perplexity      {:.3} (95 %: {:.3}–{:.3})",
            self.perplexity, self.perplexity_interval[0], self.perplexity_interval[1]
        )?;
        writeln!(
            f,
            "bits per byte   {:.4} ± {:.4}",
            self.bits_per_byte, self.bits_per_byte_std_error
        )?;
        writeln!(
            f,
            "nll per token   {:.4} ± {:.4} nats",
            self.nll_per_token, self.nll_std_error
        )?;
        writeln!(
            f,
            "scored          {} tokens, {} bytes; windows of {} tokens every {}",
            self.tokens, self.bytes, self.window, self.stride
        )
    }
}

/// One window: where its tokens start, how many, and how many at its end are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: usize,
    len: usize,
    scored: usize,
}

/// The sliding windows over `n` tokens.
fn windows(n: usize, window: usize, stride: usize) -> Vec<Window> {
    let mut out = Vec::new();
    let mut scored_to = 1; // the first token has no context
    let mut start = 0;
    while scored_to < n {
        let end = (start + window).min(n);
        // A window's first token has no context inside it: never scored there (with
        // stride = window, the first token of every window goes unscored).
        out.push(Window {
            start,
            len: end - start,
            scored: (end - scored_to).min(end - start - 1),
        });
        scored_to = end;
        start += stride;
    }
    out
}

/// The sliding-window perplexity of `ids` under `forward` (ids `[N, T]` → logits `[N, T, V]`).
/// `bytes` is the UTF-8 length of the text the ids after the first cover. `progress` gets the
/// tokens scored so far.
#[allow(clippy::too_many_arguments)]
pub fn perplexity(
    forward: impl Fn(Tensor<2>) -> Result<Tensor<3>, TrainError>,
    ids: &[u32],
    bytes: usize,
    window: usize,
    stride: usize,
    batch: usize,
    device: &Device,
    mut progress: impl FnMut(usize),
) -> Result<PerplexityReport, TrainError> {
    if ids.len() < 2 {
        return Err(TrainError::Config(
            "the text needs at least two tokens".into(),
        ));
    }
    if window < 2 || stride == 0 || stride > window || batch == 0 {
        return Err(TrainError::Config(format!(
            "a window of {window} tokens every {stride} (batches of {batch}) is not a valid \
             sliding window: need 2 ≤ window, 0 < stride ≤ window"
        )));
    }
    let all = windows(ids.len(), window, stride);
    // Per window: summed negative log-likelihood and tokens scored.
    let mut sums: Vec<(f64, usize)> = Vec::with_capacity(all.len());
    let mut done = 0;
    let mut i = 0;
    while i < all.len() {
        // Windows of one length run together.
        let len = all[i].len;
        let group: Vec<Window> = all[i..]
            .iter()
            .take(batch)
            .take_while(|w| w.len == len)
            .copied()
            .collect();
        let n = group.len();
        let inputs: Vec<f32> = group
            .iter()
            .flat_map(|w| ids[w.start..w.start + len].iter().map(|&t| t as f32))
            .collect();
        // Token k predicts token k + 1; the last position predicts nothing here.
        let targets: Vec<i64> = group
            .iter()
            .flat_map(|w| {
                ids[w.start + 1..w.start + len]
                    .iter()
                    .map(|&t| t as i64)
                    .chain([0])
            })
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(inputs, [n, len]), device);
        let logits = forward(x)?;
        let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, len]), device);
        let picked = log_softmax(logits, 2).gather(2, targets.reshape([n, len, 1]));
        let log_p = fasterai_core::linalg::host_values(picked);
        for (k, w) in group.iter().enumerate() {
            // Scored targets: positions len−1−scored … len−2 predict the last `scored` tokens.
            let row = &log_p[k * len..(k + 1) * len];
            let nll: f64 = row[len - 1 - w.scored..len - 1]
                .iter()
                .map(|&l| -(l as f64))
                .sum();
            sums.push((nll, w.scored));
            done += w.scored;
        }
        progress(done);
        i += n;
    }
    let tokens: usize = sums.iter().map(|s| s.1).sum();
    let total: f64 = sums.iter().map(|s| s.0).sum();
    let mean = total / tokens as f64;
    // Standard error of a ratio of sums over windows (delta method).
    let k = sums.len() as f64;
    let mean_tokens = tokens as f64 / k;
    let spread: f64 = sums
        .iter()
        .map(|&(s, n)| (s - mean * n as f64).powi(2))
        .sum::<f64>();
    let std_error = if sums.len() > 1 {
        (spread / (k * (k - 1.0))).sqrt() / mean_tokens
    } else {
        f64::NAN
    };
    let bits_per_token = 1.0 / std::f64::consts::LN_2;
    let per_byte = tokens as f64 / bytes.max(1) as f64 * bits_per_token;
    Ok(PerplexityReport {
        tokens,
        bytes,
        window,
        stride,
        nll_per_token: mean,
        nll_std_error: std_error,
        perplexity: mean.exp(),
        perplexity_interval: [
            (mean - 1.96 * std_error).exp(),
            (mean + 1.96 * std_error).exp(),
        ],
        bits_per_byte: mean * per_byte,
        bits_per_byte_std_error: std_error * per_byte,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_score_every_token_but_the_first_once() {
        for (n, window, stride) in [(10, 4, 2), (10, 4, 4), (3, 8, 4), (17, 5, 3), (2, 2, 1)] {
            let all = windows(n, window, stride);
            let mut scored = vec![0; n];
            for w in &all {
                assert!(w.len <= window && w.scored < w.len && w.scored > 0);
                for t in w.start + w.len - w.scored..w.start + w.len {
                    scored[t] += 1;
                }
            }
            assert_eq!(scored[0], 0);
            if stride < window {
                assert!(
                    scored[1..].iter().all(|&c| c == 1),
                    "{n} {window} {stride}: {scored:?}"
                );
            } else {
                // Non-overlapping windows: each window's first token is unscored.
                let unscored: Vec<usize> = (0..n).filter(|&t| scored[t] == 0).collect();
                let starts: Vec<usize> = all.iter().map(|w| w.start).collect();
                assert_eq!(unscored, starts);
            }
        }
    }

    #[test]
    fn a_uniform_model_has_the_vocabulary_as_perplexity() {
        let device = Device::flex();
        let vocab = 7;
        let ids: Vec<u32> = (0..50).map(|i| (i * 3 % vocab) as u32).collect();
        let uniform = |x: Tensor<2>| {
            let [n, t] = x.dims();
            Ok(Tensor::<3>::zeros([n, t, vocab], &x.device()))
        };
        let report = perplexity(uniform, &ids, 98, 8, 4, 3, &device, |_| {}).unwrap();
        assert_eq!(report.tokens, 49);
        assert!((report.perplexity - vocab as f64).abs() < 1e-4, "{report}");
        let bits = (vocab as f64).log2() * 49.0 / 98.0;
        assert!((report.bits_per_byte - bits).abs() < 1e-5);
        assert!(report.nll_std_error.abs() < 1e-6);
    }

    #[test]
    fn a_model_that_knows_the_next_token_is_scored_by_hand() {
        // Logit 0 everywhere but ln 3 on the true next token: p = 3 / (3 + V − 1).
        let device = Device::flex();
        let vocab = 5usize;
        let ids: Vec<u32> = vec![1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1];
        let next = ids.clone();
        let knowing = move |x: Tensor<2>| {
            let [n, t] = x.dims();
            let values = fasterai_core::linalg::host_values(x.clone());
            let mut logits = vec![0f32; n * t * vocab];
            for (k, &id) in values.iter().enumerate() {
                let follow = next
                    .iter()
                    .position(|&v| v as f32 == id)
                    .map(|p| next[p + 1]);
                logits[k * vocab + follow.unwrap_or(0) as usize] = 3f32.ln();
            }
            Ok(Tensor::<3>::from_data(
                TensorData::new(logits, [n, t, vocab]),
                &x.device(),
            ))
        };
        let report = perplexity(knowing, &ids, 10, 4, 2, 2, &device, |_| {}).unwrap();
        let p: f64 = 3.0 / (3.0 + vocab as f64 - 1.0);
        assert!((report.nll_per_token + p.ln()).abs() < 1e-6, "{report}");
    }
}
