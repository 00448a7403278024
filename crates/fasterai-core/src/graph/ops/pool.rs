//! Pooling: max, average, adaptive average (global when the output is 1×1).

use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AdaptiveAvgPool2dConfig, AvgPool2dConfig, MaxPool2dConfig};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::image;
use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{InitScheme, LiveOp, Op, pair, spatial, window_out};

fn one2() -> [usize; 2] {
    [1, 1]
}
fn yes() -> bool {
    true
}

fn explicit(p: [usize; 2]) -> PaddingConfig2d {
    PaddingConfig2d::Explicit(p[0], p[1], p[0], p[1])
}

fn check_window(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Result<(), String> {
    if kernel.contains(&0) || stride.contains(&0) {
        return Err("kernel_size and stride must be positive".into());
    }
    if padding[0] * 2 > kernel[0] || padding[1] * 2 > kernel[1] {
        return Err("padding must be at most half the kernel size".into());
    }
    Ok(())
}

/// `torch.nn.MaxPool2d`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // PyTorch's names and meanings
pub struct MaxPool2dSpec {
    pub kernel_size: [usize; 2],
    pub stride: [usize; 2],
    #[serde(default)]
    pub padding: [usize; 2],
    #[serde(default = "one2")]
    pub dilation: [usize; 2],
    #[serde(default)]
    pub ceil_mode: bool,
}

impl MaxPool2dSpec {
    /// `MaxPool2d(kernel, stride, padding)`.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel_size: [kernel; 2],
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [1, 1],
            ceil_mode: false,
        }
    }
}

/// `[C, H', W']` after a window `[kernel, stride, padding, dilation]` slides over `[C, H, W]`.
fn pooled(inputs: &[&[usize]], window: [[usize; 2]; 4], ceil: bool) -> Result<Vec<usize>, String> {
    let [c, h, w] = spatial(inputs)?;
    let [k, s, p, d] = window;
    match (
        window_out(h, k[0], s[0], p[0], d[0], ceil),
        window_out(w, k[1], s[1], p[1], d[1], ceil),
    ) {
        (Some(oh), Some(ow)) => Ok(vec![c, oh, ow]),
        _ => Err("the image is smaller than the pooling window".into()),
    }
}

impl Op for MaxPool2dSpec {
    fn kind(&self) -> &'static str {
        "MaxPool2d"
    }
    fn validate(&self) -> Result<(), String> {
        if self.dilation.contains(&0) {
            return Err("dilation must be positive".into());
        }
        check_window(self.kernel_size, self.stride, self.padding)
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let window = [self.kernel_size, self.stride, self.padding, self.dilation];
        pooled(inputs, window, self.ceil_mode)
    }
    fn detail(&self) -> String {
        format!("k{}, s{}", pair(self.kernel_size), pair(self.stride))
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::MaxPool2d(self.clone())
    }
}

impl LiveOp for MaxPool2dSpec {
    fn spec(&self) -> LayerSpec {
        LayerSpec::MaxPool2d(self.clone())
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let pool = MaxPool2dConfig::new(self.kernel_size)
            .with_strides(self.stride)
            .with_dilation(self.dilation)
            .with_ceil_mode(self.ceil_mode)
            .with_padding(explicit(self.padding))
            .init();
        Activation::Spatial(pool.forward(image(inputs)))
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        // Padding is −∞ for max pooling: a constant stays that constant.
        inputs[0].clone()
    }
}

/// `torch.nn.AvgPool2d`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // PyTorch's names and meanings
pub struct AvgPool2dSpec {
    pub kernel_size: [usize; 2],
    pub stride: [usize; 2],
    #[serde(default)]
    pub padding: [usize; 2],
    #[serde(default)]
    pub ceil_mode: bool,
    #[serde(default = "yes")]
    pub count_include_pad: bool,
}

impl Op for AvgPool2dSpec {
    fn kind(&self) -> &'static str {
        "AvgPool2d"
    }
    fn validate(&self) -> Result<(), String> {
        check_window(self.kernel_size, self.stride, self.padding)
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let window = [self.kernel_size, self.stride, self.padding, [1, 1]];
        pooled(inputs, window, self.ceil_mode)
    }
    fn detail(&self) -> String {
        format!("k{}, s{}", pair(self.kernel_size), pair(self.stride))
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::AvgPool2d(self.clone())
    }
}

impl LiveOp for AvgPool2dSpec {
    fn spec(&self) -> LayerSpec {
        LayerSpec::AvgPool2d(self.clone())
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let pool = AvgPool2dConfig::new(self.kernel_size)
            .with_strides(self.stride)
            .with_ceil_mode(self.ceil_mode)
            .with_count_include_pad(self.count_include_pad)
            .with_padding(explicit(self.padding))
            .init();
        Activation::Spatial(pool.forward(image(inputs)))
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        // Zero padding counted in the mean makes a non-zero constant uneven at the borders.
        let exact = self.padding == [0, 0] || !self.count_include_pad;
        inputs[0]
            .iter()
            .map(|v| v.filter(|&v| exact || v == 0.0))
            .collect()
    }
}

/// `torch.nn.AdaptiveAvgPool2d`; `[1, 1]` is global average pooling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveAvgPool2dSpec {
    /// Output height and width.
    pub output_size: [usize; 2],
}

impl Op for AdaptiveAvgPool2dSpec {
    fn kind(&self) -> &'static str {
        "AdaptiveAvgPool2d"
    }
    fn validate(&self) -> Result<(), String> {
        if self.output_size.contains(&0) {
            return Err("output_size must be positive".into());
        }
        Ok(())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [c, _, _] = spatial(inputs)?;
        Ok(vec![c, self.output_size[0], self.output_size[1]])
    }
    fn detail(&self) -> String {
        format!("→{}×{}", self.output_size[0], self.output_size[1])
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::AdaptiveAvgPool2d(self.clone())
    }
}

impl LiveOp for AdaptiveAvgPool2dSpec {
    fn spec(&self) -> LayerSpec {
        LayerSpec::AdaptiveAvgPool2d(self.clone())
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let pool = AdaptiveAvgPool2dConfig::new(self.output_size).init();
        Activation::Spatial(pool.forward(image(inputs)))
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
