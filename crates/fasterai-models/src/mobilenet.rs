//! MobileNetV2 (Sandler et al., 2018), MobileNetV3 small/large (Howard et al., 2019) and
//! EfficientNet-B0 (Tan & Le, 2019): inverted residuals with depthwise convolutions, and
//! squeeze-and-excitation gates in V3 and EfficientNet. torchvision's layouts and names.

use fasterai_core::graph::ops::activation::{Hardsigmoid, Hardswish, ReLU6, SiLU, Sigmoid};
use fasterai_core::graph::ops::batch_norm::BatchNorm2dSpec;
use fasterai_core::graph::{GraphBuilder, GraphSpec, LayerSpec};

use crate::blocks::{conv_bn_act, inverted_residual, make_divisible, residual};

fn classifier_tail(g: &mut GraphBuilder, layers: Vec<LayerSpec>) {
    g.then("avgpool", LayerSpec::global_avg_pool());
    g.then("flatten", LayerSpec::flatten());
    g.chain("classifier", layers);
}

/// torchvision's `mobilenet_v2(width_mult)`.
pub(crate) fn v2(width: f64, in_channels: usize, classes: usize) -> GraphSpec {
    let bn = BatchNorm2dSpec::new(1);
    let relu6 = || Some(LayerSpec::ReLU6(ReLU6 {}));
    let settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut g = GraphBuilder::new();
    let mut cin = make_divisible(32.0 * width, 8);
    let last = make_divisible(1280.0 * width.max(1.0), 8);
    conv_bn_act(
        &mut g,
        "features.0",
        in_channels,
        cin,
        3,
        2,
        1,
        &bn,
        relu6(),
    );
    let mut index = 1;
    for (t, c, n, s) in settings {
        let cout = make_divisible(c as f64 * width, 8);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("features.{index}");
            let input = g.cursor().to_string();
            let hidden = cin * t;
            let mut k = 0;
            if t != 1 {
                conv_bn_act(
                    &mut g,
                    &format!("{p}.conv.0"),
                    cin,
                    hidden,
                    1,
                    1,
                    1,
                    &bn,
                    relu6(),
                );
                k = 1;
            }
            conv_bn_act(
                &mut g,
                &format!("{p}.conv.{k}"),
                hidden,
                hidden,
                3,
                stride,
                hidden,
                &bn,
                relu6(),
            );
            g.then(
                format!("{p}.conv.{}", k + 1),
                LayerSpec::conv(hidden, cout, 1, 1),
            );
            g.then(format!("{p}.conv.{}", k + 2), LayerSpec::batch_norm(cout));
            if stride == 1 && cin == cout {
                residual(&mut g, &p, &input);
            }
            cin = cout;
            index += 1;
        }
    }
    conv_bn_act(
        &mut g,
        &format!("features.{index}"),
        cin,
        last,
        1,
        1,
        1,
        &bn,
        relu6(),
    );
    classifier_tail(
        &mut g,
        vec![LayerSpec::dropout(0.2), LayerSpec::linear(last, classes)],
    );
    g.build()
}

/// One inverted-residual setting of MobileNetV3: kernel, expanded width, output width,
/// squeeze-excitation, hard-swish (else ReLU), stride.
type V3Block = (usize, usize, usize, bool, bool, usize);

const V3_LARGE: [V3Block; 15] = [
    (3, 16, 16, false, false, 1),
    (3, 64, 24, false, false, 2),
    (3, 72, 24, false, false, 1),
    (5, 72, 40, true, false, 2),
    (5, 120, 40, true, false, 1),
    (5, 120, 40, true, false, 1),
    (3, 240, 80, false, true, 2),
    (3, 200, 80, false, true, 1),
    (3, 184, 80, false, true, 1),
    (3, 184, 80, false, true, 1),
    (3, 480, 112, true, true, 1),
    (3, 672, 112, true, true, 1),
    (5, 672, 160, true, true, 2),
    (5, 960, 160, true, true, 1),
    (5, 960, 160, true, true, 1),
];

const V3_SMALL: [V3Block; 11] = [
    (3, 16, 16, true, false, 2),
    (3, 72, 24, false, false, 2),
    (3, 88, 24, false, false, 1),
    (5, 96, 40, true, true, 2),
    (5, 240, 40, true, true, 1),
    (5, 240, 40, true, true, 1),
    (5, 120, 48, true, true, 1),
    (5, 144, 48, true, true, 1),
    (5, 288, 96, true, true, 2),
    (5, 576, 96, true, true, 1),
    (5, 576, 96, true, true, 1),
];

/// torchvision's `mobilenet_v3_large` / `mobilenet_v3_small`.
pub(crate) fn v3(large: bool, in_channels: usize, classes: usize) -> GraphSpec {
    let bn = BatchNorm2dSpec {
        num_features: 1,
        eps: 0.001,
        momentum: 0.01,
    };
    let hs = || LayerSpec::Hardswish(Hardswish {});
    let (blocks, last_channel): (&[V3Block], usize) = if large {
        (&V3_LARGE, 1280)
    } else {
        (&V3_SMALL, 1024)
    };
    let mut g = GraphBuilder::new();
    let mut cin = 16;
    conv_bn_act(
        &mut g,
        "features.0",
        in_channels,
        cin,
        3,
        2,
        1,
        &bn,
        Some(hs()),
    );
    for (i, &(k, expanded, cout, se, hswish, stride)) in blocks.iter().enumerate() {
        let act = if hswish { hs() } else { LayerSpec::relu() };
        let gate = se.then(|| {
            let squeeze = make_divisible(expanded as f64 / 4.0, 8);
            (
                squeeze,
                LayerSpec::relu(),
                LayerSpec::Hardsigmoid(Hardsigmoid {}),
            )
        });
        let p = format!("features.{}", i + 1);
        inverted_residual(
            &mut g,
            &p,
            [cin, expanded, cout],
            k,
            stride,
            &act,
            gate,
            &bn,
        );
        cin = cout;
    }
    let lastconv = 6 * cin;
    let p = format!("features.{}", blocks.len() + 1);
    conv_bn_act(&mut g, &p, cin, lastconv, 1, 1, 1, &bn, Some(hs()));
    classifier_tail(
        &mut g,
        vec![
            LayerSpec::linear(lastconv, last_channel),
            hs(),
            LayerSpec::dropout(0.2),
            LayerSpec::linear(last_channel, classes),
        ],
    );
    g.build()
}

/// torchvision's `efficientnet_b0`: MBConv stages (expansion, kernel, stride, in, out, layers).
pub(crate) fn efficientnet_b0(in_channels: usize, classes: usize) -> GraphSpec {
    let bn = BatchNorm2dSpec::new(1);
    let silu = || LayerSpec::SiLU(SiLU {});
    let stages = [
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 2),
        (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3),
        (6, 5, 2, 112, 192, 4),
        (6, 3, 1, 192, 320, 1),
    ];
    let mut g = GraphBuilder::new();
    conv_bn_act(
        &mut g,
        "features.0",
        in_channels,
        32,
        3,
        2,
        1,
        &bn,
        Some(silu()),
    );
    for (s, &(t, k, stride0, cin0, cout, n)) in stages.iter().enumerate() {
        for b in 0..n {
            let (cin, stride) = if b == 0 { (cin0, stride0) } else { (cout, 1) };
            let p = format!("features.{}.{b}", s + 1);
            let gate = Some(((cin / 4).max(1), silu(), LayerSpec::Sigmoid(Sigmoid {})));
            inverted_residual(
                &mut g,
                &p,
                [cin, cin * t, cout],
                k,
                stride,
                &silu(),
                gate,
                &bn,
            );
        }
    }
    conv_bn_act(&mut g, "features.8", 320, 1280, 1, 1, 1, &bn, Some(silu()));
    classifier_tail(
        &mut g,
        vec![LayerSpec::dropout(0.2), LayerSpec::linear(1280, classes)],
    );
    g.build()
}
