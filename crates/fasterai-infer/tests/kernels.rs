//! Each kernel against the graph's op, on every path it offers and the geometries that stress
//! its edges (partial tiles, padding, strides, dilation, groups), NaN and infinities included.

use fasterai_core::graph::ops::merge::{Add, Mul};
use fasterai_core::graph::ops::pool::AdaptiveAvgPool2dSpec;
use fasterai_core::graph::ops::{AvgPool2dSpec, Conv2dSpec, MaxPool2dSpec};
use fasterai_core::prelude::*;
use fasterai_core::testing::{random_graph, randomize_batch_norms, relative_max_diff};
use fasterai_infer::{ConvPath, PathChoice};

use crate::{assert_same_non_finite, both, choices, flex, for_each_isa, normal, with_non_finite};

/// `spec → [BatchNorm2d] → [act] → Flatten` with random weights and batch-norm statistics.
fn conv_net(spec: Conv2dSpec, bn: bool, act: Option<LayerSpec>) -> Graph {
    let device = flex();
    let mut g = GraphBuilder::new();
    let out = spec.out_channels;
    g.then("conv", LayerSpec::Conv2d(spec));
    if bn {
        g.then("bn", LayerSpec::batch_norm(out));
    }
    if let Some(act) = act {
        g.then("act", act);
    }
    g.then("flat", LayerSpec::flatten());
    let mut net = random_graph(&g.build(), &device);
    randomize_batch_norms(&mut net, &device);
    net
}

fn spec(cin: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Conv2dSpec {
    let mut s = Conv2dSpec::new(cin, cout, k, stride).with_bias(true);
    s.padding = [pad, pad];
    s
}

#[test]
fn convolutions_equal_the_graph_on_every_path_geometry_and_instruction_set() {
    let acts = [
        None,
        Some(LayerSpec::relu()),
        Some(LayerSpec::ReLU6(Default::default())),
        Some(LayerSpec::SiLU(Default::default())),
        Some(LayerSpec::Hardswish(Default::default())),
        Some(LayerSpec::Sigmoid(Default::default())),
        Some(LayerSpec::Hardsigmoid(Default::default())),
    ];
    let mut dilated = spec(6, 10, 3, 1, 2);
    dilated.dilation = [2, 2];
    let mut grouped = spec(8, 12, 3, 2, 1);
    grouped.groups = 4;
    let mut depthwise = spec(8, 8, 3, 1, 1);
    depthwise.groups = 8;
    let mut depthwise_s2 = spec(6, 12, 5, 2, 2);
    depthwise_s2.groups = 6; // two outputs per input channel
    let mut depthwise_dilated = spec(5, 5, 3, 1, 2);
    depthwise_dilated.groups = 5;
    depthwise_dilated.dilation = [2, 2];
    let mut depthwise_7x7 = spec(12, 12, 5, 1, 2); // EfficientNet's last stages
    depthwise_7x7.groups = 12;
    let mut depthwise_s2_odd = spec(4, 4, 3, 2, 1);
    depthwise_s2_odd.groups = 4;
    let mut depthwise_s2_unpadded = spec(3, 3, 3, 2, 0);
    depthwise_s2_unpadded.groups = 3;
    let mut depthwise_rect = spec(3, 3, 3, 1, 0);
    depthwise_rect.groups = 3;
    depthwise_rect.kernel_size = [3, 2];
    depthwise_rect.stride = [1, 3];
    depthwise_rect.padding = [1, 2];
    let mut rect = spec(5, 7, 3, 1, 1);
    rect.kernel_size = [1, 3];
    rect.padding = [0, 1];
    let cases = [
        // Winograd-eligible: odd/even sizes (partial last tiles), 1×1 to 3×3 images, pad 0/1.
        (spec(8, 16, 3, 1, 1), [7, 9]),
        (spec(12, 8, 3, 1, 1), [16, 16]),
        (spec(8, 8, 3, 1, 1), [1, 1]),
        (spec(3, 5, 3, 1, 1), [2, 3]),
        (spec(16, 24, 3, 1, 0), [5, 6]),
        (spec(32, 32, 3, 1, 1), [14, 14]),
        // GEMM without im2col (1×1) and with (strides, 7×7, dilation, groups, 1×3).
        (spec(16, 24, 1, 1, 0), [5, 7]),
        (spec(16, 8, 1, 2, 0), [9, 9]),
        (spec(3, 8, 7, 2, 3), [17, 15]),
        (spec(6, 4, 3, 2, 1), [8, 8]),
        (dilated, [9, 8]),
        (grouped, [7, 7]),
        (rect, [6, 5]),
        // A plane of 2,304 pixels: two images fill a product.
        (spec(4, 6, 3, 1, 1), [48, 48]),
        // Depthwise: stride 1 and 2, multiplier 1 and 2, a 5×5 filter.
        (depthwise, [9, 10]),
        (depthwise_s2, [11, 8]),
        // Depthwise: dilation, a 7×7 map with a 5×5 filter, stride 2 on odd sizes and unpadded, and a
        // 3×2 filter with strides and padding that differ by axis.
        (depthwise_dilated, [8, 9]),
        (depthwise_7x7, [7, 7]),
        (depthwise_s2_odd, [13, 7]),
        (depthwise_s2_unpadded, [9, 9]),
        (depthwise_rect, [6, 11]),
    ];
    for (i, (spec, [h, w])) in cases.into_iter().enumerate() {
        let act = acts[i % acts.len()].clone();
        let net = conv_net(spec.clone(), i % 2 == 0, act);
        let mut taken = Vec::new();
        // One image, three and eleven: small planes run in tasks of images in parallel, their
        // columns side by side in one product (on 2 to 5 threads, eleven images make tasks of
        // two with a short last one).
        for batch in [1, 3, 11] {
            let x = normal([batch, spec.in_channels, h, w]);
            for_each_isa(|isa| {
                taken.clear();
                for path in ConvPath::ALL {
                    let (prepared, fast, reference) =
                        both(&net, x.clone(), PathChoice::Force(path));
                    if prepared.convs_by(path) == 0 {
                        continue; // a path this convolution does not offer
                    }
                    taken.push(path);
                    let err = relative_max_diff(fast, reference);
                    assert!(
                        err < 1e-5,
                        "case {i} by {path:?}, batch {batch}, {isa:?}: relative error {err}"
                    );
                }
            });
        }
        assert!(
            taken.contains(&ConvPath::Gemm),
            "case {i}: GEMM computes every convolution"
        );
        let winograd = spec.kernel_size == [3, 3]
            && spec.stride == [1, 1]
            && spec.groups == 1
            && spec.dilation == [1, 1];
        assert_eq!(taken.contains(&ConvPath::Winograd), winograd, "case {i}");
        assert_eq!(
            taken.contains(&ConvPath::Depthwise),
            spec.groups == spec.in_channels && spec.groups > 1,
            "case {i}"
        );
    }
}

#[test]
fn pools_equal_the_graph() {
    let device = flex();
    let mut ceil = MaxPool2dSpec::new(3, 2, 0);
    ceil.ceil_mode = true;
    let mut avg_pad = AvgPool2dSpec {
        kernel_size: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        ceil_mode: false,
        count_include_pad: true,
    };
    let specs = vec![
        LayerSpec::MaxPool2d(MaxPool2dSpec::new(3, 2, 1)),
        LayerSpec::MaxPool2d(ceil),
        LayerSpec::max_pool2(false),
        LayerSpec::AvgPool2d(avg_pad.clone()),
        {
            avg_pad.count_include_pad = false;
            LayerSpec::AvgPool2d(avg_pad)
        },
        LayerSpec::AdaptiveAvgPool2d(AdaptiveAvgPool2dSpec {
            output_size: [3, 2],
        }),
        LayerSpec::global_avg_pool(),
    ];
    for (i, op) in specs.into_iter().enumerate() {
        let mut g = GraphBuilder::new();
        g.then("pool", op);
        g.then("flat", LayerSpec::flatten());
        let net = random_graph(&g.build(), &device);
        for_each_isa(|isa| {
            for [h, w] in [[7, 7], [8, 11]] {
                let (_, fast, reference) = both(&net, normal([2, 3, h, w]), PathChoice::Rules);
                let err = relative_max_diff(fast, reference);
                assert!(err < 1e-6, "pool {i} on {h}×{w}, {isa:?}: {err}");
            }
        });
    }
}

#[test]
fn one_image_linears_split_over_the_cores_give_the_layers_outputs() {
    let device = flex();
    let mut g = GraphBuilder::new();
    g.then("fc", LayerSpec::linear(300, 1000));
    g.then("act", LayerSpec::relu());
    g.then("head", LayerSpec::linear(1000, 7));
    let net = random_graph(&g.build(), &device);
    let prepared = fasterai_infer::Inference::new(net.clone(), &device);
    assert_eq!(prepared.fused_nodes(), 1, "the ReLU folds into fc");
    for rows in [1, 3] {
        let x = burn::tensor::Tensor::<2>::random(
            [rows, 300],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let fast = prepared.forward(x.clone()).flatten();
        let reference = net.forward(x).flatten();
        assert_eq!(fast.dims(), [rows, 7]);
        let err = relative_max_diff(fast, reference);
        assert!(err < 1e-6, "{rows} rows: {err}");
    }
}

#[test]
fn nan_and_infinities_propagate_through_every_kernel_and_path_as_through_the_graph() {
    let device = flex();
    let chain = |ops: Vec<LayerSpec>| {
        let mut g = GraphBuilder::new();
        g.chain("net", ops);
        g.then("flat", LayerSpec::flatten());
        g.build()
    };
    let mut depthwise = spec(4, 4, 3, 1, 1);
    depthwise.groups = 4;
    let cases = [
        (
            "3x3+bn+relu",
            chain(vec![
                LayerSpec::conv(4, 6, 3, 1),
                LayerSpec::batch_norm(6),
                LayerSpec::relu(),
            ]),
        ),
        (
            "1x1+relu6",
            chain(vec![
                LayerSpec::Conv2d(spec(4, 6, 1, 1, 0)),
                LayerSpec::ReLU6(Default::default()),
            ]),
        ),
        (
            "depthwise+hardswish",
            chain(vec![
                LayerSpec::Conv2d(depthwise),
                LayerSpec::Hardswish(Default::default()),
            ]),
        ),
        (
            "bn+silu",
            chain(vec![
                LayerSpec::batch_norm(4),
                LayerSpec::SiLU(Default::default()),
            ]),
        ),
        ("max pool", chain(vec![LayerSpec::max_pool2(false)])),
        ("global pool", chain(vec![LayerSpec::global_avg_pool()])),
    ];
    for (what, spec) in cases {
        let mut net = random_graph(&spec, &device);
        randomize_batch_norms(&mut net, &device);
        for_each_isa(|isa| {
            for choice in choices() {
                let x = with_non_finite([2, 4, 8, 8]);
                let (_, fast, plain) = both(&net, x, choice);
                assert_same_non_finite(fast, plain, &format!("{what}, {choice:?}, {isa:?}"));
            }
        });
    }
    // A one-image linear layer split over the cores.
    let mut g = GraphBuilder::new();
    g.then("flat", LayerSpec::flatten());
    g.then("fc", LayerSpec::linear(4 * 8 * 8, 600));
    g.then("relu", LayerSpec::relu());
    let net = random_graph(&g.build(), &device);
    let (_, fast, plain) = both(&net, with_non_finite([1, 4, 8, 8]), PathChoice::Measure);
    assert_same_non_finite(fast, plain, "linear");
}

/// `[conv →] pool → fc1 → [act] → fc2 → gate → Mul(·, x) [→ Add(·, x)] → Flatten`: a
/// squeeze-and-excitation gate on `x`, the product's operands in either order, `x` also read
/// after the gate when `shared`.
fn gate_net(
    conv: bool,
    act: Option<LayerSpec>,
    gate: LayerSpec,
    swap: bool,
    shared: bool,
) -> Graph {
    let (c, squeeze) = (6, 3);
    let conv1x1 = |i, o| LayerSpec::Conv2d(Conv2dSpec::new(i, o, 1, 1).with_bias(true));
    let mut g = GraphBuilder::new();
    if conv {
        g.then("conv", LayerSpec::conv(4, c, 3, 1));
    }
    let x = g.cursor().to_string();
    g.then("se.avgpool", LayerSpec::global_avg_pool());
    g.then("se.fc1", conv1x1(c, squeeze));
    if let Some(act) = act {
        g.then("se.act", act);
    }
    g.then("se.fc2", conv1x1(squeeze, c));
    let scale = g.then("se.gate", gate);
    let operands = if swap { [&x, &scale] } else { [&scale, &x] };
    let gated = g.node("se.mul", LayerSpec::Mul(Mul {}), &operands.map(|s| &s[..]));
    if shared {
        g.node("add", LayerSpec::Add(Add {}), &[&gated, &x]);
    }
    g.then("flat", LayerSpec::flatten());
    random_graph(&g.build(), &flex())
}

#[test]
fn squeeze_excitation_gates_run_in_one_step_and_equal_the_graph() {
    let cases = [
        (
            true,
            Some(LayerSpec::relu()),
            LayerSpec::Hardsigmoid(Default::default()),
            false,
            false,
        ),
        (
            true,
            Some(LayerSpec::SiLU(Default::default())),
            LayerSpec::Sigmoid(Default::default()),
            true,
            true,
        ),
        (
            false,
            None,
            LayerSpec::Sigmoid(Default::default()),
            false,
            true,
        ),
    ];
    for (i, (conv, act, gate, swap, shared)) in cases.into_iter().enumerate() {
        let cin = if conv { 4 } else { 6 };
        let net = gate_net(conv, act, gate, swap, shared);
        for_each_isa(|isa| {
            for batch in [1, 3] {
                let (prepared, fast, reference) =
                    both(&net, normal([batch, cin, 9, 7]), PathChoice::Rules);
                assert_eq!(prepared.report().gates, 1, "case {i}");
                let err = relative_max_diff(fast, reference);
                assert!(err < 1e-5, "case {i}, batch {batch}, {isa:?}: {err}");
            }
            let (_, fast, plain) = both(&net, with_non_finite([2, cin, 9, 7]), PathChoice::Rules);
            assert_same_non_finite(fast, plain, &format!("gate case {i}, {isa:?}"));
        });
    }
}

#[test]
fn a_linear_after_an_enlarging_adaptive_pool_reads_the_input_through_a_folded_weight() {
    let device = flex();
    let mut g = GraphBuilder::new();
    g.then(
        "avgpool",
        LayerSpec::AdaptiveAvgPool2d(AdaptiveAvgPool2dSpec {
            output_size: [3, 4],
        }),
    );
    g.then("flat", LayerSpec::flatten());
    g.then("fc1", LayerSpec::linear(5 * 12, 300));
    g.then("relu", LayerSpec::relu());
    g.then("fc2", LayerSpec::linear(300, 7));
    let net = random_graph(&g.build(), &device);
    // 1×1 and 2×3 maps are enlarged (the latter with windows of one and two pixels); 4×5 is not.
    for [h, w] in [[1, 1], [2, 3], [4, 5]] {
        for_each_isa(|isa| {
            for batch in [1, 3] {
                let (prepared, fast, reference) =
                    both(&net, normal([batch, 5, h, w]), PathChoice::Rules);
                assert_eq!(prepared.fused_nodes(), 3, "flatten, fc1 and its ReLU");
                let err = relative_max_diff(fast, reference);
                assert!(err < 1e-5, "{h}x{w}, batch {batch}, {isa:?}: {err}");
            }
            let (_, fast, plain) = both(&net, with_non_finite([2, 5, h, w]), PathChoice::Rules);
            assert_same_non_finite(fast, plain, &format!("pooled linear {h}x{w}, {isa:?}"));
        });
    }
}
