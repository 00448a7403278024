//! Element-wise activations and dropout: per-channel, no parameters.

use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::Device;
use burn::tensor::activation::{hard_sigmoid, hard_swish, relu, relu6, sigmoid, silu};
use serde::{Deserialize, Serialize};

use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{InitScheme, LiveOp, Op, map_constants};

/// Declares a parameter-free element-wise activation: its spec is also its live form.
macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $tensor_fn:expr, $scalar_fn:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {}

        impl Op for $name {
            fn kind(&self) -> &'static str {
                stringify!($name)
            }
            fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
                Ok(inputs[0].to_vec())
            }
            fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
                Layer::$name(*self)
            }
        }

        impl LiveOp for $name {
            fn spec(&self) -> LayerSpec {
                LayerSpec::$name(*self)
            }
            fn forward(&self, inputs: Vec<Activation>) -> Activation {
                let x = inputs.into_iter().next().expect("one input");
                x.map(|t| $tensor_fn(t), |t| $tensor_fn(t))
            }
            fn constant_channels(
                &self,
                inputs: &[Vec<Option<f32>>],
                _shapes: &[&[usize]],
                _output: &[usize],
            ) -> Vec<Option<f32>> {
                map_constants(inputs, $scalar_fn)
            }
        }
    };
}

activation!(
    /// `torch.nn.ReLU`.
    ReLU, relu, |x: f32| x.max(0.0)
);
activation!(
    /// `torch.nn.ReLU6`: `min(max(x, 0), 6)`.
    ReLU6, relu6, |x: f32| x.clamp(0.0, 6.0)
);
activation!(
    /// `torch.nn.SiLU` (swish): `x · σ(x)`.
    SiLU, silu, |x: f32| x / (1.0 + (-x).exp())
);
activation!(
    /// `torch.nn.Sigmoid`.
    Sigmoid, sigmoid, |x: f32| 1.0 / (1.0 + (-x).exp())
);
activation!(
    /// `torch.nn.Hardsigmoid`: `relu6(x + 3) / 6`.
    Hardsigmoid, |t| hard_sigmoid(t, 1.0 / 6.0, 0.5), |x: f32| (x / 6.0 + 0.5).clamp(0.0, 1.0)
);
activation!(
    /// `torch.nn.Hardswish`: `x · relu6(x + 3) / 6`.
    Hardswish, hard_swish, |x: f32| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)
);

/// `torch.nn.Dropout` (identity in evaluation mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    /// Probability of zeroing an element while training.
    pub p: f64,
}

impl Op for DropoutSpec {
    fn kind(&self) -> &'static str {
        "Dropout"
    }
    fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(format!("dropout probability {} must be in [0, 1)", self.p));
        }
        Ok(())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }
    fn detail(&self) -> String {
        format!("p={}", self.p)
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::Dropout(DropoutConfig::new(self.p).init())
    }
}

impl LiveOp for Dropout {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Dropout(DropoutSpec { p: self.prob })
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = inputs.into_iter().next().expect("one input");
        x.map(|t| Dropout::forward(self, t), |t| Dropout::forward(self, t))
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        // Evaluation semantics: the identity.
        inputs[0].clone()
    }
}
