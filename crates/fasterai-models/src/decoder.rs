//! Decoder-only language models as graphs, with Hugging Face's module paths as node names:
//! GPT-2 (`GPT2LMHeadModel`) and Llama (`LlamaForCausalLM`, which also covers Qwen2-, SmolLM-
//! and TinyLlama-shaped checkpoints). Token ids `[T]` in, logits `[T, vocabulary]` out.

use fasterai_core::graph::ops::{
    Add, EmbeddingSpec, GELU, GeluApproximation, LayerNormSpec, LearnedPositionsSpec, LinearSpec,
    Mul, MultiheadAttentionSpec, RmsNormSpec, RotarySpec, SiLU, TiedLinear,
};
use fasterai_core::graph::{GraphBuilder, GraphSpec, LayerSpec};
use serde::{Deserialize, Serialize};

use crate::ModelsError;

/// Which layout a decoder follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderFamily {
    /// GPT-2: learned positions, LayerNorm, biased attention and GELU (tanh) MLP.
    Gpt2,
    /// Llama: rotary positions, RMSNorm, grouped-query attention, SwiGLU MLP.
    Llama,
}

impl DecoderFamily {
    /// Hugging Face's `model_type`.
    pub fn model_type(&self) -> &'static str {
        match self {
            DecoderFamily::Gpt2 => "gpt2",
            DecoderFamily::Llama => "llama",
        }
    }
}

/// The shape of a decoder: everything its graph follows from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// Layout.
    pub family: DecoderFamily,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Token width.
    pub hidden: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (equal to `heads` without grouping).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate: usize,
    /// Longest sequence.
    pub max_positions: usize,
    /// Normalisation ε.
    pub norm_eps: f64,
    /// Rotary base (Llama).
    pub rope_theta: f64,
    /// Positions are divided by this (`rope_scaling` of type `linear`).
    pub rope_position_scale: f64,
    /// The head reads the token table back.
    pub tied: bool,
    /// Biases on q, k and v (GPT-2, Qwen2).
    pub qkv_bias: bool,
    /// Bias on the attention output (GPT-2).
    pub out_bias: bool,
    /// Biases on the MLP's linear layers (GPT-2).
    pub mlp_bias: bool,
}

impl DecoderConfig {
    /// GPT-2 small: 12 blocks of width 768 with 12 heads, 50,257 tokens, 1,024 positions
    /// (124,439,808 parameters).
    pub fn gpt2_small() -> Self {
        Self::gpt2(50257, 768, 12, 12, 1024)
    }

    /// A GPT-2 of the given size (MLP 4× wide).
    pub fn gpt2(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        max_positions: usize,
    ) -> Self {
        DecoderConfig {
            family: DecoderFamily::Gpt2,
            vocab_size,
            hidden,
            layers,
            heads,
            kv_heads: heads,
            head_dim: hidden / heads.max(1),
            intermediate: 4 * hidden,
            max_positions,
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_position_scale: 1.0,
            tied: true,
            qkv_bias: true,
            out_bias: true,
            mlp_bias: true,
        }
    }

    /// A Llama of the given size, untied, unbiased, `rope_theta` 10,000.
    #[allow(clippy::too_many_arguments)]
    pub fn llama(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        kv_heads: usize,
        intermediate: usize,
        max_positions: usize,
    ) -> Self {
        DecoderConfig {
            family: DecoderFamily::Llama,
            vocab_size,
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim: hidden / heads.max(1),
            intermediate,
            max_positions,
            norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_position_scale: 1.0,
            tied: false,
            qkv_bias: false,
            out_bias: false,
            mlp_bias: false,
        }
    }

    /// Checks sizes that the graph check would otherwise report node by node.
    pub fn validate(&self) -> Result<(), ModelsError> {
        let bad = |m: String| Err(ModelsError::InvalidConfig(m));
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden size", self.hidden),
            ("layers", self.layers),
            ("heads", self.heads),
            ("key/value heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("intermediate size", self.intermediate),
            ("max positions", self.max_positions),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return bad(format!("{name} must be positive"));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "{} heads do not split into groups over {} key/value heads",
                self.heads, self.kv_heads
            ));
        }
        if self.family == DecoderFamily::Gpt2 && self.heads * self.head_dim != self.hidden {
            return bad(format!(
                "GPT-2's {} heads must split its width {}",
                self.heads, self.hidden
            ));
        }
        Ok(())
    }

    /// The graph: ids `[T]` → logits `[T, vocab_size]`.
    pub fn spec(&self) -> Result<GraphSpec, ModelsError> {
        self.validate()?;
        Ok(match self.family {
            DecoderFamily::Gpt2 => self.gpt2_spec(),
            DecoderFamily::Llama => self.llama_spec(),
        })
    }

    fn attention(&self) -> MultiheadAttentionSpec {
        let (h, kv, d) = (self.heads, self.kv_heads, self.head_dim);
        MultiheadAttentionSpec {
            embed_dim: self.hidden,
            num_heads: h,
            query_dim: h * d,
            key_dim: kv * d,
            value_dim: kv * d,
            bias: self.qkv_bias,
            scale: 1.0 / (d as f64).sqrt(),
            causal: true,
            kv_heads: (kv != h).then_some(kv),
            out_bias: (self.out_bias != self.qkv_bias).then_some(self.out_bias),
            rotary: (self.family == DecoderFamily::Llama).then_some(RotarySpec {
                theta: self.rope_theta,
                position_scale: self.rope_position_scale,
            }),
        }
    }

    fn linear(&self, inputs: usize, outputs: usize, bias: bool) -> LayerSpec {
        LayerSpec::Linear(LinearSpec::new(inputs, outputs).with_bias(bias))
    }

    /// The head, tied to `table` or a Linear of its own.
    fn head(&self, g: &mut GraphBuilder, table: &str) {
        let x = g.cursor().to_string();
        if self.tied {
            let head = TiedLinear {
                in_features: self.hidden,
                out_features: self.vocab_size,
            };
            g.node("lm_head", LayerSpec::TiedLinear(head), &[&x, table]);
        } else {
            g.then("lm_head", self.linear(self.hidden, self.vocab_size, false));
        }
    }

    fn gpt2_spec(&self) -> GraphSpec {
        let (d, eps) = (self.hidden, self.norm_eps);
        let norm = || LayerSpec::LayerNorm(LayerNormSpec::new(d, eps));
        let mut g = GraphBuilder::new();
        let table = g.then(
            "transformer.wte",
            LayerSpec::Embedding(EmbeddingSpec {
                num_embeddings: self.vocab_size,
                embedding_dim: d,
            }),
        );
        g.then(
            "transformer.wpe",
            LayerSpec::LearnedPositions(LearnedPositionsSpec {
                max_positions: self.max_positions,
                dim: d,
            }),
        );
        for i in 0..self.layers {
            let p = format!("transformer.h.{i}");
            let input = g.cursor().to_string();
            g.then(format!("{p}.ln_1"), norm());
            let attn = g.then(
                format!("{p}.attn"),
                LayerSpec::MultiheadAttention(self.attention()),
            );
            let x = g.node(format!("{p}.add"), LayerSpec::Add(Add {}), &[&attn, &input]);
            g.then(format!("{p}.ln_2"), norm());
            g.then(
                format!("{p}.mlp.c_fc"),
                self.linear(d, self.intermediate, self.mlp_bias),
            );
            g.then(
                format!("{p}.mlp.act"),
                LayerSpec::GELU(GELU {
                    approximate: GeluApproximation::Tanh,
                }),
            );
            let y = g.then(
                format!("{p}.mlp.c_proj"),
                self.linear(self.intermediate, d, self.mlp_bias),
            );
            g.node(format!("{p}.add_1"), LayerSpec::Add(Add {}), &[&y, &x]);
        }
        g.then("transformer.ln_f", norm());
        self.head(&mut g, &table);
        g.build()
    }

    fn llama_spec(&self) -> GraphSpec {
        let (d, eps) = (self.hidden, self.norm_eps);
        let norm = || {
            LayerSpec::RMSNorm(RmsNormSpec {
                normalized_shape: d,
                eps,
            })
        };
        let mut g = GraphBuilder::new();
        let table = g.then(
            "model.embed_tokens",
            LayerSpec::Embedding(EmbeddingSpec {
                num_embeddings: self.vocab_size,
                embedding_dim: d,
            }),
        );
        let (m, bias) = (self.intermediate, self.mlp_bias);
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            let input = g.cursor().to_string();
            g.then(format!("{p}.input_layernorm"), norm());
            let attn = g.then(
                format!("{p}.self_attn"),
                LayerSpec::MultiheadAttention(self.attention()),
            );
            let x = g.node(format!("{p}.add"), LayerSpec::Add(Add {}), &[&attn, &input]);
            let normed = g.then(format!("{p}.post_attention_layernorm"), norm());
            g.then(format!("{p}.mlp.gate_proj"), self.linear(d, m, bias));
            let gate = g.then(format!("{p}.mlp.act"), LayerSpec::SiLU(SiLU {}));
            let up = g.node(
                format!("{p}.mlp.up_proj"),
                self.linear(d, m, bias),
                &[&normed],
            );
            g.node(
                format!("{p}.mlp.mul"),
                LayerSpec::Mul(Mul {}),
                &[&gate, &up],
            );
            let y = g.then(format!("{p}.mlp.down_proj"), self.linear(m, d, bias));
            g.node(format!("{p}.add_1"), LayerSpec::Add(Add {}), &[&y, &x]);
        }
        g.then("model.norm", norm());
        self.head(&mut g, &table);
        g.build()
    }
}
