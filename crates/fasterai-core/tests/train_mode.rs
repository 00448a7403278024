//! Evaluation and training behaviour of the graph: on a plain device a model evaluates (batch
//! norms use running statistics, dropout is the identity); on an autodiff device it trains
//! (batch statistics, running statistics updated, dropout active, gradients reach every weight).

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use fasterai_core::graph::Layer;
use fasterai_core::prelude::*;
use fasterai_core::testing::tiny_cnn;

fn running_mean(net: &Graph) -> Vec<f32> {
    let Layer::BatchNorm2d(bn) = net.layer("1").unwrap() else {
        panic!("layer 1 is the first batch norm")
    };
    bn.running_mean
        .value()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn plain_device_evaluates_deterministically() {
    let device = parse_device("flex").unwrap();
    let net = tiny_cnn(3, 5, &device);
    let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let before = running_mean(&net);
    let a = net.forward(x.clone()).flatten().into_data();
    let b = net.forward(x).flatten().into_data();
    assert_eq!(a, b, "evaluation must not depend on dropout draws");
    assert_eq!(
        running_mean(&net),
        before,
        "evaluation must not touch running statistics"
    );
}

#[test]
fn autodiff_device_trains() {
    let device = parse_device("flex").unwrap().autodiff();
    device.seed(1);
    let net = tiny_cnn(3, 5, &device);
    let x = Tensor::<4>::random([8, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let before = running_mean(&net);
    let a = net.forward(x.clone()).flatten();
    let b = net.forward(x.clone()).flatten();
    let differ: f32 = (a.clone() - b).abs().max().into_scalar();
    assert!(differ > 0.0, "dropout must be active in training");
    assert_ne!(
        running_mean(&net),
        before,
        "training must update running statistics"
    );

    let grads = a.sum().backward();
    let Layer::Conv2d(conv) = net.layer("0").unwrap() else {
        panic!()
    };
    let grad = conv
        .weight
        .grad(&grads)
        .expect("the first conv gets a gradient");
    let norm: f32 = grad.abs().sum().into_scalar();
    assert!(norm > 0.0);

    // `valid()` gives the evaluation copy of the same weights.
    let eval = net.valid();
    let y1 = eval
        .forward(x.clone().without_autodiff())
        .flatten()
        .into_data();
    let y2 = eval.forward(x.without_autodiff()).flatten().into_data();
    assert_eq!(y1, y2);
}
