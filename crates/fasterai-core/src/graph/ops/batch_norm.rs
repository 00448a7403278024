//! `BatchNorm2d`.

use burn::module::{Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{image, select_dim};
use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{InitScheme, LiveOp, Op, count, spatial};
use crate::linalg::host_values;

/// `torch.nn.BatchNorm2d` (affine, tracking running statistics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // PyTorch's names and meanings
pub struct BatchNorm2dSpec {
    pub num_features: usize,
    #[serde(default = "bn_eps")]
    pub eps: f64,
    #[serde(default = "bn_momentum")]
    pub momentum: f64,
}

fn bn_eps() -> f64 {
    1e-5
}
fn bn_momentum() -> f64 {
    0.1
}

impl BatchNorm2dSpec {
    /// PyTorch's defaults (ε = 1e-5, momentum 0.1).
    pub fn new(num_features: usize) -> Self {
        Self {
            num_features,
            eps: bn_eps(),
            momentum: bn_momentum(),
        }
    }
}

impl Op for BatchNorm2dSpec {
    fn kind(&self) -> &'static str {
        "BatchNorm2d"
    }

    fn validate(&self) -> Result<(), String> {
        let (eps, momentum) = (self.eps, self.momentum);
        if self.num_features == 0 {
            return Err("num_features must be positive".into());
        }
        if !(eps.is_finite() && eps > 0.0 && (0.0..=1.0).contains(&momentum)) {
            return Err(format!(
                "eps = {eps} must be > 0 and momentum = {momentum} in [0, 1]"
            ));
        }
        Ok(())
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match spatial(inputs) {
            Ok([c, ..]) if c == self.num_features => Ok(inputs[0].to_vec()),
            _ => Err(format!("expected [{}, height, width]", self.num_features)),
        }
    }

    fn macs(&self, _inputs: &[&[usize]], output: &[usize]) -> u64 {
        count(output) as u64
    }

    fn params(&self) -> usize {
        2 * self.num_features
    }

    fn buffers(&self) -> usize {
        2 * self.num_features
    }

    fn detail(&self) -> String {
        self.num_features.to_string()
    }

    fn build(&self, _scheme: InitScheme, device: &Device) -> Layer {
        Layer::BatchNorm2d(
            BatchNormConfig::new(self.num_features)
                .with_epsilon(self.eps)
                .with_momentum(self.momentum)
                .init(device),
        )
    }
}

impl LiveOp for BatchNorm {
    fn spec(&self) -> LayerSpec {
        LayerSpec::BatchNorm2d(BatchNorm2dSpec {
            num_features: self.gamma.lazy_shape()[0],
            eps: self.epsilon,
            momentum: self.momentum,
        })
    }

    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        Activation::Spatial(BatchNorm::forward(self, image(inputs)))
    }

    fn select_channels(&mut self, _inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        if let Some(keep) = outputs {
            self.gamma = Param::from_tensor(select_dim(self.gamma.val(), 0, keep));
            self.beta = Param::from_tensor(select_dim(self.beta.val(), 0, keep));
            self.running_mean = RunningState::new(select_dim(self.running_mean.value(), 0, keep));
            self.running_var = RunningState::new(select_dim(self.running_var.value(), 0, keep));
        }
    }

    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        let (scale, shift) = self.affine();
        inputs[0]
            .iter()
            .enumerate()
            .map(|(c, v)| v.map(|v| v * scale[c] + shift[c]))
            .collect()
    }
}

/// The evaluation-mode batch norm as `x · scale + shift` per channel.
pub trait BatchNormAffine {
    /// `(γ / √(σ² + ε), β − μ · γ / √(σ² + ε))`, on the host.
    fn affine(&self) -> (Vec<f32>, Vec<f32>);
}

impl BatchNormAffine for BatchNorm {
    fn affine(&self) -> (Vec<f32>, Vec<f32>) {
        let (g, b) = (host_values(self.gamma.val()), host_values(self.beta.val()));
        let (m, v) = (
            host_values(self.running_mean.value()),
            host_values(self.running_var.value()),
        );
        let scale: Vec<f32> = (0..g.len())
            .map(|c| g[c] / (v[c] + self.epsilon as f32).sqrt())
            .collect();
        let shift = (0..g.len()).map(|c| b[c] - m[c] * scale[c]).collect();
        (scale, shift)
    }
}
