//! Linear → two Linears by truncated SVD: PyTorch reference numbers, exact parameter counts,
//! and clear errors.

use burn::module::Param;
use burn::tensor::{Distribution, Tensor};
use fasterai_core::graph::ops::{LinearSpec, ReLU};
use fasterai_core::graph::{Activation, Graph, InitScheme, Layer, LayerSpec};
use fasterai_core::linalg::{SvdMethod, to_array};
use fasterai_core::prelude::*;
use fasterai_core::testing::{Reference, relative_max_diff};
use fasterai_decompose::DecomposeError;
use fasterai_decompose::linear::{LinearRank, LinearSvdConfig, factorize_linears};
use fasterai_fold::fold_batch_norms;
use fasterai_models::{VggConfig, VggDepth};

fn device() -> Device {
    parse_device("flex").unwrap()
}

fn linear(i: usize, o: usize, bias: bool) -> Layer {
    Layer::from_spec(
        &LayerSpec::Linear(LinearSpec::new(i, o).with_bias(bias)),
        InitScheme::PyTorchDefault,
        &device(),
    )
}

/// The two factors of a replaced layer, in PyTorch layout: (first [k, in], second [out, k]).
fn factors(net: &Graph, path: &str) -> (Tensor<2>, Tensor<2>, Option<Tensor<1>>) {
    let piece = |i: usize| {
        net.layer(&format!("{path}.{i}"))
            .expect("replaced by a pair")
    };
    let (Layer::Linear(a), Layer::Linear(b)) = (piece(0), piece(1)) else {
        panic!("{path} was not replaced by two Linears")
    };
    assert!(a.bias.is_none());
    (
        a.weight.val().transpose(),
        b.weight.val().transpose(),
        b.bias.as_ref().map(|b| b.val()),
    )
}

#[test]
fn matches_pytorch_reference_at_rank_64() {
    let Some(r) = Reference::open("fc_svd") else {
        return;
    };
    let d = device();
    let Layer::Linear(mut fc) = linear(512, 256, true) else {
        unreachable!()
    };
    fc.weight = Param::from_tensor(r.tensor::<2>("weight", &d).transpose());
    fc.bias = Some(Param::from_tensor(r.tensor("bias", &d)));
    let net = Graph::indexed([Layer::Linear(fc)]);
    let x: Tensor<2> = r.tensor("x", &d);

    for method in [SvdMethod::Gram, SvdMethod::Full] {
        let config = LinearSvdConfig {
            rank: LinearRank::Rank(64),
            layers: vec![],
            method,
        };
        let (out, report) =
            factorize_linears(&net, &config, Some(Activation::Flat(x.clone()))).unwrap();
        let row = &report.layers[0];
        assert_eq!(row.rank, 64);
        assert!(
            (row.weight_error - r.scalar("weight_rel_err_rank64")).abs() < 1e-5,
            "{method:?}: {}",
            row.weight_error
        );
        let y_err = row.output_error.unwrap();
        assert!(
            (y_err - r.scalar("output_rel_err_rank64")).abs() < 1e-4,
            "{method:?}: {y_err}"
        );

        // The factor product is the rank-64 truncation (W_lowrank), and outputs match y_lowrank.
        let (first, second, bias) = factors(&out, "0");
        let product = second.matmul(first);
        let e = relative_max_diff(product, r.tensor("W_lowrank", &d));
        assert!(e < 1e-4, "{method:?}: W_lowrank differs by {e:e}");
        assert!(relative_max_diff(bias.unwrap(), r.tensor("bias", &d)) == 0.0);
        let y = out.forward(x.clone()).into_flat().unwrap();
        let e = relative_max_diff(y, r.tensor("y_lowrank", &d));
        assert!(e < 1e-4, "{method:?}: y_lowrank differs by {e:e}");
    }
}

#[test]
fn vgg16_bn_folded_then_half_the_singular_values() {
    let d = device();
    let model = VggConfig::new(VggDepth::Vgg16, true, 10).init(&d).unwrap();
    let (folded, _) = fold_batch_norms(&model.net).unwrap();
    assert_eq!(count_parameters(&folded), 134_301_514);
    let (out, report) = factorize_linears(
        &folded,
        &LinearSvdConfig::new(LinearRank::PercentRemoved(0.5)),
        None,
    )
    .unwrap();
    // classifier.0: 25088→4096 at k = 2048; classifier.3: 4096² at k = 2048 saves nothing and
    // stays; classifier.6: 4096→10 at k = 5.
    let ranks: Vec<(&str, usize, bool)> = report
        .layers
        .iter()
        .map(|r| (r.path.as_str(), r.rank, r.decomposed))
        .collect();
    assert_eq!(
        ranks,
        [
            ("classifier.0", 2048, true),
            ("classifier.3", 0, false),
            ("classifier.6", 5, true)
        ]
    );
    let expected =
        134_301_514 - (25088 * 4096 - 2048 * (25088 + 4096)) - (10 * 4096 - 5 * (10 + 4096));
    assert_eq!(expected, 91_289_468);
    assert_eq!(report.params_after, expected);
    assert_eq!(count_parameters(&out), expected);
    assert_eq!(
        out.layer("classifier.0.0").unwrap().spec(),
        LayerSpec::Linear(LinearSpec::new(25088, 2048).with_bias(false))
    );
    assert_eq!(out.output_shape(&[3, 32, 32]).unwrap(), vec![10]);
}

#[test]
fn bias_free_layers_get_a_bias_and_energy_rule_keeps_enough() {
    let d = device();
    let net = Graph::indexed([
        linear(64, 48, false),
        Layer::ReLU(ReLU {}),
        linear(48, 40, true),
    ]);
    let (out, report) =
        factorize_linears(&net, &LinearSvdConfig::new(LinearRank::Energy(0.5)), None).unwrap();
    for row in &report.layers {
        assert!(row.decomposed, "{row:?}");
        // The smallest rank that keeps half the energy, from the spectrum computed here.
        let Layer::Linear(l) = net.layer(&row.path).unwrap() else {
            unreachable!()
        };
        let w = to_array(l.weight.val().transpose());
        let s = fasterai_core::linalg::singular_values(&w).unwrap();
        let total: f64 = s.iter().map(|v| v * v).sum();
        let energy = |k: usize| s[..k].iter().map(|v| v * v).sum::<f64>() / total;
        assert!(
            energy(row.rank) >= 0.5 && energy(row.rank - 1) < 0.5,
            "{row:?}"
        );
        let expected_error = (1.0 - energy(row.rank)).sqrt();
        assert!(
            (row.weight_error - expected_error).abs() < 1e-4,
            "{row:?} vs {expected_error}"
        );
    }
    let (_, _, bias) = factors(&out, "0");
    let zeros: f32 = bias.unwrap().abs().sum().into_scalar();
    assert_eq!(zeros, 0.0);
    let x = Tensor::<2>::random([5, 64], Distribution::Normal(0.0, 1.0), &d);
    assert_eq!(out.forward(x).dims(), vec![5, 40]);
}

#[test]
fn bad_requests_are_clear_errors() {
    let mut net = Graph::indexed([linear(8, 6, true), Layer::ReLU(ReLU {}), linear(6, 4, true)]);
    let run = |net: &Graph, rank, layers: &[&str]| {
        let config =
            LinearSvdConfig::new(rank).with_layers(layers.iter().map(|s| s.to_string()).collect());
        factorize_linears(net, &config, None)
            .map(|_| ())
            .unwrap_err()
    };
    for p in [1.0, -0.1, f64::NAN] {
        assert!(
            matches!(
                run(&net, LinearRank::PercentRemoved(p), &[]),
                DecomposeError::InvalidRank(_)
            ),
            "{p}"
        );
    }
    assert!(matches!(
        run(&net, LinearRank::Rank(0), &[]),
        DecomposeError::InvalidRank(_)
    ));
    let err = run(&net, LinearRank::Rank(7), &["0"]);
    assert!(err.to_string().contains("outside 1..=6"), "{err}");
    assert!(matches!(
        run(&net, LinearRank::Energy(0.0), &[]),
        DecomposeError::InvalidRank(_)
    ));
    let err = run(&net, LinearRank::Rank(1), &["5"]);
    assert!(err.to_string().contains("no layer at path `5`"), "{err}");
    let err = run(&net, LinearRank::Rank(1), &["1"]);
    assert!(
        matches!(err, DecomposeError::WrongLayerType { kind: "ReLU", .. }),
        "{err}"
    );

    // A NaN weight is reported with the layer's path.
    if let Some(Layer::Linear(fc)) = net.get_mut("2") {
        let w = fc.weight.val().dims();
        fc.weight = Param::from_tensor(Tensor::<2>::full(w, f32::NAN, &device()));
    }
    let err = run(&net, LinearRank::Rank(1), &["2"]);
    assert!(
        err.to_string().contains("`2`") && err.to_string().contains("NaN"),
        "{err}"
    );
    // A model without a Linear: an error, not an unchanged copy.
    let convs = Graph::indexed([Layer::from_spec(
        &LayerSpec::conv3x3(3, 4),
        InitScheme::PyTorchDefault,
        &device(),
    )]);
    let err = factorize_linears(&convs, &LinearSvdConfig::new(LinearRank::Rank(2)), None)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, DecomposeError::NothingToDo(_)), "{err}");
    assert!(err.to_string().contains("no Linear"), "{err}");
}
