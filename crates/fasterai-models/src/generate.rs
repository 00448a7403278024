//! Text generation with a decoder: the prompts run once (left-padded to one length and masked),
//! then each new token is one pass of one token over the key/value cache.

use burn::tensor::{Device, Tensor, TensorData};
use fasterai_core::graph::Graph;
use fasterai_core::graph::sequence::Decoding;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ModelsError;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely token.
    Greedy,
    /// A draw from the softmax of `logits / temperature`, kept to the `top_k` likeliest tokens
    /// (0: all) and then to the smallest set whose probability reaches `top_p`.
    Sample {
        /// Softmax temperature (positive).
        temperature: f32,
        /// Keep this many likeliest tokens (0: no limit).
        top_k: usize,
        /// Keep the likeliest tokens until their probability reaches this (1: no limit).
        top_p: f32,
        /// Seed of the draws.
        seed: u64,
    },
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// New tokens per prompt, at most.
    pub max_new_tokens: usize,
    /// The choice of each token.
    pub sampling: Sampling,
    /// A sequence stops after this token (`None`: only at `max_new_tokens`).
    pub eos_token_id: Option<u32>,
    /// Longest sequence the model takes (prompt and new tokens together).
    pub context: usize,
}

/// Continues each prompt; returns the new tokens of each (ending with the end-of-text token
/// where one came). `on_token` is called after every pass (progress).
pub fn generate(
    net: &Graph,
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
    device: &Device,
    mut on_token: impl FnMut(usize),
) -> Result<Vec<Vec<u32>>, ModelsError> {
    let n = prompts.len();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if n == 0 || prompts.iter().any(Vec::is_empty) {
        return Err(ModelsError::InvalidConfig(
            "every prompt needs at least one token".into(),
        ));
    }
    if longest + config.max_new_tokens > config.context {
        return Err(ModelsError::InvalidConfig(format!(
            "a prompt of {longest} tokens and {} new ones exceed the model's context of {} \
             tokens; shorten the prompt or ask for fewer tokens",
            config.max_new_tokens, config.context
        )));
    }
    if let Sampling::Sample {
        temperature, top_p, ..
    } = config.sampling
        && !(temperature > 0.0 && temperature.is_finite() && top_p > 0.0 && top_p <= 1.0)
    {
        return Err(ModelsError::InvalidConfig(format!(
            "temperature {temperature} must be positive and top-p {top_p} in (0, 1]"
        )));
    }
    // Left padding, so that every sequence's last token is the last column.
    let mut ids = Vec::with_capacity(n * longest);
    let mut padding = Vec::with_capacity(n * longest);
    for p in prompts {
        let pad = longest - p.len();
        ids.extend(std::iter::repeat_n(0f32, pad).chain(p.iter().map(|&t| t as f32)));
        padding.extend((0..longest).map(|i| i < pad));
    }
    let padded = padding.iter().any(|&p| p);
    let mut state = Decoding::new();
    let mut rng = match config.sampling {
        Sampling::Sample { seed, .. } => StdRng::seed_from_u64(seed),
        Sampling::Greedy => StdRng::seed_from_u64(0),
    };
    let mut outputs = vec![Vec::new(); n];
    let mut done = vec![false; n];
    let mut input = Tensor::<2>::from_data(TensorData::new(ids, [n, longest]), device);
    let mut pad = padded.then_some(padding.as_slice());
    for step in 0..config.max_new_tokens {
        let logits = last_logits(net, input, pad, &mut state)?;
        pad = None;
        let vocabulary = logits.len() / n;
        let mut next = Vec::with_capacity(n);
        for (s, row) in logits.chunks_exact(vocabulary).enumerate() {
            let token = choose(row, config.sampling, &mut rng);
            if !done[s] {
                outputs[s].push(token);
                done[s] = config.eos_token_id == Some(token);
            }
            next.push(token as f32);
        }
        on_token(step);
        if done.iter().all(|&d| d) || step + 1 == config.max_new_tokens {
            break;
        }
        input = Tensor::<2>::from_data(TensorData::new(next, [n, 1]), device);
    }
    Ok(outputs)
}

/// One pass; the logits of each sequence's last token, `[N · vocabulary]`.
fn last_logits(
    net: &Graph,
    ids: Tensor<2>,
    padding: Option<&[bool]>,
    state: &mut Decoding,
) -> Result<Vec<f32>, ModelsError> {
    let y = net.forward_decoding(ids, padding, state)?;
    let y = y.into_tokens().ok_or_else(|| {
        ModelsError::InvalidConfig("the model does not write tokens: not a decoder".into())
    })?;
    let [n, t, v] = y.dims();
    let last = y.narrow(1, t - 1, 1).reshape([n, v]);
    Ok(fasterai_core::linalg::host_values(last))
}

/// The next token from one row of logits.
fn choose(logits: &[f32], sampling: Sampling, rng: &mut StdRng) -> u32 {
    let argmax = || {
        // The first of equal maxima, as torch.argmax.
        let mut best = 0;
        for (i, &x) in logits.iter().enumerate() {
            if x > logits[best] {
                best = i;
            }
        }
        best as u32
    };
    let Sampling::Sample {
        temperature,
        top_k,
        top_p,
        ..
    } = sampling
    else {
        return argmax();
    };
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    if order.is_empty() {
        return argmax();
    }
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if top_k > 0 {
        order.truncate(top_k);
    }
    let top = logits[order[0]];
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| (((logits[i] - top) / temperature) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    // The smallest prefix whose probability reaches top_p.
    let mut kept = 0;
    let mut mass = 0.0;
    while kept < weights.len() {
        mass += weights[kept] / total;
        kept += 1;
        if mass >= top_p as f64 {
            break;
        }
    }
    let kept_total: f64 = weights[..kept].iter().sum();
    let mut draw = rng.random::<f64>() * kept_total;
    for (k, w) in weights[..kept].iter().enumerate() {
        draw -= w;
        if draw <= 0.0 {
            return order[k] as u32;
        }
    }
    order[kept - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_to_top_k_and_top_p_and_follows_the_probabilities() {
        let logits = [0.0f32, 2.0, 1.0, -1.0, 2.0f32.ln() + 2.0];
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(choose(&logits, Sampling::Greedy, &mut rng), 4);
        let top2 = Sampling::Sample {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            seed: 0,
        };
        let mut counts = [0usize; 5];
        for _ in 0..6000 {
            counts[choose(&logits, top2, &mut rng) as usize] += 1;
        }
        // Tokens 4 and 1 only, in the ratio e^(ln2+2) : e^2 = 2 : 1.
        assert_eq!(counts[0] + counts[2] + counts[3], 0);
        let ratio = counts[4] as f64 / counts[1] as f64;
        assert!((ratio - 2.0).abs() < 0.2, "{counts:?}");
        // top-p 0.5 keeps the likeliest token alone (its probability is above one half of
        // the top two... and of all five here: 2e²/(3e² + e + 1 + e⁻¹) ≈ 0.56).
        let nucleus = Sampling::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            seed: 0,
        };
        assert!((0..200).all(|_| choose(&logits, nucleus, &mut rng) == 4));
    }
}
