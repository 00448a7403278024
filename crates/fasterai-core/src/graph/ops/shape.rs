//! `Flatten` and `Identity`: no parameters, no arithmetic.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{Channels, InitScheme, LiveOp, Op, spatial};

/// `torch.flatten(x, 1)`: `[N, C, H, W]` to `[N, C·H·W]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flatten {}

impl Op for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        spatial(inputs)?;
        let features = crate::limits::product(inputs[0])
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("the flattened size overflows")?;
        Ok(vec![features])
    }
    fn channels(&self) -> Channels {
        Channels::Flatten
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::Flatten(*self)
    }
}

impl LiveOp for Flatten {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Flatten(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = inputs.into_iter().next().expect("one input");
        Activation::Flat(x.flatten())
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        let per_channel: usize = shapes[0][1..].iter().product();
        inputs[0]
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, per_channel))
            .collect()
    }
}

/// `torch.nn.Identity`: passes its input on (a shortcut with nothing on it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {}

impl Op for Identity {
    fn kind(&self) -> &'static str {
        "Identity"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::Identity(*self)
    }
}

impl LiveOp for Identity {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Identity(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        inputs.into_iter().next().expect("one input")
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        inputs[0].clone()
    }
}
