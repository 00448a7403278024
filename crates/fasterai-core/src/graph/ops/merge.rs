//! Ops that join several values: `Add` (residuals), `Mul` (gates), `Concat`.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::graph::activation::{Activation, channel_axis};
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{Arity, Channels, InitScheme, LiveOp, Op};

fn shape_list(inputs: &[&[usize]]) -> String {
    inputs
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Folds the inputs pairwise with `f4` (images), `f3` (tokens) or `f2` (flat batches).
fn fold_inputs(
    inputs: Vec<Activation>,
    f4: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
    f3: impl Fn(Tensor<3>, Tensor<3>) -> Tensor<3>,
    f2: impl Fn(Tensor<2>, Tensor<2>) -> Tensor<2>,
) -> Activation {
    let mut it = inputs.into_iter();
    let first = it.next().expect("at least two inputs");
    it.fold(first, |acc, x| match (acc, x) {
        (Activation::Spatial(a), Activation::Spatial(b)) => Activation::Spatial(f4(a, b)),
        (Activation::Tokens(a), Activation::Tokens(b)) => Activation::Tokens(f3(a, b)),
        (Activation::Flat(a), Activation::Flat(b)) => Activation::Flat(f2(a, b)),
        _ => unreachable!("shapes checked: inputs of one kind"),
    })
}

/// Element-wise sum of two or more inputs of one shape (`out += identity` in a residual block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Add {}

impl Op for Add {
    fn kind(&self) -> &'static str {
        "Add"
    }
    fn arity(&self) -> Arity {
        Arity::Many
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        if inputs.iter().any(|s| *s != inputs[0]) {
            return Err(format!(
                "inputs must have one shape, got {}",
                shape_list(inputs)
            ));
        }
        Ok(inputs[0].to_vec())
    }
    fn channels(&self) -> Channels {
        Channels::Elementwise
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::Add(*self)
    }
}

impl LiveOp for Add {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Add(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        fold_inputs(inputs, |a, b| a + b, |a, b| a + b, |a, b| a + b)
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        (0..inputs[0].len())
            .map(|c| inputs.iter().map(|v| v[c]).sum())
            .collect()
    }
}

/// Element-wise product of two or more inputs; a `[C, 1, 1]` input broadcasts over H×W (the
/// gate of a squeeze-and-excitation block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mul {}

impl Op for Mul {
    fn kind(&self) -> &'static str {
        "Mul"
    }
    fn arity(&self) -> Arity {
        Arity::Many
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let full = inputs
            .iter()
            .max_by_key(|s| s.iter().product::<usize>())
            .expect("inputs");
        let fits = |s: &[usize]| {
            s == *full || (s.len() == 3 && full.len() == 3 && s[0] == full[0] && s[1..] == [1, 1])
        };
        if !inputs.iter().all(|s| fits(s)) {
            return Err(format!(
                "inputs must have one shape, or [C, 1, 1] beside [C, H, W]; got {}",
                shape_list(inputs)
            ));
        }
        Ok(full.to_vec())
    }
    fn channels(&self) -> Channels {
        Channels::Elementwise
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::Mul(*self)
    }
}

impl LiveOp for Mul {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Mul(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        fold_inputs(inputs, |a, b| a * b, |a, b| a * b, |a, b| a * b)
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        (0..inputs[0].len())
            .map(|c| {
                if inputs.iter().any(|v| v[c] == Some(0.0)) {
                    Some(0.0)
                } else {
                    inputs.iter().map(|v| v[c]).product()
                }
            })
            .collect()
    }
}

/// Concatenation along channels (`torch.cat(xs, dim=1)` for images and flat batches, the
/// feature axis for tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concat {}

impl Op for Concat {
    fn kind(&self) -> &'static str {
        "Concat"
    }
    fn arity(&self) -> Arity {
        Arity::Many
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let first = inputs[0];
        let axis = channel_axis(first);
        let others = |s: &[usize]| {
            let mut s = s.to_vec();
            s.remove(axis);
            s
        };
        if inputs
            .iter()
            .any(|s| s.len() != first.len() || others(s) != others(first))
        {
            return Err(format!(
                "inputs must agree on every dimension but channels, got {}",
                shape_list(inputs)
            ));
        }
        let mut out = first.to_vec();
        out[axis] = inputs
            .iter()
            .try_fold(0usize, |n, s| n.checked_add(s[axis]))
            .ok_or("the channel count overflows")?;
        Ok(out)
    }
    fn channels(&self) -> Channels {
        Channels::Concat
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::Concat(*self)
    }
}

impl LiveOp for Concat {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Concat(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        match &inputs[0] {
            Activation::Spatial(_) => Activation::Spatial(Tensor::cat(
                inputs
                    .into_iter()
                    .filter_map(Activation::into_spatial)
                    .collect(),
                1,
            )),
            Activation::Tokens(_) => Activation::Tokens(Tensor::cat(
                inputs
                    .into_iter()
                    .filter_map(Activation::into_tokens)
                    .collect(),
                2,
            )),
            Activation::Flat(_) => Activation::Flat(Tensor::cat(
                inputs
                    .into_iter()
                    .filter_map(Activation::into_flat)
                    .collect(),
                1,
            )),
        }
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        inputs.concat()
    }
}
