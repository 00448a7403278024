//! One file per op family: hyper-parameters ([`Op`](super::Op)), live behaviour
//! ([`LiveOp`](super::LiveOp)), channel surgery.

pub mod activation;
pub mod attention;
pub mod batch_norm;
pub mod conv;
pub mod embedding;
pub mod linear;
pub mod merge;
pub mod norm;
pub mod pool;
pub mod quant;
pub mod rotary;
pub mod shape;
pub mod token;

pub use activation::{
    DropoutSpec, GELU, GeluApproximation, Hardsigmoid, Hardswish, ReLU, ReLU6, SiLU, Sigmoid,
    Softmax, StochasticDepthSpec,
};
pub use attention::MultiheadAttentionSpec;
pub use batch_norm::{BatchNorm2dSpec, BatchNormAffine};
pub use conv::Conv2dSpec;
pub use embedding::{EmbeddingSpec, LearnedPositionsSpec, TiedLinear, check_token_ids};
pub use linear::LinearSpec;
pub use merge::{Add, Concat, Mul};
pub use norm::{LayerNormSpec, RmsNormSpec};
pub use pool::{AdaptiveAvgPool2dSpec, AvgPool2dSpec, MaxPool2dSpec};
pub use quant::{FakeQuantize, fake_quantize};
pub use rotary::RotarySpec;
pub use shape::{Flatten, Identity};
pub use token::{ClassTokenSpec, ImageToTokens, PositionEmbeddingSpec, SelectToken, TokenMean};

use burn::tensor::{Int, Tensor, TensorData};

use crate::graph::activation::Activation;

/// Keeps the entries of `t` along `dim` where `keep` is true.
pub fn select_dim<const D: usize>(t: Tensor<D>, dim: usize, keep: &[bool]) -> Tensor<D> {
    let idx: Vec<i64> = (0..keep.len() as i64)
        .filter(|&i| keep[i as usize])
        .collect();
    let device = t.device();
    let n = idx.len();
    t.select(
        dim,
        Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device),
    )
}

/// The image batch a one-input op reads (the graph checked its shape).
pub(crate) fn image(inputs: Vec<Activation>) -> Tensor<4> {
    let x = inputs.into_iter().next().and_then(Activation::into_spatial);
    x.expect("shape checked: image batch")
}

/// The flat batch a one-input op reads (the graph checked its shape).
pub(crate) fn flat(inputs: Vec<Activation>) -> Tensor<2> {
    let x = inputs.into_iter().next().and_then(Activation::into_flat);
    x.expect("shape checked: flat batch")
}

/// The token sequence a one-input op reads (the graph checked its shape).
pub(crate) fn tokens(inputs: Vec<Activation>) -> Tensor<3> {
    let x = inputs.into_iter().next().and_then(Activation::into_tokens);
    x.expect("shape checked: token sequence")
}

/// Whether `slice` is all zeros.
pub(crate) fn all_zero(slice: &[f32]) -> bool {
    slice.iter().all(|&x| x == 0.0)
}
