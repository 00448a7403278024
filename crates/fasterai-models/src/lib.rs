//! # fasterai-models
//!
//! Reference models on the [`fasterai_core`] graph, laid out exactly as torchvision lays them
//! out, so a torchvision state dict maps onto them key for key and parameter counts agree.
//!
//! | name | layout |
//! |---|---|
//! | `vgg11`, `vgg13`, `vgg16`, `vgg19` (+ `_bn`) | torchvision's VGG for 224×224 images |
//! | `vgg16_bn_small`, … | the same features with `ceil_mode` pools and a 1×1 head, for 28×28 or 32×32 images |
//!
//! ```no_run
//! use fasterai_models::{VggConfig, VggDepth};
//! let device = fasterai_core::device::parse_device("flex").unwrap();
//! let model = VggConfig::new(VggDepth::Vgg16, true, 10).init(&device).unwrap();
//! assert_eq!(model.num_params(), 134_309_962);
//! ```
#![doc(test(attr(deny(warnings))))]

mod vgg;

pub use vgg::{VggConfig, VggDepth, VggHead};

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
    /// The resulting graph is inconsistent (e.g. the input is too small for five poolings).
    #[error(transparent)]
    Core(#[from] fasterai_core::CoreError),
}

/// Human-readable list of the built-in model names.
pub const BUILTIN_HELP: &str = "vgg11, vgg13, vgg16, vgg19, each with optional `_bn` (batch norm) \
     and `_small` (head for 28×28/32×32 images) suffixes, e.g. vgg16_bn, vgg16_bn_small";

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
            assert_eq!(
                config.spec().unwrap().total_params(),
                expected,
                "{config} spec"
            );
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
        let paths: Vec<(&str, &str)> = leaves.iter().map(|(p, l)| (p.as_str(), l.kind())).collect();
        assert_eq!(paths[0], ("features.0", "Conv2d"));
        assert_eq!(paths[1], ("features.1", "BatchNorm2d"));
        assert_eq!(paths[6], ("features.6", "MaxPool2d"));
        assert_eq!(paths[43], ("features.43", "MaxPool2d"));
        assert_eq!(paths[44], ("avgpool", "AdaptiveAvgPool2d"));
        assert_eq!(paths[46], ("classifier.0", "Linear"));
        assert_eq!(paths[52], ("classifier.6", "Linear"));
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
