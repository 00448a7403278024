//! The inference engine against the graph it prepares: fused convolution chains and Winograd
//! 3×3 convolutions give the graph's outputs up to float rounding, on every shape they take.

use burn::tensor::{Distribution, Tensor};
use fasterai_core::graph::ops::Conv2dSpec;
use fasterai_core::infer::Inference;
use fasterai_core::prelude::*;
use fasterai_core::testing::{
    random_branched_spec, random_graph, relative_max_diff, tiny_cnn, tiny_resnet,
};

fn flex() -> Device {
    parse_device("flex").unwrap()
}

/// Prepared and plain outputs of `net` on a random batch of `input` images.
fn both(net: &Graph, input: [usize; 4]) -> (Inference, Tensor<2>, Tensor<2>) {
    let device = flex();
    let x = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &device);
    let prepared = Inference::new(net.clone(), &device);
    let fast = prepared.forward(x.clone()).flatten();
    let reference = net.forward(x).flatten();
    (prepared, fast, reference)
}

#[test]
fn winograd_equals_the_direct_convolution_on_every_geometry() {
    let device = flex();
    // Odd and even sizes (partial last tiles), 1×1 to 3×3 images, padding 0 and 1, with and
    // without bias and a following ReLU.
    let cases = [
        (8, 16, [7, 9], 1, true, false),
        (12, 8, [16, 16], 1, false, true),
        (8, 8, [1, 1], 1, true, true),
        (9, 5, [2, 3], 1, true, false),
        (16, 24, [5, 6], 0, true, true),
        (8, 8, [3, 3], 0, false, false),
        (32, 32, [14, 14], 1, true, true),
    ];
    for (i, (cin, cout, [h, w], pad, bias, relu)) in cases.into_iter().enumerate() {
        let mut spec = Conv2dSpec::new(cin, cout, 3, 1).with_bias(bias);
        spec.padding = [pad, pad];
        let mut g = GraphBuilder::new();
        g.then("conv", LayerSpec::Conv2d(spec));
        if relu {
            g.then("act", LayerSpec::relu());
        }
        g.then("flat", LayerSpec::flatten());
        let net = random_graph(&g.build(), &device);
        let (prepared, fast, reference) = both(&net, [2, cin, h, w]);
        assert_eq!(prepared.winograd_convs(), 1, "case {i}");
        assert_eq!(prepared.fused_nodes(), usize::from(relu), "case {i}");
        let err = relative_max_diff(fast, reference);
        assert!(err < 1e-5, "case {i}: relative error {err}");
    }
}

#[test]
fn fused_chains_equal_the_graph() {
    let device = flex();
    // Conv → BN → ReLU twice (Winograd on the second, 8 input channels), linear head.
    let net = tiny_cnn(3, 5, &device);
    let (prepared, fast, reference) = both(&net, [3, 3, 16, 16]);
    assert_eq!(prepared.fused_nodes(), 4);
    assert_eq!(prepared.winograd_convs(), 1);
    let err = relative_max_diff(fast, reference);
    assert!(err < 1e-5, "tiny CNN: {err}");

    // Shortcuts: a BN whose conv also feeds an Add, strided 1×1 projections.
    let net = tiny_resnet(3, 4, &device);
    let (prepared, fast, reference) = both(&net, [2, 3, 8, 8]);
    assert!(prepared.fused_nodes() > 0);
    let err = relative_max_diff(fast, reference);
    assert!(err < 1e-5, "tiny ResNet: {err}");
}

#[test]
fn random_branched_graphs_give_the_graphs_outputs() {
    let device = flex();
    for seed in 0..12 {
        let (spec, [c, h, w]) = random_branched_spec(seed);
        let net = random_graph(&spec, &device);
        let (_, fast, reference) = both(&net, [2, c, h, w]);
        let err = relative_max_diff(fast, reference);
        assert!(err < 1e-5, "seed {seed}: {err}");
    }
}

#[test]
fn plain_and_tracked_inputs_run_the_graph_as_built() {
    let device = flex();
    let net = tiny_cnn(3, 5, &device);
    let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let reference = net.forward(x.clone()).flatten().into_data();
    let plain = Inference::plain(net.clone());
    assert_eq!(plain.fused_nodes() + plain.winograd_convs(), 0);
    assert_eq!(plain.forward(x.clone()).flatten().into_data(), reference);

    // An input that records a backward pass gets the graph itself, gradients included.
    let ad = device.autodiff();
    let prepared = Inference::new(tiny_cnn(3, 5, &ad), &ad);
    let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &ad).require_grad();
    let y = prepared.forward(x.clone()).flatten();
    let grads = y.sum().backward();
    let grad = x.grad(&grads).expect("the input's gradient is recorded");
    assert_eq!(grad.dims(), [2, 3, 16, 16]);
}

#[test]
fn one_image_linears_split_over_the_cores_give_the_layers_outputs() {
    let device = flex();
    let mut g = GraphBuilder::new();
    g.then("fc", LayerSpec::linear(300, 1000));
    g.then("act", LayerSpec::relu());
    g.then("head", LayerSpec::linear(1000, 7));
    let net = random_graph(&g.build(), &device);
    let prepared = Inference::new(net.clone(), &device);
    for rows in [1, 3] {
        let x = Tensor::<2>::random([rows, 300], Distribution::Normal(0.0, 1.0), &device);
        let fast = prepared.forward(x.clone()).flatten();
        let reference = net.forward(x).flatten();
        assert_eq!(fast.dims(), [rows, 7]);
        let err = relative_max_diff(fast, reference);
        assert!(err < 1e-6, "{rows} rows: {err}");
    }
}

/// NaN and ±∞ at scattered places of a random batch.
fn with_non_finite(input: [usize; 4], device: &Device) -> Tensor<4> {
    let x = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), device);
    let mut values = x.into_data().try_to_vec::<f32>().unwrap();
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    for (k, i) in (0..values.len()).step_by(37).enumerate() {
        values[i] = specials[k % 3];
    }
    Tensor::from_data(burn::tensor::TensorData::new(values, input), device)
}

/// Equal non-finite values at the same places (NaN where NaN, the same infinity where one),
/// finite values equal up to rounding.
fn assert_same_non_finite(fast: Tensor<2>, plain: Tensor<2>, what: &str) {
    let (a, b) = (
        fast.into_data().try_to_vec::<f32>().unwrap(),
        plain.into_data().try_to_vec::<f32>().unwrap(),
    );
    assert!(
        b.iter().any(|v| !v.is_finite()),
        "{what}: the case tests nothing"
    );
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = if y.is_finite() {
            (x - y).abs() <= 1e-4 * (1.0 + y.abs())
        } else {
            x.is_nan() == y.is_nan() && (y.is_nan() || x == y)
        };
        assert!(same, "{what}: element {i} is {x}, the graph gives {y}");
    }
}

#[test]
fn nan_and_infinities_propagate_through_every_fused_kernel_as_through_the_graph() {
    let device = flex();
    let chain = |ops: Vec<LayerSpec>| {
        let mut g = GraphBuilder::new();
        g.chain("net", ops);
        g.then("flat", LayerSpec::flatten());
        g.build()
    };
    let mut conv1 = Conv2dSpec::new(4, 6, 1, 1).with_bias(true);
    conv1.padding = [0, 0];
    let cases = [
        // Winograd 3×3 → batch norm → ReLU.
        (
            "winograd+bn+relu",
            chain(vec![
                LayerSpec::conv(4, 6, 3, 1),
                LayerSpec::batch_norm(6),
                LayerSpec::relu(),
            ]),
        ),
        // A direct (1×1) convolution with bias → ReLU6.
        (
            "conv+relu6",
            chain(vec![
                LayerSpec::Conv2d(conv1),
                LayerSpec::ReLU6(Default::default()),
            ]),
        ),
        // Max pooling.
        ("max pool", chain(vec![LayerSpec::max_pool2(false)])),
    ];
    for (what, spec) in cases {
        let mut net = random_graph(&spec, &device);
        fasterai_core::testing::randomize_batch_norms(&mut net, &device);
        let x = with_non_finite([2, 4, 8, 8], &device);
        let fast = Inference::new(net.clone(), &device)
            .forward(x.clone())
            .flatten();
        let plain = Inference::plain(net).forward(x).flatten();
        assert_same_non_finite(fast, plain, what);
    }
    // A one-image linear layer split over the cores.
    let mut g = GraphBuilder::new();
    g.then("flat", LayerSpec::flatten());
    g.then("fc", LayerSpec::linear(4 * 8 * 8, 64));
    g.then("relu", LayerSpec::relu());
    let net = random_graph(&g.build(), &device);
    let x = with_non_finite([1, 4, 8, 8], &device);
    let fast = Inference::new(net.clone(), &device)
        .forward(x.clone())
        .flatten();
    let plain = Inference::plain(net).forward(x).flatten();
    assert_same_non_finite(fast, plain, "linear");
}
