//! Helpers for tests, examples and benchmarks: small models and non-trivial weights.

use burn::module::{Param, RunningState};
use burn::tensor::{Device, Distribution, Tensor};

use crate::graph::{InitScheme, Layer, LayerSpec, Sequential};

/// Gives every batch norm random affine parameters and running statistics (γ ∈ [0.5, 1.5],
/// β ~ 0.2·N(0, 1), mean ~ 0.5·N(0, 1), var ∈ [0.5, 2]), as a trained network would have, so
/// that lossless transforms are tested on more than the identity a fresh batch norm computes.
pub fn randomize_batch_norms(net: &mut Sequential, device: &Device) {
    for child in &mut net.children {
        match &mut child.layer {
            Layer::BatchNorm2d(bn) => {
                let n = bn.gamma.dims()[0];
                let uniform = |lo, hi| Tensor::<1>::random([n], Distribution::Uniform(lo, hi), device);
                let normal = |std| Tensor::<1>::random([n], Distribution::Normal(0.0, std), device);
                bn.gamma = Param::from_tensor(uniform(0.5, 1.5));
                bn.beta = Param::from_tensor(normal(0.2));
                bn.running_mean = RunningState::new(normal(0.5));
                bn.running_var = RunningState::new(uniform(0.5, 2.0));
            }
            Layer::Sequential(inner) => randomize_batch_norms(inner, device),
            _ => {}
        }
    }
}

/// A small VGG-like network for `[channels, 16, 16]` images: two conv/BN/ReLU/pool stages, a
/// flatten and two linear layers, with random weights and batch-norm statistics.
pub fn tiny_cnn(channels: usize, classes: usize, device: &Device) -> Sequential {
    let conv = |i, o| LayerSpec::Conv2d {
        in_channels: i,
        out_channels: o,
        kernel_size: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
        bias: true,
    };
    let bn = |n| LayerSpec::BatchNorm2d { num_features: n, eps: 1e-5, momentum: 0.1 };
    let pool = LayerSpec::MaxPool2d {
        kernel_size: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
        dilation: [1, 1],
        ceil_mode: false,
    };
    let layers = [
        conv(channels, 8),
        bn(8),
        LayerSpec::ReLU,
        pool.clone(),
        conv(8, 16),
        bn(16),
        LayerSpec::ReLU,
        pool,
        LayerSpec::Flatten,
        LayerSpec::Linear { in_features: 16 * 4 * 4, out_features: 32, bias: true },
        LayerSpec::ReLU,
        LayerSpec::Dropout { p: 0.5 },
        LayerSpec::Linear { in_features: 32, out_features: classes, bias: true },
    ];
    let mut net = Sequential::indexed(layers.iter().map(|s| Layer::from_spec(s, InitScheme::PyTorchDefault, device)));
    randomize_batch_norms(&mut net, device);
    net
}
