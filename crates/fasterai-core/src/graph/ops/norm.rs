//! Normalisation over features: `LayerNorm` (transformers) and `RMSNorm` (Llama). Batch norm,
//! which normalises over the batch, has its own file.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::select_dim;
use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{InitScheme, LiveOp, Op, count};

/// `torch.nn.LayerNorm(normalized_shape, eps, elementwise_affine, bias)` over the last
/// dimension: tokens `[T, D]` or a flat batch `[F]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNormSpec {
    /// Size of the normalised (last) dimension.
    pub normalized_shape: usize,
    /// Added to the variance (PyTorch's default 1e-5; torchvision's ViT uses 1e-6).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// A learned scale γ (and shift β, unless `bias` is false).
    #[serde(default = "yes")]
    pub elementwise_affine: bool,
    /// A learned shift β.
    #[serde(default = "yes")]
    pub bias: bool,
}

fn default_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

impl LayerNormSpec {
    /// `LayerNorm(dim, eps)` with γ and β.
    pub fn new(normalized_shape: usize, eps: f64) -> Self {
        Self {
            normalized_shape,
            eps,
            elementwise_affine: true,
            bias: true,
        }
    }
}

impl Op for LayerNormSpec {
    fn normalizes_channels(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "LayerNorm"
    }

    fn validate(&self) -> Result<(), String> {
        if self.normalized_shape == 0 {
            return Err("normalized_shape must be positive".into());
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(format!("eps {} must be positive", self.eps));
        }
        Ok(())
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let shape = inputs[0];
        match shape.len() {
            1 | 2 if shape[shape.len() - 1] == self.normalized_shape => Ok(shape.to_vec()),
            1 | 2 => Err(format!(
                "normalises over {} features, but the input's last dimension is {}",
                self.normalized_shape,
                shape[shape.len() - 1]
            )),
            _ => Err(format!(
                "expected tokens [T, {}] or [{}], not an image",
                self.normalized_shape, self.normalized_shape
            )),
        }
    }

    fn macs(&self, _inputs: &[&[usize]], output: &[usize]) -> u64 {
        // One multiply-add per element, as for a batch norm (the statistics are not counted).
        count(output) as u64
    }

    fn params(&self) -> usize {
        match (self.elementwise_affine, self.bias) {
            (false, _) => 0,
            (true, false) => self.normalized_shape,
            (true, true) => 2 * self.normalized_shape,
        }
    }

    fn detail(&self) -> String {
        let affine = if self.elementwise_affine {
            ""
        } else {
            ", no affine"
        };
        format!("{}, eps={:e}{affine}", self.normalized_shape, self.eps)
    }

    fn build(&self, scheme: InitScheme, device: &Device) -> Layer {
        let d = self.normalized_shape;
        let init = |value: Initializer| value.init([d], device);
        let (one, zero) = match scheme {
            InitScheme::Zeros => (Initializer::Zeros, Initializer::Zeros),
            _ => (Initializer::Ones, Initializer::Zeros),
        };
        let affine = self.elementwise_affine;
        Layer::LayerNorm(LayerNorm {
            gamma: affine.then(|| init(one)),
            beta: (affine && self.bias).then(|| init(zero)),
            features: d,
            epsilon: self.eps,
        })
    }
}

/// A live layer norm. Its fields carry Burn's names (`gamma`, `beta`) so that burn-store's
/// PyTorch adapter maps `weight`/`bias` onto them, as our model files do.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// Scale γ (`weight` in PyTorch).
    pub gamma: Option<Param<Tensor<1>>>,
    /// Shift β (`bias` in PyTorch).
    pub beta: Option<Param<Tensor<1>>>,
    /// Size of the normalised dimension (known without γ).
    #[module(skip)]
    pub features: usize,
    /// Added to the variance.
    #[module(skip)]
    pub epsilon: f64,
}

impl LayerNorm {
    /// `(x − mean) / √(var + ε) · γ + β` over the last dimension.
    pub fn normalize<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let gamma = match &self.gamma {
            Some(g) => g.val(),
            None => Tensor::ones([self.features], &x.device()),
        };
        let beta = self.beta.as_ref().map(Param::val);
        burn::tensor::module::layer_norm(x, gamma, beta, self.epsilon)
    }
}

impl LiveOp for LayerNorm {
    fn spec(&self) -> LayerSpec {
        LayerSpec::LayerNorm(LayerNormSpec {
            normalized_shape: self.features,
            eps: self.epsilon,
            elementwise_affine: self.gamma.is_some(),
            bias: self.beta.is_some(),
        })
    }

    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = inputs.into_iter().next().expect("one input");
        x.map(
            |t| self.normalize(t),
            |t| self.normalize(t),
            |t| self.normalize(t),
        )
    }

    fn select_channels(&mut self, _inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        if let Some(keep) = outputs {
            let select = |p: &Param<Tensor<1>>| Param::from_tensor(select_dim(p.val(), 0, keep));
            self.gamma = self.gamma.as_ref().map(select);
            self.beta = self.beta.as_ref().map(select);
            self.features = keep.iter().filter(|k| **k).count();
        }
    }

    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        // Every output depends on every input's statistics: removing even a zero channel
        // changes the mean and variance of the others, so nothing is known to be constant.
        vec![None; inputs[0].len()]
    }
}

/// `torch.nn.RMSNorm(normalized_shape, eps)` as Llama applies it: `x / √(mean(x²) + ε) · γ`
/// over the last dimension (no mean subtracted, no shift).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmsNormSpec {
    /// Size of the normalised (last) dimension.
    pub normalized_shape: usize,
    /// Added to the mean square (`rms_norm_eps`).
    pub eps: f64,
}

impl Op for RmsNormSpec {
    fn normalizes_channels(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "RMSNorm"
    }

    fn validate(&self) -> Result<(), String> {
        LayerNormSpec::new(self.normalized_shape, self.eps).validate()
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        LayerNormSpec::new(self.normalized_shape, self.eps).output_shape(inputs)
    }

    fn macs(&self, _inputs: &[&[usize]], output: &[usize]) -> u64 {
        count(output) as u64
    }

    fn params(&self) -> usize {
        self.normalized_shape
    }

    fn detail(&self) -> String {
        format!("{}, eps={:e}", self.normalized_shape, self.eps)
    }

    fn build(&self, scheme: InitScheme, device: &Device) -> Layer {
        let one = match scheme {
            InitScheme::Zeros => Initializer::Zeros,
            _ => Initializer::Ones,
        };
        Layer::RMSNorm(RootMeanSquareNorm {
            weight: one.init([self.normalized_shape], device),
            epsilon: self.eps,
        })
    }
}

/// A live RMS norm, `weight` as in PyTorch. Not named `RmsNorm`: burn-store's PyTorch adapter
/// renames a `RmsNorm`'s `weight` to Burn's `gamma`.
#[derive(Module, Debug)]
pub struct RootMeanSquareNorm {
    /// Scale γ.
    pub weight: Param<Tensor<1>>,
    /// Added to the mean square.
    #[module(skip)]
    pub epsilon: f64,
}

impl RootMeanSquareNorm {
    /// `x / √(mean(x²) + ε) · γ` over the last dimension.
    pub fn normalize<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let [features] = self.weight.dims();
        let mut shape = [1usize; D];
        shape[D - 1] = features;
        let inv = (x.clone().square().mean_dim(D - 1) + self.epsilon)
            .sqrt()
            .recip();
        x * inv * self.weight.val().reshape(shape)
    }
}

impl LiveOp for RootMeanSquareNorm {
    fn spec(&self) -> LayerSpec {
        let [normalized_shape] = self.weight.lazy_shape().dims();
        LayerSpec::RMSNorm(RmsNormSpec {
            normalized_shape,
            eps: self.epsilon,
        })
    }

    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = inputs.into_iter().next().expect("one input");
        x.map(
            |t| self.normalize(t),
            |t| self.normalize(t),
            |t| self.normalize(t),
        )
    }

    fn select_channels(&mut self, _inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        if let Some(keep) = outputs {
            self.weight = Param::from_tensor(select_dim(self.weight.val(), 0, keep));
        }
    }

    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        // The mean square is over every channel: nothing is known to be constant.
        vec![None; inputs[0].len()]
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::linalg::host_values;

    #[test]
    fn layer_norm_matches_a_hand_computation_on_tokens_and_flat_batches() {
        let device = Device::flex();
        let spec = LayerNormSpec::new(4, 1e-6);
        let Layer::LayerNorm(mut ln) = spec.build(InitScheme::PyTorchDefault, &device) else {
            unreachable!()
        };
        let gamma = [1.0f32, 2.0, 0.5, -1.0];
        let beta = [0.0f32, 1.0, -1.0, 0.5];
        ln.gamma = Some(Param::from_tensor(Tensor::from_data(gamma, &device)));
        ln.beta = Some(Param::from_tensor(Tensor::from_data(beta, &device)));
        let rows = [[1.0f32, 2.0, 3.0, 4.0], [-2.0, 0.0, 0.0, 6.0]];
        let expected: Vec<f32> = rows
            .iter()
            .flat_map(|r| {
                let mean = r.iter().sum::<f32>() / 4.0;
                let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
                (0..4).map(move |c| (r[c] - mean) / (var + 1e-6).sqrt() * gamma[c] + beta[c])
            })
            .collect();
        let flat: Vec<f32> = rows.concat();
        let tokens = Tensor::<3>::from_data(TensorData::new(flat.clone(), [1, 2, 4]), &device);
        let y = ln.forward(vec![Activation::Tokens(tokens)]);
        let flat = Tensor::<2>::from_data(TensorData::new(flat, [2, 4]), &device);
        let z = ln.forward(vec![Activation::Flat(flat)]);
        for got in [host_values(y.flatten()), host_values(z.flatten())] {
            for (a, b) in got.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
        assert_eq!(spec.params(), 8);
        assert!(
            spec.output_shape(&[&[3, 4, 4]]).is_err(),
            "images are refused"
        );
    }

    #[test]
    fn rms_norm_matches_a_hand_computation() {
        let device = Device::flex();
        let spec = RmsNormSpec {
            normalized_shape: 3,
            eps: 1e-6,
        };
        let Layer::RMSNorm(mut norm) = spec.build(InitScheme::PyTorchDefault, &device) else {
            unreachable!()
        };
        let gamma = [1.0f32, -2.0, 0.5];
        norm.weight = Param::from_tensor(Tensor::from_data(gamma, &device));
        let rows = [[1.0f32, 2.0, 3.0], [-4.0, 0.0, 0.5]];
        let x = Tensor::<3>::from_data(TensorData::new(rows.concat(), [1, 2, 3]), &device);
        let y = host_values(norm.forward(vec![Activation::Tokens(x)]).flatten());
        for (r, row) in rows.iter().enumerate() {
            let rms = (row.iter().map(|v| v * v).sum::<f32>() / 3.0 + 1e-6).sqrt();
            for c in 0..3 {
                let want = row[c] / rms * gamma[c];
                assert!(
                    (y[r * 3 + c] - want).abs() < 1e-5,
                    "{} vs {want}",
                    y[r * 3 + c]
                );
            }
        }
        assert_eq!(spec.params(), 3);
    }
}
