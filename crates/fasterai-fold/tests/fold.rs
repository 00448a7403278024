//! Batch-norm folding: against PyTorch's reference numbers, and lossless on whole models.

use burn::module::{Param, RunningState};
use burn::tensor::{Distribution, Tensor};
use fasterai_core::graph::ops::{Add, Conv2dSpec};
use fasterai_core::graph::{Graph, GraphBuilder, InitScheme, Layer, LayerSpec};
use fasterai_core::prelude::*;
use fasterai_core::testing::{
    Reference, random_graph, randomize_batch_norms, relative_max_diff, tiny_cnn, tiny_resnet,
};
use fasterai_fold::{FoldError, fold_batch_norms, fold_pair};
use fasterai_models::{VggConfig, VggDepth};

fn device() -> Device {
    parse_device("flex").unwrap()
}

fn conv_spec(i: usize, o: usize, bias: bool) -> LayerSpec {
    let mut spec = LayerSpec::conv3x3(i, o);
    if let LayerSpec::Conv2d(Conv2dSpec { bias: b, .. }) = &mut spec {
        *b = bias;
    }
    spec
}

fn bn_spec(n: usize) -> LayerSpec {
    LayerSpec::batch_norm(n)
}

fn layer(spec: &LayerSpec) -> Layer {
    Layer::from_spec(spec, InitScheme::PyTorchDefault, &device())
}

#[test]
fn matches_pytorch_reference() {
    let Some(r) = Reference::open("bn_fold") else {
        return;
    };
    let d = device();
    let Layer::Conv2d(mut conv) = layer(&conv_spec(64, 128, true)) else {
        unreachable!()
    };
    conv.weight = Param::from_tensor(r.tensor("conv_weight", &d));
    conv.bias = Some(Param::from_tensor(r.tensor("conv_bias", &d)));
    let Layer::BatchNorm2d(mut bn) = layer(&bn_spec(128)) else {
        unreachable!()
    };
    bn.gamma = Param::from_tensor(r.tensor("bn_weight", &d));
    bn.beta = Param::from_tensor(r.tensor("bn_bias", &d));
    bn.running_mean = RunningState::new(r.tensor("bn_running_mean", &d));
    bn.running_var = RunningState::new(r.tensor("bn_running_var", &d));

    let folded = fold_pair(&conv, &bn, "conv", "bn").unwrap();
    let w_err = relative_max_diff(folded.weight.val(), r.tensor::<4>("folded_weight", &d));
    let b_err = relative_max_diff(
        folded.bias.clone().unwrap().val(),
        r.tensor::<1>("folded_bias", &d),
    );
    assert!(
        w_err < 1e-6 && b_err < 1e-6,
        "weight {w_err:e}, bias {b_err:e}"
    );

    // Our conv+BN reproduces PyTorch's, and the folded conv reproduces both.
    let x = r.tensor::<4>("x", &d);
    let net = Graph::indexed([Layer::Conv2d(conv), Layer::BatchNorm2d(bn)]);
    let y_bn = net.forward(x.clone()).into_spatial().unwrap();
    let y_folded = folded.forward(x);
    let reference = r.tensor::<4>("y_conv_bn", &d);
    let e1 = relative_max_diff(y_bn, reference.clone());
    let e2 = relative_max_diff(y_folded, reference);
    assert!(e1 <= 1e-4 && e2 <= 1e-4, "conv+bn {e1:e}, folded {e2:e}");
}

#[test]
fn vgg16_bn_folds_losslessly_and_drops_exactly_the_bn_parameters() {
    let d = device();
    d.seed(3);
    let mut model = VggConfig::new(VggDepth::Vgg16, true, 10).init(&d).unwrap();
    randomize_batch_norms(&mut model.net, &d);
    assert_eq!(count_parameters(&model.net), 134_309_962);

    let (folded, report) = fold_batch_norms(&model.net).unwrap();
    assert_eq!(report.folded.len(), 13);
    assert!(report.left.is_empty());
    assert_eq!(report.params_after, 134_301_514);
    assert_eq!(count_parameters(&folded), 134_301_514);
    assert_eq!(report.folded[0].conv, "features.0");
    assert_eq!(report.folded[0].bn, "features.1");
    assert!(folded.get("features.1").is_none());
    assert_eq!(folded.layer("features.2").unwrap().kind(), "ReLU");

    let x = Tensor::<4>::random([2, 3, 224, 224], Distribution::Normal(0.0, 1.0), &d);
    let before = model.net.forward(x.clone()).into_flat().unwrap();
    let after = folded.forward(x).into_flat().unwrap();
    let err = relative_max_diff(after, before);
    assert!(
        err <= 1e-4,
        "folded VGG16-bn differs from the original: {err:e}"
    );
}

#[test]
fn branches_bias_free_convs_and_leftovers() {
    let d = device();
    let mut g = GraphBuilder::new();
    g.then("input_norm", bn_spec(3)); // reads the model input
    g.then("conv", conv_spec(3, 4, false));
    g.then("bn", bn_spec(4));
    g.then("relu", LayerSpec::relu());
    g.then("norm", bn_spec(4)); // follows a ReLU
    let conv2 = g.then("conv2", conv_spec(4, 4, true));
    let bn2 = g.then("bn2", bn_spec(4)); // its conv also feeds the shortcut
    g.node("add", LayerSpec::Add(Add {}), &[&bn2, &conv2]);
    let net = random_graph(&g.build(), &d);

    let (folded, report) = fold_batch_norms(&net).unwrap();
    assert_eq!(report.folded.len(), 1);
    assert_eq!(
        (report.folded[0].conv.as_str(), report.folded[0].bn.as_str()),
        ("conv", "bn")
    );
    let left: Vec<_> = report.left.iter().map(|u| u.bn.as_str()).collect();
    assert_eq!(left, ["input_norm", "norm", "bn2"]);
    for (unfolded, why) in report
        .left
        .iter()
        .zip(["model input", "ReLU", "also feeds 1"])
    {
        assert!(unfolded.reason.contains(why), "{}", unfolded.reason);
    }
    // The bias-free conv got a bias; the relu now reads the conv.
    let Layer::Conv2d(conv) = folded.layer("conv").unwrap() else {
        panic!()
    };
    assert!(conv.bias.is_some());
    assert!(folded.get("bn").is_none());
    assert_eq!(
        folded.nodes[folded.position("relu").unwrap()].inputs,
        ["conv"]
    );

    let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Normal(0.0, 1.0), &d);
    let err = relative_max_diff(
        folded.forward(x.clone()).into_spatial().unwrap(),
        net.forward(x).into_spatial().unwrap(),
    );
    assert!(err <= 1e-5, "{err:e}");
}

#[test]
fn resnet_folds_every_batch_norm_losslessly() {
    let d = device();
    let net = tiny_resnet(3, 5, &d);
    let (folded, report) = fold_batch_norms(&net).unwrap();
    // conv1/bn1, two blocks × (bn1, bn2), and the second block's downsample.
    assert_eq!(report.folded.len(), 6, "{report}");
    assert!(report.left.is_empty(), "{report}");
    assert!(folded.nodes.iter().all(|n| n.layer.kind() != "BatchNorm2d"));
    let x = Tensor::<4>::random([3, 3, 8, 8], Distribution::Normal(0.0, 1.0), &d);
    let err = relative_max_diff(
        folded.forward(x.clone()).flatten(),
        net.forward(x).flatten(),
    );
    assert!(err <= 1e-5, "{err:e}");
}

#[test]
fn trained_style_small_cnn_is_lossless() {
    let d = device();
    let net = tiny_cnn(3, 5, &d);
    let (folded, report) = fold_batch_norms(&net).unwrap();
    assert_eq!(report.folded.len(), 2);
    assert_eq!(report.params_before - report.params_after, 2 * (8 + 16));
    let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &d);
    let err = relative_max_diff(
        folded.forward(x.clone()).flatten(),
        net.forward(x).flatten(),
    );
    assert!(err <= 1e-5, "{err:e}");
}

#[test]
fn bad_batch_norms_are_errors() {
    let d = device();
    let Layer::Conv2d(conv) = layer(&conv_spec(3, 4, true)) else {
        unreachable!()
    };
    let Layer::BatchNorm2d(bn) = layer(&bn_spec(5)) else {
        unreachable!()
    };
    let err = fold_pair(&conv, &bn, "c", "b").unwrap_err();
    assert!(
        matches!(
            err,
            FoldError::ChannelMismatch {
                conv_out: 4,
                bn_features: 5,
                ..
            }
        ),
        "{err}"
    );

    let Layer::BatchNorm2d(mut bn) = layer(&bn_spec(4)) else {
        unreachable!()
    };
    bn.running_var = RunningState::new(Tensor::<1>::from_floats([1.0, -2.0, 1.0, 1.0], &d));
    let err = fold_pair(&conv, &bn, "c", "b").unwrap_err();
    assert!(matches!(err, FoldError::NonFinite(_)), "{err}");
}
