//! Language-model tables: token ids to vectors (`Embedding`), learned positions added to them
//! (`LearnedPositions`, GPT-2's `wpe`) and the head that reads the token table back as its
//! weight (`TiedLinear`).
//!
//! Token ids travel as a flat float batch `[N, T]` (exact up to 2²⁴, far above any
//! vocabulary); the model input is checked to hold whole ids below the vocabulary size before a
//! graph runs ([`check_token_ids`]).

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::module::{embedding, linear};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::{flat, select_dim, tokens};
use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{Arity, Channels, InitScheme, LiveOp, Op, count};
use crate::graph::sequence::{Positions, Step};

/// Largest vocabulary: ids travel as f32, exact up to 2²⁴.
pub const MAX_VOCABULARY: usize = 1 << 24;

fn normal(scheme: InitScheme) -> Initializer {
    match scheme {
        InitScheme::Zeros => Initializer::Zeros,
        // GPT-2 and Llama draw their tables from N(0, 0.02).
        _ => Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        },
    }
}

/// `torch.nn.Embedding(num_embeddings, embedding_dim)`: ids `[T]` → tokens `[T, D]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSpec {
    /// Vocabulary size (rows of the table).
    pub num_embeddings: usize,
    /// Width of each vector.
    pub embedding_dim: usize,
}

impl Op for EmbeddingSpec {
    fn kind(&self) -> &'static str {
        "Embedding"
    }
    fn validate(&self) -> Result<(), String> {
        if self.num_embeddings == 0 || self.embedding_dim == 0 {
            return Err("num_embeddings and embedding_dim must be positive".into());
        }
        if self.num_embeddings > MAX_VOCABULARY {
            return Err(format!(
                "a vocabulary of {} ids is past the {MAX_VOCABULARY} this build supports",
                self.num_embeddings
            ));
        }
        Ok(())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs[0] {
            [t] => Ok(vec![*t, self.embedding_dim]),
            other => Err(format!("expected token ids [T], got {other:?}")),
        }
    }
    fn params(&self) -> usize {
        count(&[self.num_embeddings, self.embedding_dim])
    }
    fn detail(&self) -> String {
        format!("{}×{}", self.num_embeddings, self.embedding_dim)
    }
    fn channels(&self) -> Channels {
        // Ids are not channels; the vectors' features are fixed by the table (and, tied, by
        // the head that reads it back).
        Channels::Opaque
    }
    fn build(&self, scheme: InitScheme, device: &Device) -> Layer {
        let shape = [self.num_embeddings, self.embedding_dim];
        Layer::Embedding(Embedding {
            weight: normal(scheme).init(shape, device),
        })
    }
}

/// A live token table, `weight: [vocabulary, D]` as in PyTorch.
#[derive(Module, Debug)]
pub struct Embedding {
    /// One row per id.
    pub weight: Param<Tensor<2>>,
}

impl Embedding {
    /// Rows of `weight` gathered by the ids of `ids` (`[N, T]`, checked to be in range).
    pub fn lookup(&self, ids: Tensor<2>) -> Tensor<3> {
        embedding(self.weight.val(), ids.int())
    }
}

impl LiveOp for Embedding {
    fn spec(&self) -> LayerSpec {
        let [num_embeddings, embedding_dim] = self.weight.lazy_shape().dims();
        LayerSpec::Embedding(EmbeddingSpec {
            num_embeddings,
            embedding_dim,
        })
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        Activation::Tokens(self.lookup(flat(inputs)))
    }
    fn select_channels(&mut self, _inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        if let Some(keep) = outputs {
            self.weight = Param::from_tensor(select_dim(self.weight.val(), 1, keep));
        }
    }
    fn constant_channels(
        &self,
        _inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        output: &[usize],
    ) -> Vec<Option<f32>> {
        vec![None; output.last().copied().unwrap_or(0)]
    }
}

/// Whether `ids` (a batch of token ids as floats) holds only whole numbers in
/// `0..vocabulary`; the error names the first one that is not.
pub fn check_token_ids(ids: &[f32], vocabulary: usize) -> Result<(), String> {
    match ids
        .iter()
        .position(|&x| !(x >= 0.0 && x.fract() == 0.0 && (x as usize) < vocabulary))
    {
        None => Ok(()),
        Some(i) => Err(format!(
            "token id {} at position {i} is not an id of this model's vocabulary of {vocabulary} \
             (0 to {})",
            ids[i],
            vocabulary.saturating_sub(1)
        )),
    }
}

/// A learned table of position vectors added to the tokens (GPT-2's `wpe`): token `t` of a
/// sequence gets row `t` (or its position in a cached generation). Tokens `[T, D]` → `[T, D]`
/// with `T` at most `max_positions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedPositionsSpec {
    /// Longest sequence (rows of the table).
    pub max_positions: usize,
    /// Token width.
    pub dim: usize,
}

impl Op for LearnedPositionsSpec {
    fn kind(&self) -> &'static str {
        "LearnedPositions"
    }
    fn validate(&self) -> Result<(), String> {
        if self.max_positions == 0 || self.dim == 0 {
            return Err("max_positions and dim must be positive".into());
        }
        Ok(())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs[0] {
            [t, d] if *d == self.dim && *t <= self.max_positions => Ok(vec![*t, *d]),
            [t, d] if *d == self.dim => Err(format!(
                "a sequence of {t} tokens is longer than the {} positions this model knows",
                self.max_positions
            )),
            other => Err(format!("expected tokens [T, {}], got {other:?}", self.dim)),
        }
    }
    fn params(&self) -> usize {
        count(&[self.max_positions, self.dim])
    }
    fn detail(&self) -> String {
        format!("{}×{}", self.max_positions, self.dim)
    }
    fn build(&self, scheme: InitScheme, device: &Device) -> Layer {
        let shape = [self.max_positions, self.dim];
        Layer::LearnedPositions(LearnedPositions {
            weight: normal(scheme).init(shape, device),
        })
    }
}

/// A live position table, `weight: [max_positions, D]`.
#[derive(Module, Debug)]
pub struct LearnedPositions {
    /// One row per position.
    pub weight: Param<Tensor<2>>,
}

impl LearnedPositions {
    /// `x` plus the rows of its tokens' positions.
    pub fn add(&self, x: Tensor<3>, positions: &Positions) -> Tensor<3> {
        let [n, t, _] = x.dims();
        let ids: Tensor<2, Int> = positions.ids(n, t, &x.device());
        x + embedding(self.weight.val(), ids)
    }
}

impl LiveOp for LearnedPositions {
    fn spec(&self) -> LayerSpec {
        let [max_positions, dim] = self.weight.lazy_shape().dims();
        LayerSpec::LearnedPositions(LearnedPositionsSpec { max_positions, dim })
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        Activation::Tokens(self.add(tokens(inputs), &Positions::default()))
    }
    fn forward_in(&self, inputs: Vec<Activation>, step: Step<'_>) -> Activation {
        Activation::Tokens(self.add(tokens(inputs), step.positions))
    }
    fn select_channels(&mut self, _inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        if let Some(keep) = outputs {
            self.weight = Param::from_tensor(select_dim(self.weight.val(), 1, keep));
        }
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        vec![None; inputs[0].len()]
    }
}

/// The language-model head that shares the token table (`lm_head` with
/// `tie_word_embeddings`): tokens `[T, D]` → logits `[T, vocabulary]`, `x · tableᵀ`.
///
/// Its second input names the [`Embedding`] node whose table is the weight: the graph hands
/// the op that table, not the node's output, so the weight is stored and trained once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiedLinear {
    /// Token width.
    pub in_features: usize,
    /// Vocabulary size.
    pub out_features: usize,
}

impl Op for TiedLinear {
    fn kind(&self) -> &'static str {
        "TiedLinear"
    }
    fn arity(&self) -> Arity {
        Arity::Many
    }
    fn validate(&self) -> Result<(), String> {
        if self.in_features == 0 || self.out_features == 0 {
            return Err("in_features and out_features must be positive".into());
        }
        Ok(())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs {
            [[t, d], [_, e]] if *d == self.in_features && *e == self.in_features => {
                Ok(vec![*t, self.out_features])
            }
            [_, _] => Err(format!(
                "expected tokens [T, {}] and the embedding they share a table with",
                self.in_features
            )),
            _ => Err("reads two values: the tokens, then the embedding node".into()),
        }
    }
    fn macs(&self, inputs: &[&[usize]], _output: &[usize]) -> u64 {
        let t = inputs[0].first().copied().unwrap_or(0);
        count(&[t, self.in_features, self.out_features]) as u64
    }
    fn detail(&self) -> String {
        format!("{}→{}, tied", self.in_features, self.out_features)
    }
    fn channels(&self) -> Channels {
        Channels::Opaque
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::TiedLinear(*self)
    }
}

impl LiveOp for TiedLinear {
    fn spec(&self) -> LayerSpec {
        LayerSpec::TiedLinear(*self)
    }
    /// `inputs`: the tokens, then the table `[vocabulary, D]` as a flat value.
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let mut inputs = inputs.into_iter();
        let x = inputs.next().and_then(Activation::into_tokens);
        let table = inputs.next().and_then(Activation::into_flat);
        let (x, table) = x
            .zip(table)
            .expect("the graph passes the tokens and the table");
        let [n, t, d] = x.dims();
        let [v, _] = table.dims();
        if n * t > 16 {
            return Activation::Tokens(linear(x, table.transpose(), None));
        }
        // A few tokens (decoding): table · xᵀ reads the table row by row, as stored; x times
        // its transposed view took twice as long as the rest of GPT-2 small per token.
        let logits = table.matmul(x.reshape([n * t, d]).transpose());
        Activation::Tokens(logits.transpose().reshape([n, t, v]))
    }
    fn constant_channels(
        &self,
        _inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        vec![None; self.out_features]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_checked() {
        assert!(check_token_ids(&[0.0, 3.0, 9.0], 10).is_ok());
        for bad in [10.0, -1.0, 2.5, f32::NAN, f32::INFINITY] {
            let err = check_token_ids(&[1.0, bad], 10).unwrap_err();
            assert!(err.contains("position 1"), "{err}");
        }
    }
}
