//! # fasterai-models
//!
//! Reference models on the [`fasterai_core`] graph, laid out exactly as torchvision lays them
//! out, so a torchvision state dict maps onto them key for key and parameter counts agree.
//!
//! | name | layout |
//! |---|---|
//! | `vgg11`, `vgg13`, `vgg16`, `vgg19` (+ `_bn`) | torchvision's VGG for 224×224 images |
//! | `vgg16_bn_small`, … | the same features with `ceil_mode` pools and a 1×1 head, for 28×28 or 32×32 images |
//! | `resnet18`, `resnet34`, `resnet50` | torchvision's ResNets (basic / bottleneck blocks, projection shortcuts) |
//! | `resnet20`, `resnet56` | CIFAR ResNets of He et al. (2016), 16/32/64 channels, 1×1 projection shortcuts |
//! | `mobilenet_v2`, `mobilenet_v3_small`, `mobilenet_v3_large`, `efficientnet_b0` | torchvision's, with depthwise convolutions and squeeze-excitation gates |
//! | `vit_b_16`, `vit_b_32` | torchvision's vision transformers (patch embedding, class token, position embedding, 12 encoder blocks) |
//! | `vit_cifar` | a ViT-Tiny for 32×32 images: patch 4, width 192, 6 blocks of 3 heads, MLP 384, stochastic depth |
//!
//! ```no_run
//! use fasterai_models::{VggConfig, VggDepth};
//! let device = fasterai_core::device::parse_device("flex").unwrap();
//! let model = VggConfig::new(VggDepth::Vgg16, true, 10).init(&device).unwrap();
//! assert_eq!(model.num_params(), 134_309_962);
//! ```
#![doc(test(attr(deny(warnings))))]

mod blocks;
pub mod decoder;
pub mod generate;
pub mod hf;
mod mobilenet;
mod resnet;
pub mod tokenizer;
mod vgg;
mod vit;

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
pub use decoder::{DecoderConfig, DecoderFamily};
use fasterai_core::graph::{Graph, GraphSpec, InitScheme, Layer};
use fasterai_core::model::Model;
pub use vgg::{VggConfig, VggDepth, VggHead};
pub use vit::VitConfig;

/// Errors from building a reference model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelsError {
    /// The name is not one of the built-in architectures.
    #[error("unknown model `{0}`; built-in models: {BUILTIN_HELP}")]
    UnknownModel(String),
    /// A configuration value is out of range.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// A Hugging Face checkpoint folder is incomplete or does not match its `config.json`.
    #[error("{dir}: {reason}")]
    Checkpoint {
        /// The folder.
        dir: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The resulting graph is inconsistent (e.g. the input is too small for five poolings).
    #[error(transparent)]
    Core(#[from] fasterai_core::CoreError),
}

/// Human-readable list of the built-in model names.
pub const BUILTIN_HELP: &str = "vgg11, vgg13, vgg16, vgg19 (each with optional `_bn` and \
     `_small` suffixes, e.g. vgg16_bn, vgg16_bn_small), resnet18, resnet34, resnet50, \
     resnet20, resnet56 (CIFAR), mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, \
     efficientnet_b0, vit_b_16, vit_b_32, vit_cifar (32×32)";

/// A family with branches (residual additions, depthwise convolutions, gates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// torchvision `resnet18`.
    ResNet18,
    /// torchvision `resnet34`.
    ResNet34,
    /// torchvision `resnet50`.
    ResNet50,
    /// CIFAR ResNet-20 (3 stages × 3 basic blocks, 16/32/64 channels).
    ResNet20,
    /// CIFAR ResNet-56 (3 stages × 9 basic blocks).
    ResNet56,
    /// torchvision `mobilenet_v2`.
    MobileNetV2,
    /// torchvision `mobilenet_v3_small`.
    MobileNetV3Small,
    /// torchvision `mobilenet_v3_large`.
    MobileNetV3Large,
    /// torchvision `efficientnet_b0`.
    EfficientNetB0,
    /// torchvision `vit_b_16`.
    ViTB16,
    /// torchvision `vit_b_32`.
    ViTB32,
    /// A ViT-Tiny for 32×32 images (CIFAR).
    ViTCifar,
}

impl Family {
    const ALL: [(&'static str, Family); 12] = [
        ("resnet18", Family::ResNet18),
        ("resnet34", Family::ResNet34),
        ("resnet50", Family::ResNet50),
        ("resnet20", Family::ResNet20),
        ("resnet56", Family::ResNet56),
        ("mobilenet_v2", Family::MobileNetV2),
        ("mobilenet_v3_small", Family::MobileNetV3Small),
        ("mobilenet_v3_large", Family::MobileNetV3Large),
        ("efficientnet_b0", Family::EfficientNetB0),
        ("vit_b_16", Family::ViTB16),
        ("vit_b_32", Family::ViTB32),
        ("vit_cifar", Family::ViTCifar),
    ];

    /// torchvision's name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .expect("listed")
            .0
    }

    fn is_cifar(self) -> bool {
        matches!(self, Family::ResNet20 | Family::ResNet56 | Family::ViTCifar)
    }

    fn is_transformer(self) -> bool {
        matches!(self, Family::ViTB16 | Family::ViTB32 | Family::ViTCifar)
    }
}

/// A built-in model: any family, its classes and input shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Builtin {
    /// VGG (sequential).
    Vgg(VggConfig),
    /// A family with branches.
    Net {
        /// Which.
        family: Family,
        /// Classifier outputs.
        num_classes: usize,
        /// Image shape `[channels, height, width]`.
        input_shape: [usize; 3],
        /// Channel multiplier (MobileNetV2 only).
        width: f64,
    },
}

impl Builtin {
    /// `family` with `num_classes` outputs at its usual input (224², or 32² for CIFAR ResNets).
    pub fn net(family: Family, num_classes: usize) -> Self {
        let side = if family.is_cifar() { 32 } else { 224 };
        Builtin::Net {
            family,
            num_classes,
            input_shape: [3, side, side],
            width: 1.0,
        }
    }

    /// Sets the classifier outputs.
    pub fn with_num_classes(mut self, n: usize) -> Self {
        match &mut self {
            Builtin::Vgg(c) => c.num_classes = n,
            Builtin::Net { num_classes, .. } => *num_classes = n,
        }
        self
    }

    /// Sets the input shape.
    pub fn with_input_shape(mut self, shape: [usize; 3]) -> Self {
        match &mut self {
            Builtin::Vgg(c) => c.input_shape = shape,
            Builtin::Net { input_shape, .. } => *input_shape = shape,
        }
        self
    }

    /// Sets the channel multiplier (VGG and MobileNetV2).
    pub fn with_width(mut self, w: f64) -> Result<Self, ModelsError> {
        match &mut self {
            Builtin::Vgg(c) => c.width = w,
            Builtin::Net {
                family: Family::MobileNetV2,
                width,
                ..
            } => *width = w,
            Builtin::Net { family, .. } => {
                return Err(ModelsError::InvalidConfig(format!(
                    "a width multiplier applies to VGG and mobilenet_v2, not to {}",
                    family.name()
                )));
            }
        }
        Ok(self)
    }

    /// The input shape.
    pub fn input_shape(&self) -> [usize; 3] {
        match self {
            Builtin::Vgg(c) => c.input_shape,
            Builtin::Net { input_shape, .. } => *input_shape,
        }
    }

    /// The model's name (`resnet18`, `vgg16_bn_small_w0.25`).
    pub fn name(&self) -> String {
        match self {
            Builtin::Vgg(c) => c.name(),
            Builtin::Net { family, width, .. } if *width != 1.0 => {
                format!("{}_w{width}", family.name())
            }
            Builtin::Net { family, .. } => family.name().to_string(),
        }
    }

    /// The architecture, without weights.
    pub fn spec(&self) -> Result<GraphSpec, ModelsError> {
        let Builtin::Net {
            family,
            num_classes,
            input_shape,
            width,
        } = self
        else {
            let Builtin::Vgg(c) = self else {
                unreachable!()
            };
            return c.spec();
        };
        if *num_classes == 0 {
            return Err(ModelsError::InvalidConfig(
                "num_classes must be at least 1".into(),
            ));
        }
        if !(width.is_finite() && *width > 0.0 && *width <= 16.0) {
            return Err(ModelsError::InvalidConfig(format!(
                "width {width} must be in (0, 16]"
            )));
        }
        let (c, n) = (input_shape[0], *num_classes);
        use resnet::Block::{Basic, Bottleneck};
        Ok(match family {
            Family::ResNet18 => resnet::imagenet(Basic, [2, 2, 2, 2], c, n),
            Family::ResNet34 => resnet::imagenet(Basic, [3, 4, 6, 3], c, n),
            Family::ResNet50 => resnet::imagenet(Bottleneck, [3, 4, 6, 3], c, n),
            Family::ResNet20 => resnet::cifar(3, c, n),
            Family::ResNet56 => resnet::cifar(9, c, n),
            Family::MobileNetV2 => mobilenet::v2(*width, c, n),
            Family::MobileNetV3Small => mobilenet::v3(false, c, n),
            Family::MobileNetV3Large => mobilenet::v3(true, c, n),
            Family::EfficientNetB0 => mobilenet::efficientnet_b0(c, n),
            Family::ViTB16 => VitConfig::B_16.spec(*input_shape, n)?,
            Family::ViTB32 => VitConfig::B_32.spec(*input_shape, n)?,
            Family::ViTCifar => VitConfig::CIFAR.spec(*input_shape, n)?,
        })
    }

    /// Builds the model with fresh weights (torchvision's initialisation schemes) on `device`.
    pub fn init(&self, device: &Device) -> Result<Model, ModelsError> {
        if let Builtin::Vgg(c) = self {
            return c.init(device);
        }
        let spec = self.spec()?;
        spec.check(&self.input_shape())?;
        let Builtin::Net { family, .. } = self else {
            unreachable!("VGG returned above")
        };
        let scheme = if family.is_transformer() {
            InitScheme::Transformer
        } else {
            InitScheme::KaimingFanOut
        };
        let mut net = Graph::from_spec(&spec, scheme, device);
        // torchvision's ResNets keep PyTorch's default Linear initialisation; its ViTs start
        // their head at zero.
        if let Some(fc) = net.get_mut("fc") {
            *fc = Layer::from_spec(&fc.spec(), InitScheme::PyTorchDefault, device);
        }
        if let Some(head) = net.get_mut("heads.head") {
            *head = Layer::from_spec(&head.spec(), InitScheme::Zeros, device);
        }
        Ok(Model::new(self.name(), self.input_shape().to_vec(), net)?)
    }
}

/// Parses any built-in name (see [`BUILTIN_HELP`]); ImageNet models get 1000 classes, `_small`
/// VGGs and CIFAR ResNets 10.
impl FromStr for Builtin {
    type Err = ModelsError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if let Some((_, family)) = Family::ALL.iter().find(|(n, _)| *n == name) {
            let classes = if family.is_cifar() { 10 } else { 1000 };
            return Ok(Builtin::net(*family, classes));
        }
        Ok(Builtin::Vgg(name.parse()?))
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fasterai_core::summary::count_parameters;

    fn device() -> burn::tensor::Device {
        fasterai_core::device::parse_device("flex").unwrap()
    }

    /// Parameter counts of torchvision 0.24 (`sum(p.numel() for p in m.parameters())`).
    #[test]
    fn parameter_counts_match_torchvision() {
        let cases = [
            (VggDepth::Vgg16, true, 1000, 138_365_992),
            (VggDepth::Vgg16, true, 10, 134_309_962),
            (VggDepth::Vgg16, true, 2, 134_277_186),
            (VggDepth::Vgg16, false, 1000, 138_357_544),
            (VggDepth::Vgg19, true, 1000, 143_678_248),
            (VggDepth::Vgg11, false, 10, 128_807_306),
        ];
        for (depth, bn, classes, expected) in cases {
            let config = VggConfig::new(depth, bn, classes);
            // From the architecture alone …
            assert_eq!(config.spec().unwrap().params(), expected, "{config} spec");
            // … and from the live tensors (cheap: Burn initialises parameters lazily).
            let model = config.init(&device()).unwrap();
            assert_eq!(count_parameters(&model.net), expected, "{config} tensors");
        }
    }

    #[test]
    fn paths_follow_torchvision() {
        let model = VggConfig::new(VggDepth::Vgg16, true, 10)
            .init(&device())
            .unwrap();
        let leaves = model.net.leaves();
        assert_eq!(leaves.len(), 53);
        let paths: Vec<(&str, &str)> = leaves.iter().map(|(p, l)| (p.as_str(), l.kind())).collect();
        assert_eq!(paths[0], ("features.0", "Conv2d"));
        assert_eq!(paths[1], ("features.1", "BatchNorm2d"));
        assert_eq!(paths[6], ("features.6", "MaxPool2d"));
        assert_eq!(paths[43], ("features.43", "MaxPool2d"));
        assert_eq!(paths[44], ("avgpool", "AdaptiveAvgPool2d"));
        assert_eq!(paths[46], ("classifier.0", "Linear"));
        assert_eq!(paths[52], ("classifier.6", "Linear"));
    }

    /// torchvision 0.24's counts (`sum(p.numel() for p in m.parameters())`).
    #[test]
    fn branched_families_match_torchvision_counts() {
        let cases = [
            ("resnet18", 1000, 11_689_512),
            ("resnet34", 1000, 21_797_672),
            ("resnet50", 1000, 25_557_032),
            ("mobilenet_v2", 1000, 3_504_872),
            ("mobilenet_v3_small", 1000, 2_542_856),
            ("mobilenet_v3_large", 1000, 5_483_032),
            ("efficientnet_b0", 1000, 5_288_548),
            ("resnet18", 10, 11_181_642),
            ("mobilenet_v2", 10, 2_236_682),
        ];
        for (name, classes, expected) in cases {
            let b: Builtin = name.parse().unwrap();
            let b = b.with_num_classes(classes);
            let spec = b.spec().unwrap();
            assert_eq!(spec.params(), expected, "{name} spec");
            let shapes = spec.check(&b.input_shape()).unwrap();
            assert_eq!(shapes.outputs.last().unwrap(), &vec![classes], "{name}");
            let model = b.init(&device()).unwrap();
            assert_eq!(count_parameters(&model.net), expected, "{name} tensors");
        }
        // The CIFAR ResNets: 3 stages of 16/32/64 channels for 32×32 images.
        for (name, blocks) in [("resnet20", 9), ("resnet56", 27)] {
            let b: Builtin = name.parse().unwrap();
            let spec = b.spec().unwrap();
            let adds = spec.nodes.iter().filter(|n| n.op.kind() == "Add").count();
            assert_eq!(adds, blocks, "{name}");
            assert_eq!(
                spec.check(&[3, 32, 32]).unwrap().outputs.last().unwrap(),
                &vec![10]
            );
        }
        // Names follow torchvision's state-dict keys.
        let spec = Builtin::net(Family::ResNet50, 10).spec().unwrap();
        assert!(spec.nodes.iter().any(|n| n.name == "layer1.0.downsample.0"));
        let spec = Builtin::net(Family::MobileNetV2, 10).spec().unwrap();
        assert!(spec.nodes.iter().any(|n| n.name == "features.3.conv.1.0"));
        let spec = Builtin::net(Family::MobileNetV3Small, 10).spec().unwrap();
        assert!(
            spec.nodes
                .iter()
                .any(|n| n.name == "features.1.block.1.fc1")
        );
        assert!(Builtin::net(Family::ResNet18, 10).with_width(0.5).is_err());
    }

    #[test]
    fn names_parse() {
        let c: VggConfig = "vgg16_bn".parse().unwrap();
        assert_eq!(
            (c.depth, c.batch_norm, c.head),
            (VggDepth::Vgg16, true, VggHead::ImageNet)
        );
        let c: VggConfig = "vgg11_small".parse().unwrap();
        assert_eq!(
            (c.depth, c.batch_norm, c.head),
            (VggDepth::Vgg11, false, VggHead::Small)
        );
        for bad in ["vgg15", "resnet18", "vgg16_bnx", "vgg"] {
            assert!(
                matches!(bad.parse::<VggConfig>(), Err(ModelsError::UnknownModel(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn small_variant_fits_small_images() {
        for shape in [[3, 32, 32], [1, 28, 28]] {
            let config = VggConfig::small(VggDepth::Vgg16, true, 10, shape).with_width(0.25);
            let model = config.init(&device()).unwrap();
            assert_eq!(model.net.output_shape(&shape).unwrap(), vec![10]);
        }
        // The 224×224 layout rejects nothing it can run, but width must be positive.
        let err = VggConfig::new(VggDepth::Vgg11, false, 10)
            .with_width(0.0)
            .spec()
            .unwrap_err();
        assert!(err.to_string().contains("width"), "{err}");
    }
}
