//! `Linear`.

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{flat, select_dim};
use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{Channels, InitScheme, LiveOp, Op, count};
use crate::linalg::host_values;

/// `torch.nn.Linear`, on a flat batch `[N, in]` or on every token of a sequence `[N, T, in]`.
/// Burn stores the weight as `[in, out]` (PyTorch: `[out, in]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // PyTorch's names and meanings
pub struct LinearSpec {
    pub in_features: usize,
    pub out_features: usize,
    #[serde(default = "yes")]
    pub bias: bool,
}

fn yes() -> bool {
    true
}

impl LinearSpec {
    /// `Linear(in, out)` with bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Self {
            in_features,
            out_features,
            bias: true,
        }
    }

    /// With or without a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

impl Op for LinearSpec {
    fn kind(&self) -> &'static str {
        "Linear"
    }

    fn validate(&self) -> Result<(), String> {
        if self.in_features == 0 || self.out_features == 0 {
            return Err(format!(
                "features must be positive, got {}→{}",
                self.in_features, self.out_features
            ));
        }
        Ok(())
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs[0] {
            [f] if *f == self.in_features => Ok(vec![self.out_features]),
            [t, d] if *d == self.in_features => Ok(vec![*t, self.out_features]),
            [_, _] => Err(format!("expected tokens of {} features", self.in_features)),
            _ => Err(format!(
                "expected [{}] (flatten the image first) or tokens [T, {}]",
                self.in_features, self.in_features
            )),
        }
    }

    fn macs(&self, inputs: &[&[usize]], _output: &[usize]) -> u64 {
        // Once per token for a sequence.
        let rows = match inputs[0] {
            [t, _] => *t,
            _ => 1,
        };
        count(&[rows, self.in_features, self.out_features]) as u64
    }

    fn params(&self) -> usize {
        count(&[self.in_features, self.out_features]).saturating_add(if self.bias {
            self.out_features
        } else {
            0
        })
    }

    fn detail(&self) -> String {
        let bias = if self.bias { "" } else { ", no bias" };
        format!("{}→{}{bias}", self.in_features, self.out_features)
    }

    fn channels(&self) -> Channels {
        Channels::Transform
    }

    fn build(&self, scheme: InitScheme, device: &Device) -> Layer {
        let mut config =
            LinearConfig::new(self.in_features, self.out_features).with_bias(self.bias);
        match scheme {
            InitScheme::PyTorchDefault => {}
            InitScheme::Zeros => config = config.with_initializer(Initializer::Zeros),
            InitScheme::Vgg | InitScheme::KaimingFanOut => {
                config = config.with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.01,
                })
            }
            InitScheme::Transformer => {
                config = config.with_initializer(Initializer::XavierUniform { gain: 1.0 })
            }
        }
        let mut linear = config.init(device);
        if scheme != InitScheme::PyTorchDefault {
            linear.bias = linear.bias.map(|b| b.map(|b| b.zeros_like()));
        }
        Layer::Linear(linear)
    }
}

impl LiveOp for Linear {
    fn spec(&self) -> LayerSpec {
        let [in_features, out_features] = self.weight.lazy_shape().dims();
        LayerSpec::Linear(LinearSpec {
            in_features,
            out_features,
            bias: self.bias.is_some(),
        })
    }

    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        match inputs.into_iter().next().expect("one input") {
            Activation::Tokens(x) => Activation::Tokens(Linear::forward(self, x)),
            x => Activation::Flat(Linear::forward(self, flat(vec![x]))),
        }
    }

    fn select_channels(&mut self, inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        let mut weight = self.weight.val();
        if let Some(keep) = inputs {
            weight = select_dim(weight, 0, keep);
        }
        if let Some(keep) = outputs {
            weight = select_dim(weight, 1, keep);
            if let Some(b) = &self.bias {
                self.bias = Some(Param::from_tensor(select_dim(b.val(), 0, keep)));
            }
        }
        self.weight = Param::from_tensor(weight);
    }

    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        // Output o is silent when every input that may be non-zero meets a zero weight:
        // Σ_i live[i]·|w[i, o]| = 0 (non-negative terms cannot cancel; NaN is not zero). On the
        // device, as one vector-matrix product: no host copy of a 400 MB weight.
        let weight = self.weight.val(); // [in, out]
        let [n_in, _] = weight.dims();
        let live: Vec<f32> = (0..n_in)
            .map(|i| if inputs[0][i] == Some(0.0) { 0.0 } else { 1.0 })
            .collect();
        let live = Tensor::<2>::from_data(TensorData::new(live, [1, n_in]), &weight.device());
        let reach = host_values(live.matmul(weight.abs()));
        let bias = self.bias.as_ref().map(|b| host_values(b.val()));
        reach
            .iter()
            .enumerate()
            .map(|(o, &r)| (r == 0.0).then(|| bias.as_ref().map_or(0.0, |b| b[o])))
            .collect()
    }
}
