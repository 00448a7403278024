//! `FakeQuantize`: rounds an activation to its int8 (or narrower) grid and back, as the
//! integer kernel it stands for would see it; trains through a straight-through estimator.

use burn::tensor::{Device, Tensor};

use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{InitScheme, LiveOp, Op, map_constants};
use crate::quant::ActivationGrid;

/// The op is its grid: scale, zero point and bits (ONNX `QuantizeLinear` + `DequantizeLinear`).
pub type FakeQuantize = ActivationGrid;

impl Op for ActivationGrid {
    fn kind(&self) -> &'static str {
        "FakeQuantize"
    }
    fn validate(&self) -> Result<(), String> {
        ActivationGrid::validate(self)
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }
    fn detail(&self) -> String {
        format!(
            "int{}, scale {:.4e}, zero {}",
            self.bits, self.scale, self.zero_point
        )
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::FakeQuantize(*self)
    }
}

impl LiveOp for ActivationGrid {
    fn spec(&self) -> LayerSpec {
        LayerSpec::FakeQuantize(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = inputs.into_iter().next().expect("one input");
        x.map(
            |t| fake_quantize(t, self),
            |t| fake_quantize(t, self),
            |t| fake_quantize(t, self),
        )
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        map_constants(inputs, |x| self.fake_quantize(x))
    }
}

/// `(clamp(round(x / s) + z) - z) · s`. While training (a tracked tensor), the gradient passes
/// straight through where `x` is inside the grid's range and is zero where it saturates; the
/// value is the same either way (`x - x` is exactly zero).
pub fn fake_quantize<const D: usize>(x: Tensor<D>, grid: &ActivationGrid) -> Tensor<D> {
    let (qmin, qmax) = ActivationGrid::code_range(grid.bits);
    let z = grid.zero_point as f32;
    let shifted = x
        .clone()
        .detach()
        .div_scalar(grid.scale)
        .round()
        .add_scalar(z);
    let y = shifted
        .clone()
        .clamp(qmin as f32, qmax as f32)
        .sub_scalar(z)
        .mul_scalar(grid.scale);
    if !x.is_tracked() {
        return y;
    }
    let inside = shifted
        .clone()
        .greater_equal_elem(qmin as f32)
        .bool_and(shifted.lower_equal_elem(qmax as f32))
        .float();
    y + (x.clone() - x.detach()) * inside
}
