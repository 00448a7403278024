//! Serialisable description of a layer: what a saved model file stores as its architecture.
//!
//! A [`LayerSpec`] knows the layer's hyper-parameters but no weights. It can check an input
//! shape, compute the output shape and the multiply-accumulates, and build a freshly initialised
//! [`Layer`](super::Layer).

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// One layer of a model, by type, with its hyper-parameters (PyTorch names and meanings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
#[allow(missing_docs)] // fields carry PyTorch's names and meanings
pub enum LayerSpec {
    /// `torch.nn.Conv2d` with symmetric zero padding.
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel_size: [usize; 2],
        #[serde(default = "one2")]
        stride: [usize; 2],
        #[serde(default)]
        padding: [usize; 2],
        #[serde(default = "one2")]
        dilation: [usize; 2],
        #[serde(default = "one")]
        groups: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// `torch.nn.BatchNorm2d` (affine, tracking running statistics).
    BatchNorm2d {
        num_features: usize,
        #[serde(default = "bn_eps")]
        eps: f64,
        #[serde(default = "bn_momentum")]
        momentum: f64,
    },
    /// `torch.nn.Linear`.
    Linear {
        in_features: usize,
        out_features: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// `torch.nn.ReLU`.
    ReLU,
    /// `torch.nn.MaxPool2d`.
    MaxPool2d {
        kernel_size: [usize; 2],
        stride: [usize; 2],
        #[serde(default)]
        padding: [usize; 2],
        #[serde(default = "one2")]
        dilation: [usize; 2],
        #[serde(default)]
        ceil_mode: bool,
    },
    /// `torch.nn.AdaptiveAvgPool2d`.
    AdaptiveAvgPool2d { output_size: [usize; 2] },
    /// `torch.nn.Dropout`.
    Dropout { p: f64 },
    /// `torch.flatten(x, 1)`: `[N, C, H, W]` to `[N, C·H·W]`.
    Flatten,
    /// `torch.nn.Sequential` with named children (`"0"`, `"1"`, … or any names).
    Sequential { children: Vec<NamedSpec> },
}

/// A child of a [`LayerSpec::Sequential`]: its name (one path segment) and its spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedSpec {
    /// Path segment, e.g. `"features"` or `"3"`.
    pub name: String,
    /// The child's specification.
    pub layer: LayerSpec,
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
fn bn_eps() -> f64 {
    1e-5
}
fn bn_momentum() -> f64 {
    0.1
}

/// Output size of a sliding window along one axis, as PyTorch computes it.
fn window_out(
    size: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil: bool,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = size + 2 * pad;
    if padded < span {
        return None;
    }
    let steps = padded - span;
    let mut out = if ceil {
        steps.div_ceil(stride)
    } else {
        steps / stride
    } + 1;
    // PyTorch drops a last window that would start inside the right padding.
    if ceil && (out - 1) * stride >= size + pad {
        out -= 1;
    }
    Some(out)
}

impl LayerSpec {
    /// `Conv2d(in, out, kernel_size=3, padding=1)` with bias: VGG's convolution.
    pub fn conv3x3(in_channels: usize, out_channels: usize) -> Self {
        LayerSpec::Conv2d {
            in_channels,
            out_channels,
            kernel_size: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }
    }

    /// `BatchNorm2d(num_features)` with PyTorch's defaults (ε = 1e-5, momentum 0.1).
    pub fn batch_norm(num_features: usize) -> Self {
        LayerSpec::BatchNorm2d {
            num_features,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// `MaxPool2d(kernel_size=2, stride=2)`, optionally with `ceil_mode`.
    pub fn max_pool2(ceil_mode: bool) -> Self {
        LayerSpec::MaxPool2d {
            kernel_size: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode,
        }
    }

    /// Short type name, as PyTorch prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv2d { .. } => "Conv2d",
            LayerSpec::BatchNorm2d { .. } => "BatchNorm2d",
            LayerSpec::Linear { .. } => "Linear",
            LayerSpec::ReLU => "ReLU",
            LayerSpec::MaxPool2d { .. } => "MaxPool2d",
            LayerSpec::AdaptiveAvgPool2d { .. } => "AdaptiveAvgPool2d",
            LayerSpec::Dropout { .. } => "Dropout",
            LayerSpec::Flatten => "Flatten",
            LayerSpec::Sequential { .. } => "Sequential",
        }
    }

    /// Checks the hyper-parameters themselves (before any input is seen).
    pub fn validate(&self, path: &str) -> Result<()> {
        let bad = |reason: String| {
            Err(CoreError::InvalidLayer {
                path: path.to_string(),
                reason,
            })
        };
        match self {
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                dilation,
                groups,
                ..
            } => {
                if *in_channels == 0 || *out_channels == 0 {
                    return bad(format!(
                        "channels must be positive, got {in_channels}→{out_channels}"
                    ));
                }
                if kernel_size.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
                    return bad("kernel_size, stride and dilation must be positive".into());
                }
                if *groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
                    return bad(format!(
                        "groups = {groups} must divide in_channels = {in_channels} and out_channels = {out_channels}"
                    ));
                }
            }
            LayerSpec::BatchNorm2d {
                num_features,
                eps,
                momentum,
            } => {
                if *num_features == 0 {
                    return bad("num_features must be positive".into());
                }
                if !(eps.is_finite() && *eps > 0.0 && (0.0..=1.0).contains(momentum)) {
                    return bad(format!(
                        "eps = {eps} must be > 0 and momentum = {momentum} in [0, 1]"
                    ));
                }
            }
            LayerSpec::Linear {
                in_features,
                out_features,
                ..
            } => {
                if *in_features == 0 || *out_features == 0 {
                    return bad(format!(
                        "features must be positive, got {in_features}→{out_features}"
                    ));
                }
            }
            LayerSpec::MaxPool2d {
                kernel_size,
                stride,
                dilation,
                padding,
                ..
            } => {
                if kernel_size.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
                    return bad("kernel_size, stride and dilation must be positive".into());
                }
                if padding[0] * 2 > kernel_size[0] || padding[1] * 2 > kernel_size[1] {
                    return bad("padding must be at most half the kernel size".into());
                }
            }
            LayerSpec::AdaptiveAvgPool2d { output_size } => {
                if output_size.contains(&0) {
                    return bad("output_size must be positive".into());
                }
            }
            LayerSpec::Dropout { p } => {
                if !(0.0..1.0).contains(p) {
                    return bad(format!("dropout probability {p} must be in [0, 1)"));
                }
            }
            LayerSpec::ReLU | LayerSpec::Flatten => {}
            LayerSpec::Sequential { children } => {
                let mut seen = std::collections::HashSet::new();
                for child in children {
                    if child.name.is_empty() || child.name.contains('.') {
                        return bad(format!(
                            "child name `{}` must be non-empty and contain no `.`",
                            child.name
                        ));
                    }
                    if !seen.insert(child.name.as_str()) {
                        return bad(format!("two children are named `{}`", child.name));
                    }
                    child.layer.validate(&join(path, &child.name))?;
                }
            }
        }
        Ok(())
    }

    /// Output shape (without the batch dimension) for an input of shape `input`, and the
    /// multiply-accumulates one sample costs in this layer alone (containers: 0).
    ///
    /// MACs: convolutions and linear layers count their products exactly; a batch norm counts
    /// one per output element (it is one fused multiply-add at inference); activations, pooling
    /// and reshapes count none.
    pub fn output_shape(&self, path: &str, input: &[usize]) -> Result<(Vec<usize>, u64)> {
        let mismatch = |reason: String| {
            Err(CoreError::ShapeMismatch {
                path: path.to_string(),
                kind: self.kind(),
                got: input.to_vec(),
                reason,
            })
        };
        let spatial = |input: &[usize]| -> Option<[usize; 3]> { input.try_into().ok() };
        match self {
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => {
                let Some([c, h, w]) = spatial(input) else {
                    return mismatch("expected [channels, height, width]".into());
                };
                if c != *in_channels {
                    return mismatch(format!("expected {in_channels} input channels"));
                }
                let oh = window_out(h, kernel_size[0], stride[0], padding[0], dilation[0], false);
                let ow = window_out(w, kernel_size[1], stride[1], padding[1], dilation[1], false);
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    return mismatch("the image is smaller than the kernel".into());
                };
                let per_output = (in_channels / groups * kernel_size[0] * kernel_size[1]) as u64;
                let macs = (*out_channels * oh * ow) as u64 * per_output;
                Ok((vec![*out_channels, oh, ow], macs))
            }
            LayerSpec::BatchNorm2d { num_features, .. } => {
                if spatial(input).map(|s| s[0]) != Some(*num_features) {
                    return mismatch(format!("expected [{num_features}, height, width]"));
                }
                Ok((input.to_vec(), input.iter().product::<usize>() as u64))
            }
            LayerSpec::Linear {
                in_features,
                out_features,
                ..
            } => {
                if input != [*in_features] {
                    return mismatch(format!(
                        "expected [{in_features}] (flatten the image first)"
                    ));
                }
                Ok((vec![*out_features], (*in_features * *out_features) as u64))
            }
            LayerSpec::ReLU | LayerSpec::Dropout { .. } => Ok((input.to_vec(), 0)),
            LayerSpec::MaxPool2d {
                kernel_size,
                stride,
                padding,
                dilation,
                ceil_mode,
            } => {
                let Some([c, h, w]) = spatial(input) else {
                    return mismatch("expected [channels, height, width]".into());
                };
                let oh = window_out(
                    h,
                    kernel_size[0],
                    stride[0],
                    padding[0],
                    dilation[0],
                    *ceil_mode,
                );
                let ow = window_out(
                    w,
                    kernel_size[1],
                    stride[1],
                    padding[1],
                    dilation[1],
                    *ceil_mode,
                );
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    return mismatch("the image is smaller than the pooling window".into());
                };
                Ok((vec![c, oh, ow], 0))
            }
            LayerSpec::AdaptiveAvgPool2d { output_size } => {
                let Some([c, _, _]) = spatial(input) else {
                    return mismatch("expected [channels, height, width]".into());
                };
                Ok((vec![c, output_size[0], output_size[1]], 0))
            }
            LayerSpec::Flatten => {
                if spatial(input).is_none() {
                    return mismatch("expected [channels, height, width]".into());
                }
                Ok((vec![input.iter().product()], 0))
            }
            LayerSpec::Sequential { children } => {
                let mut shape = input.to_vec();
                for child in children {
                    shape = child
                        .layer
                        .output_shape(&join(path, &child.name), &shape)?
                        .0;
                }
                Ok((shape, 0))
            }
        }
    }

    /// Trainable parameters of this layer alone, counted as PyTorch counts them (running
    /// statistics of batch norms excluded; containers: 0).
    pub fn own_params(&self) -> usize {
        match self {
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                groups,
                bias,
                ..
            } => {
                out_channels * (in_channels / groups) * kernel_size[0] * kernel_size[1]
                    + if *bias { *out_channels } else { 0 }
            }
            LayerSpec::BatchNorm2d { num_features, .. } => 2 * num_features,
            LayerSpec::Linear {
                in_features,
                out_features,
                bias,
            } => in_features * out_features + if *bias { *out_features } else { 0 },
            _ => 0,
        }
    }

    /// Trainable parameters of this layer and everything below it.
    pub fn total_params(&self) -> usize {
        match self {
            LayerSpec::Sequential { children } => {
                children.iter().map(|c| c.layer.total_params()).sum()
            }
            other => other.own_params(),
        }
    }
}

/// Joins a parent path and a child name with a dot (`""` + `"features"` = `"features"`).
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_match_pytorch() {
        // conv 3x3 pad 1 keeps size; maxpool 2/2 halves; odd sizes floor, or ceil with ceil_mode.
        assert_eq!(window_out(224, 3, 1, 1, 1, false), Some(224));
        assert_eq!(window_out(7, 2, 2, 0, 1, false), Some(3));
        assert_eq!(window_out(7, 2, 2, 0, 1, true), Some(4));
        assert_eq!(window_out(5, 3, 2, 1, 2, false), Some(2));
        assert_eq!(window_out(2, 3, 1, 0, 1, false), None);
    }

    #[test]
    fn json_round_trip_and_unknown_type_is_an_error() {
        let spec = LayerSpec::Sequential {
            children: vec![
                NamedSpec {
                    name: "0".into(),
                    layer: LayerSpec::Linear {
                        in_features: 4,
                        out_features: 2,
                        bias: false,
                    },
                },
                NamedSpec {
                    name: "1".into(),
                    layer: LayerSpec::ReLU,
                },
            ],
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<LayerSpec>(&json).unwrap(), spec);
        let err = serde_json::from_str::<LayerSpec>(r#"{"type":"Conv3d"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `Conv3d`"),
            "{err}"
        );
    }

    #[test]
    fn shape_errors_name_the_layer() {
        let conv = LayerSpec::conv3x3(3, 8);
        let err = conv.output_shape("features.0", &[1, 28, 28]).unwrap_err();
        assert!(err.to_string().contains("features.0"), "{err}");
        let (out, macs) = conv.output_shape("features.0", &[3, 32, 32]).unwrap();
        assert_eq!(out, vec![8, 32, 32]);
        assert_eq!(macs, 8 * 32 * 32 * 27);
    }
}
