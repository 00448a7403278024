//! VGG (Simonyan & Zisserman, 2015) in torchvision's exact layer layout.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use fasterai_core::graph::ops::pool::AdaptiveAvgPool2dSpec;
use fasterai_core::graph::{Graph, GraphBuilder, GraphSpec, InitScheme, Layer, LayerSpec};
use fasterai_core::model::Model;
use serde::{Deserialize, Serialize};

use crate::ModelsError;

/// Network depth: the number of weight layers (configurations A, B, D, E of the paper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VggDepth {
    /// 8 conv + 3 linear.
    Vgg11,
    /// 10 conv + 3 linear.
    Vgg13,
    /// 13 conv + 3 linear.
    Vgg16,
    /// 16 conv + 3 linear.
    Vgg19,
}

/// What follows the convolutional features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VggHead {
    /// torchvision's: `AdaptiveAvgPool2d(7×7)`, then `Linear(512·49, 4096)`, `Linear(4096, 4096)`,
    /// `Linear(4096, classes)` with ReLU and dropout between. For 224×224 images.
    ImageNet,
    /// For small images (28×28, 32×32): pools use `ceil_mode` so five of them reach 1×1,
    /// `AdaptiveAvgPool2d(1×1)`, then a two-Linear classifier (hidden size = the last conv's
    /// width, no dropout) with PyTorch's default Linear initialisation: torchvision's N(0, 0.01)
    /// Linear weights shrink the gradients reaching a narrow network so much that SGD does not
    /// start learning within a CPU budget.
    Small,
}

/// Everything that defines a VGG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VggConfig {
    /// Depth.
    pub depth: VggDepth,
    /// BatchNorm2d after every convolution (`vgg16_bn`).
    pub batch_norm: bool,
    /// Classifier outputs.
    pub num_classes: usize,
    /// Image shape `[channels, height, width]`.
    pub input_shape: [usize; 3],
    /// Multiplier on every convolution's channels (1.0 = the paper's widths).
    pub width: f64,
    /// Classifier head.
    pub head: VggHead,
}

const M: usize = 0; // max-pool marker in the channel plans

impl VggDepth {
    fn plan(self) -> &'static [usize] {
        match self {
            VggDepth::Vgg11 => &[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
            VggDepth::Vgg13 => &[
                64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M,
            ],
            VggDepth::Vgg16 => &[
                64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M,
            ],
            VggDepth::Vgg19 => &[
                64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512,
                512, 512, M,
            ],
        }
    }

    fn number(self) -> usize {
        match self {
            VggDepth::Vgg11 => 11,
            VggDepth::Vgg13 => 13,
            VggDepth::Vgg16 => 16,
            VggDepth::Vgg19 => 19,
        }
    }
}

impl VggConfig {
    /// torchvision's `vggNN[_bn](num_classes)` for 3×224×224 images.
    pub fn new(depth: VggDepth, batch_norm: bool, num_classes: usize) -> Self {
        VggConfig {
            depth,
            batch_norm,
            num_classes,
            input_shape: [3, 224, 224],
            width: 1.0,
            head: VggHead::ImageNet,
        }
    }

    /// The small-image variant (see [`VggHead::Small`]) for `input_shape`, e.g. `[3, 32, 32]`.
    pub fn small(
        depth: VggDepth,
        batch_norm: bool,
        num_classes: usize,
        input_shape: [usize; 3],
    ) -> Self {
        VggConfig {
            depth,
            batch_norm,
            num_classes,
            input_shape,
            width: 1.0,
            head: VggHead::Small,
        }
    }

    /// Sets the channel multiplier.
    pub fn with_width(mut self, width: f64) -> Self {
        self.width = width;
        self
    }

    /// Sets the input shape.
    pub fn with_input_shape(mut self, input_shape: [usize; 3]) -> Self {
        self.input_shape = input_shape;
        self
    }

    /// Name in torchvision's style, with this crate's suffixes: `vgg16_bn`, `vgg11_small`,
    /// `vgg16_bn_small_w0.25`.
    pub fn name(&self) -> String {
        let mut name = format!("vgg{}", self.depth.number());
        if self.batch_norm {
            name += "_bn";
        }
        if self.head == VggHead::Small {
            name += "_small";
        }
        if self.width != 1.0 {
            name += &format!("_w{}", self.width);
        }
        name
    }

    fn channels(&self, c: usize) -> usize {
        ((c as f64 * self.width).round() as usize).max(1)
    }

    /// The architecture, without weights.
    pub fn spec(&self) -> Result<GraphSpec, ModelsError> {
        if !(self.width.is_finite() && self.width > 0.0 && self.width <= 16.0) {
            return Err(ModelsError::InvalidConfig(format!(
                "width {} must be in (0, 16]",
                self.width
            )));
        }
        if self.num_classes == 0 {
            return Err(ModelsError::InvalidConfig(
                "num_classes must be at least 1".into(),
            ));
        }
        let ceil_mode = self.head == VggHead::Small;
        let mut features = Vec::new();
        let mut in_channels = self.input_shape[0];
        for &c in self.depth.plan() {
            if c == M {
                features.push(LayerSpec::max_pool2(ceil_mode));
                continue;
            }
            let out_channels = self.channels(c);
            features.push(LayerSpec::conv3x3(in_channels, out_channels));
            if self.batch_norm {
                features.push(LayerSpec::batch_norm(out_channels));
            }
            features.push(LayerSpec::relu());
            in_channels = out_channels;
        }
        let (pool, hidden) = match self.head {
            VggHead::ImageNet => (7, 4096),
            VggHead::Small => (1, in_channels),
        };
        let linear = LayerSpec::linear;
        let classifier = match self.head {
            VggHead::ImageNet => vec![
                linear(in_channels * pool * pool, hidden),
                LayerSpec::relu(),
                LayerSpec::dropout(0.5),
                linear(hidden, hidden),
                LayerSpec::relu(),
                LayerSpec::dropout(0.5),
                linear(hidden, self.num_classes),
            ],
            VggHead::Small => vec![
                linear(in_channels, hidden),
                LayerSpec::relu(),
                linear(hidden, self.num_classes),
            ],
        };
        let mut g = GraphBuilder::new();
        g.chain("features", features);
        g.then(
            "avgpool",
            LayerSpec::AdaptiveAvgPool2d(AdaptiveAvgPool2dSpec {
                output_size: [pool, pool],
            }),
        );
        g.then("flatten", LayerSpec::flatten());
        g.chain("classifier", classifier);
        Ok(g.build())
    }

    /// Builds the model with torchvision's VGG initialisation on `device`.
    pub fn init(&self, device: &Device) -> Result<Model, ModelsError> {
        let spec = self.spec()?;
        let mut net = Graph::from_spec(&spec, InitScheme::Vgg, device);
        if self.head == VggHead::Small {
            for node in net
                .nodes
                .iter_mut()
                .filter(|n| n.name.starts_with("classifier."))
            {
                node.layer =
                    Layer::from_spec(&node.layer.spec(), InitScheme::PyTorchDefault, device);
            }
        }
        Ok(Model::new(self.name(), self.input_shape.to_vec(), net)?)
    }
}

/// Parses `vgg11`, `vgg13_bn`, `vgg16_bn_small`, … into depth, batch norm and head.
impl FromStr for VggConfig {
    type Err = ModelsError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let unknown = || ModelsError::UnknownModel(name.to_string());
        let rest = name.strip_prefix("vgg").ok_or_else(unknown)?;
        let (digits, mut suffix) = rest.split_at(rest.find('_').unwrap_or(rest.len()));
        let depth = match digits {
            "11" => VggDepth::Vgg11,
            "13" => VggDepth::Vgg13,
            "16" => VggDepth::Vgg16,
            "19" => VggDepth::Vgg19,
            _ => return Err(unknown()),
        };
        let batch_norm = match suffix.strip_prefix("_bn") {
            Some(s) => {
                suffix = s;
                true
            }
            None => false,
        };
        let config = match suffix {
            "" => VggConfig::new(depth, batch_norm, 1000),
            "_small" => VggConfig::small(depth, batch_norm, 10, [3, 32, 32]),
            _ => return Err(unknown()),
        };
        Ok(config)
    }
}

impl fmt::Display for VggConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}
