//! Building blocks shared by the model families, named as torchvision names them.

use fasterai_core::graph::ops::batch_norm::BatchNorm2dSpec;
use fasterai_core::graph::ops::conv::Conv2dSpec;
use fasterai_core::graph::ops::merge::{Add, Mul};
use fasterai_core::graph::{GraphBuilder, LayerSpec};

/// torchvision's `Conv2dNormActivation`: `{p}.0` conv (no bias, `padding = k / 2`), `{p}.1`
/// batch norm, `{p}.2` activation if any. Returns the last node.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_bn_act(
    g: &mut GraphBuilder,
    p: &str,
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    bn: &BatchNorm2dSpec,
    act: Option<LayerSpec>,
) -> String {
    let conv = Conv2dSpec::new(cin, cout, kernel, stride).with_groups(groups);
    g.then(format!("{p}.0"), LayerSpec::Conv2d(conv));
    let mut last = g.then(
        format!("{p}.1"),
        LayerSpec::BatchNorm2d(BatchNorm2dSpec {
            num_features: cout,
            ..bn.clone()
        }),
    );
    if let Some(act) = act {
        last = g.then(format!("{p}.2"), act);
    }
    last
}

/// torchvision's `SqueezeExcitation` at `{p}` on the current value (`channels` wide):
/// global pooling, `fc1` (1×1 conv with bias) → `activation` → `fc2` → `scale_activation`,
/// then `{p}.mul` gates the input. Returns the gated node.
pub(crate) fn squeeze_excitation(
    g: &mut GraphBuilder,
    p: &str,
    channels: usize,
    squeeze: usize,
    activation: LayerSpec,
    scale_activation: LayerSpec,
) -> String {
    let input = g.cursor().to_string();
    let conv1x1 = |i, o| LayerSpec::Conv2d(Conv2dSpec::new(i, o, 1, 1).with_bias(true));
    g.then(format!("{p}.avgpool"), LayerSpec::global_avg_pool());
    g.then(format!("{p}.fc1"), conv1x1(channels, squeeze));
    g.then(format!("{p}.activation"), activation);
    g.then(format!("{p}.fc2"), conv1x1(squeeze, channels));
    let scale = g.then(format!("{p}.scale_activation"), scale_activation);
    g.node(
        format!("{p}.mul"),
        LayerSpec::Mul(Mul {}),
        &[&scale, &input],
    )
}

/// `{p}.add` = the current value + `shortcut`. Returns it.
pub(crate) fn residual(g: &mut GraphBuilder, p: &str, shortcut: &str) -> String {
    let main = g.cursor().to_string();
    g.node(
        format!("{p}.add"),
        LayerSpec::Add(Add {}),
        &[&main, shortcut],
    )
}

/// torchvision's `_make_divisible`: rounds to a multiple of `divisor`, never below 90 %.
pub(crate) fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (divisor).max(((v + d / 2.0) / d) as usize * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// The squeeze-excitation of an inverted residual: squeezed width, inner and gate activations.
pub(crate) type Gate = (usize, LayerSpec, LayerSpec);

/// An inverted residual (MBConv) as torchvision's MobileNetV3 and EfficientNet name it,
/// `{p}.block.N`: a 1×1 expansion (when `expanded ≠ cin`), the k×k depthwise conv, the gate if
/// any, the 1×1 projection without activation, and the residual sum when shapes allow.
#[allow(clippy::too_many_arguments)] // the block's hyper-parameters, as torchvision lists them
pub(crate) fn inverted_residual(
    g: &mut GraphBuilder,
    p: &str,
    [cin, expanded, cout]: [usize; 3],
    kernel: usize,
    stride: usize,
    act: &LayerSpec,
    gate: Option<Gate>,
    bn: &BatchNorm2dSpec,
) {
    let input = g.cursor().to_string();
    let mut j = 0;
    let block = |j: usize| format!("{p}.block.{j}");
    if expanded != cin {
        conv_bn_act(g, &block(0), cin, expanded, 1, 1, 1, bn, Some(act.clone()));
        j = 1;
    }
    let depthwise = Some(act.clone());
    conv_bn_act(
        g,
        &block(j),
        expanded,
        expanded,
        kernel,
        stride,
        expanded,
        bn,
        depthwise,
    );
    if let Some((squeeze, inner, scale)) = gate {
        j += 1;
        squeeze_excitation(g, &block(j), expanded, squeeze, inner, scale);
    }
    conv_bn_act(g, &block(j + 1), expanded, cout, 1, 1, 1, bn, None);
    if stride == 1 && cin == cout {
        residual(g, p, &input);
    }
}
