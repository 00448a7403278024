//! `Conv2d`: standard, grouped and depthwise.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{all_zero, image, select_dim};
use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{Channels, InitScheme, LiveOp, Op, count, pair, spatial, window_out};
use crate::linalg::host_values;

/// `torch.nn.Conv2d` with symmetric zero padding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // PyTorch's names and meanings
pub struct Conv2dSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: [usize; 2],
    #[serde(default = "one2")]
    pub stride: [usize; 2],
    #[serde(default)]
    pub padding: [usize; 2],
    #[serde(default = "one2")]
    pub dilation: [usize; 2],
    #[serde(default = "one")]
    pub groups: usize,
    #[serde(default = "yes")]
    pub bias: bool,
}

fn one() -> usize {
    1
}
fn one2() -> [usize; 2] {
    [1, 1]
}
fn yes() -> bool {
    true
}

impl Conv2dSpec {
    /// `Conv2d(in, out, k, stride, padding = k / 2)` without bias: the convolution of every
    /// network that follows it with a batch norm.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel_size: [kernel, kernel],
            stride: [stride, stride],
            padding: [kernel / 2, kernel / 2],
            dilation: [1, 1],
            groups: 1,
            bias: false,
        }
    }

    /// With `groups` groups.
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// With or without a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// One filter per input channel (`groups == in == out`).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }
}

impl Op for Conv2dSpec {
    fn kind(&self) -> &'static str {
        "Conv2d"
    }

    fn validate(&self) -> Result<(), String> {
        let (i, o, g) = (self.in_channels, self.out_channels, self.groups);
        if i == 0 || o == 0 {
            return Err(format!("channels must be positive, got {i}→{o}"));
        }
        if self.kernel_size.contains(&0) || self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err("kernel_size, stride and dilation must be positive".into());
        }
        if g == 0 || i % g != 0 || o % g != 0 {
            return Err(format!(
                "groups = {g} must divide in_channels = {i} and out_channels = {o}"
            ));
        }
        Ok(())
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [c, h, w] = spatial(inputs)?;
        if c != self.in_channels {
            return Err(format!("expected {} input channels", self.in_channels));
        }
        let (k, s, p, d) = (self.kernel_size, self.stride, self.padding, self.dilation);
        let oh = window_out(h, k[0], s[0], p[0], d[0], false);
        let ow = window_out(w, k[1], s[1], p[1], d[1], false);
        match (oh, ow) {
            (Some(oh), Some(ow)) => Ok(vec![self.out_channels, oh, ow]),
            _ => Err("the image is smaller than the kernel".into()),
        }
    }

    fn macs(&self, _inputs: &[&[usize]], output: &[usize]) -> u64 {
        let [kh, kw] = self.kernel_size;
        let per_sample = count(output);
        count(&[per_sample, self.in_channels / self.groups.max(1), kh, kw]) as u64
    }

    fn params(&self) -> usize {
        let [kh, kw] = self.kernel_size;
        let weight = count(&[
            self.out_channels,
            self.in_channels / self.groups.max(1),
            kh,
            kw,
        ]);
        weight.saturating_add(if self.bias { self.out_channels } else { 0 })
    }

    fn detail(&self) -> String {
        let k = self.kernel_size;
        let mut s = format!(
            "{}→{}, k{}×{}",
            self.in_channels, self.out_channels, k[0], k[1]
        );
        if self.stride != [1, 1] {
            s += &format!(", s{}", pair(self.stride));
        }
        if self.padding != [0, 0] {
            s += &format!(", p{}", pair(self.padding));
        }
        if self.dilation != [1, 1] {
            s += &format!(", d{}", pair(self.dilation));
        }
        if self.is_depthwise() {
            s += ", depthwise";
        } else if self.groups != 1 {
            s += &format!(", g{}", self.groups);
        }
        if !self.bias {
            s += ", no bias";
        }
        s
    }

    fn channels(&self) -> Channels {
        match self.groups {
            1 => Channels::Transform,
            _ if self.is_depthwise() => Channels::PerChannel,
            _ => Channels::Opaque,
        }
    }

    fn build(&self, scheme: InitScheme, device: &Device) -> Layer {
        let p = self.padding;
        let mut config = Conv2dConfig::new([self.in_channels, self.out_channels], self.kernel_size)
            .with_stride(self.stride)
            .with_dilation(self.dilation)
            .with_groups(self.groups)
            .with_bias(self.bias)
            .with_padding(PaddingConfig2d::Explicit(p[0], p[1], p[0], p[1]));
        match scheme {
            InitScheme::PyTorchDefault => {}
            InitScheme::Zeros => config = config.with_initializer(Initializer::Zeros),
            InitScheme::Vgg | InitScheme::KaimingFanOut => {
                config = config.with_initializer(Initializer::KaimingNormal {
                    gain: std::f64::consts::SQRT_2,
                    fan_out_only: true,
                })
            }
            InitScheme::Transformer => {
                let fan_in =
                    self.in_channels / self.groups * self.kernel_size.iter().product::<usize>();
                config = config.with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: (1.0 / fan_in as f64).sqrt(),
                })
            }
        }
        let mut conv = config.init(device);
        if scheme != InitScheme::PyTorchDefault {
            conv.bias = conv.bias.map(|b| b.map(|b| b.zeros_like()));
        }
        Layer::Conv2d(conv)
    }
}

impl LiveOp for Conv2d {
    fn spec(&self) -> LayerSpec {
        let [out_channels, in_per_group, kh, kw] = self.weight.lazy_shape().dims();
        let padding = match &self.padding {
            PaddingConfig2d::Explicit(top, left, _, _) => [*top, *left],
            // Convolutions are only built from specs, which always use explicit padding.
            _ => [0, 0],
        };
        LayerSpec::Conv2d(Conv2dSpec {
            in_channels: in_per_group * self.groups,
            out_channels,
            kernel_size: [kh, kw],
            stride: self.stride,
            padding,
            dilation: self.dilation,
            groups: self.groups,
            bias: self.bias.is_some(),
        })
    }

    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        Activation::Spatial(Conv2d::forward(self, image(inputs)))
    }

    fn select_channels(&mut self, inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        let depthwise = self.groups > 1;
        let mut weight = self.weight.val();
        if let (Some(keep), false) = (inputs, depthwise) {
            weight = select_dim(weight, 1, keep);
        }
        if let Some(keep) = outputs {
            weight = select_dim(weight, 0, keep);
            if let Some(b) = &self.bias {
                self.bias = Some(Param::from_tensor(select_dim(b.val(), 0, keep)));
            }
            if depthwise {
                // Only depthwise grouped convolutions are ever pruned (see `channels`).
                self.groups = keep.iter().filter(|k| **k).count();
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
        // Output c is its bias when every weight it reads is zero or meets a zero input (zero
        // padding adds nothing); otherwise it varies over the image.
        let [out, per_group, kh, kw] = self.weight.dims();
        let w = host_values(self.weight.val());
        let bias = self.bias.as_ref().map(|b| host_values(b.val()));
        let k = kh * kw;
        let outs_per_group = out / self.groups;
        (0..out)
            .map(|c| {
                let first_in = c / outs_per_group * per_group;
                let silent = (0..per_group).all(|i| {
                    inputs[0][first_in + i] == Some(0.0)
                        || all_zero(&w[(c * per_group + i) * k..(c * per_group + i + 1) * k])
                });
                silent.then(|| bias.as_ref().map_or(0.0, |b| b[c]))
            })
            .collect()
    }
}
