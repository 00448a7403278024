//! Which Hugging Face tensors make each of our tensors, and how: kept, transposed (GPT-2's
//! `Conv1D` stores `[in, out]`) or stacked (Llama's q, k and v projections are one packed
//! `in_proj` here).

use crate::decoder::{DecoderConfig, DecoderFamily};

/// How one of our tensors is made from Hugging Face tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The same values and shape.
    Same(String),
    /// A `[rows, cols]` tensor stored as `[cols, rows]`.
    Transposed(String),
    /// Rows of several tensors one after another (same columns).
    Stacked(Vec<String>),
}

impl Source {
    /// The Hugging Face tensors it reads.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Source::Same(k) | Source::Transposed(k) => vec![k.as_str()],
            Source::Stacked(ks) => ks.iter().map(String::as_str).collect(),
        }
    }
}

/// One of our tensors (key and shape in PyTorch's layout) with its source.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Our key.
    pub key: String,
    /// Our shape.
    pub shape: Vec<usize>,
    /// Where it comes from.
    pub source: Source,
    /// The Hugging Face shape of each source tensor, in [`Source::keys`] order.
    pub source_shapes: Vec<Vec<usize>>,
}

/// Hugging Face tensors that checkpoints may carry and which hold nothing to load: GPT-2's
/// causal-mask buffers, old Llama checkpoints' rotary frequencies.
pub fn ignorable(key: &str) -> bool {
    key.ends_with(".attn.bias")
        || key.ends_with(".attn.masked_bias")
        || key.ends_with("rotary_emb.inv_freq")
}

/// A tensor kept as it is, under `theirs` there and `ours` here.
fn renamed(ours: String, theirs: String, shape: Vec<usize>) -> Rule {
    Rule {
        key: ours,
        source: Source::Same(theirs),
        source_shapes: vec![shape.clone()],
        shape,
    }
}

/// A tensor under the same key on both sides.
fn same(key: String, shape: Vec<usize>) -> Rule {
    renamed(key.clone(), key, shape)
}

/// A `Conv1D` weight (`[in, out]` there) as a `[rows = out, cols = in]` weight here.
fn conv1d(ours: String, theirs: String, rows: usize, cols: usize) -> Rule {
    Rule {
        key: ours,
        shape: vec![rows, cols],
        source: Source::Transposed(theirs),
        source_shapes: vec![vec![cols, rows]],
    }
}

/// Every tensor of the decoder `c` builds, with its source.
pub fn rules(c: &DecoderConfig) -> Vec<Rule> {
    let (d, m, v) = (c.hidden, c.intermediate, c.vocab_size);
    let (q, kv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
    let mut rules = Vec::new();
    match c.family {
        DecoderFamily::Gpt2 => {
            rules.push(same("transformer.wte.weight".into(), vec![v, d]));
            rules.push(same(
                "transformer.wpe.weight".into(),
                vec![c.max_positions, d],
            ));
            for i in 0..c.layers {
                let p = format!("transformer.h.{i}");
                for norm in ["ln_1", "ln_2"] {
                    rules.push(same(format!("{p}.{norm}.weight"), vec![d]));
                    rules.push(same(format!("{p}.{norm}.bias"), vec![d]));
                }
                let (attn, mlp) = (format!("{p}.attn"), format!("{p}.mlp"));
                rules.extend([
                    conv1d(
                        format!("{attn}.in_proj_weight"),
                        format!("{attn}.c_attn.weight"),
                        3 * d,
                        d,
                    ),
                    renamed(
                        format!("{attn}.in_proj_bias"),
                        format!("{attn}.c_attn.bias"),
                        vec![3 * d],
                    ),
                    conv1d(
                        format!("{attn}.out_proj.weight"),
                        format!("{attn}.c_proj.weight"),
                        d,
                        d,
                    ),
                    renamed(
                        format!("{attn}.out_proj.bias"),
                        format!("{attn}.c_proj.bias"),
                        vec![d],
                    ),
                    conv1d(
                        format!("{mlp}.c_fc.weight"),
                        format!("{mlp}.c_fc.weight"),
                        m,
                        d,
                    ),
                    same(format!("{mlp}.c_fc.bias"), vec![m]),
                    conv1d(
                        format!("{mlp}.c_proj.weight"),
                        format!("{mlp}.c_proj.weight"),
                        d,
                        m,
                    ),
                    same(format!("{mlp}.c_proj.bias"), vec![d]),
                ]);
            }
            rules.push(same("transformer.ln_f.weight".into(), vec![d]));
            rules.push(same("transformer.ln_f.bias".into(), vec![d]));
        }
        DecoderFamily::Llama => {
            rules.push(same("model.embed_tokens.weight".into(), vec![v, d]));
            for i in 0..c.layers {
                let p = format!("model.layers.{i}");
                rules.push(same(format!("{p}.input_layernorm.weight"), vec![d]));
                rules.push(same(
                    format!("{p}.post_attention_layernorm.weight"),
                    vec![d],
                ));
                let attn = format!("{p}.self_attn");
                let parts = |suffix: &str| -> Vec<String> {
                    ["q_proj", "k_proj", "v_proj"]
                        .iter()
                        .map(|n| format!("{attn}.{n}.{suffix}"))
                        .collect()
                };
                rules.push(Rule {
                    key: format!("{attn}.in_proj_weight"),
                    shape: vec![q + 2 * kv, d],
                    source: Source::Stacked(parts("weight")),
                    source_shapes: vec![vec![q, d], vec![kv, d], vec![kv, d]],
                });
                if c.qkv_bias {
                    rules.push(Rule {
                        key: format!("{attn}.in_proj_bias"),
                        shape: vec![q + 2 * kv],
                        source: Source::Stacked(parts("bias")),
                        source_shapes: vec![vec![q], vec![kv], vec![kv]],
                    });
                }
                let (ours, theirs) = (format!("{attn}.out_proj"), format!("{attn}.o_proj"));
                rules.push(renamed(
                    format!("{ours}.weight"),
                    format!("{theirs}.weight"),
                    vec![d, q],
                ));
                if c.out_bias {
                    rules.push(renamed(
                        format!("{ours}.bias"),
                        format!("{theirs}.bias"),
                        vec![d],
                    ));
                }
                for (name, rows, cols) in
                    [("gate_proj", m, d), ("up_proj", m, d), ("down_proj", d, m)]
                {
                    rules.push(same(format!("{p}.mlp.{name}.weight"), vec![rows, cols]));
                    if c.mlp_bias {
                        rules.push(same(format!("{p}.mlp.{name}.bias"), vec![rows]));
                    }
                }
            }
            rules.push(same("model.norm.weight".into(), vec![d]));
        }
    }
    if !c.tied {
        rules.push(same("lm_head.weight".into(), vec![v, d]));
    }
    rules
}

/// `[rows, cols]` values transposed to `[cols, rows]`.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}
