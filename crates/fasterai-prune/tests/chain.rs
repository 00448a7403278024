//! Seed 004's chain on VGG16-bn (10 classes, 224²), exactly: sparsify 40 % of filters (local,
//! L1; a layer of n filters loses floor(0.4·n)) and prune → 83,975,344 → fold → 83,970,260 →
//! FC SVD (percent_removed 0.5) → 61,430,022; outputs unchanged by the prune and fold steps.

use burn::tensor::{Distribution, Tensor};
use fasterai_core::graph::ops::Conv2dSpec;
use fasterai_core::prelude::*;
use fasterai_core::summary::count_parameters;
use fasterai_core::testing::{randomize_batch_norms, relative_max_diff, tiny_cnn};
use fasterai_decompose::linear::{LinearRank, LinearSvdConfig, factorize_linears};
use fasterai_fold::fold_batch_norms;
use fasterai_models::{VggConfig, VggDepth};
use fasterai_prune::prune_zeroed;
use fasterai_sparsify::{Granularity, Sparsifier, SparsifyConfig};

fn outputs(net: &Graph, x: &Tensor<4>) -> Tensor<2> {
    net.forward(x.clone()).flatten()
}

#[test]
fn seed_004_parameter_chain_is_exact_and_lossless() {
    let device = parse_device("flex").unwrap();
    device.seed(4);
    let mut model = VggConfig::new(VggDepth::Vgg16, true, 10)
        .init(&device)
        .unwrap();
    randomize_batch_norms(&mut model.net, &device);
    assert_eq!(count_parameters(&model.net), 134_309_962);

    let mut sparsifier =
        Sparsifier::new(&model.net, SparsifyConfig::new(Granularity::Filter)).unwrap();
    let report = sparsifier.prune(&mut model.net, 0.4).unwrap();
    for layer in &report {
        assert_eq!(layer.zero_groups, layer.groups * 2 / 5, "{}", layer.path);
    }
    let x = Tensor::<4>::random([1, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let sparse_y = outputs(&model.net, &x);

    let (pruned, prune_report) = prune_zeroed(&model).unwrap();
    assert_eq!(count_parameters(&pruned.net), 83_975_344, "{prune_report}");
    let Layer::Linear(fc) = pruned.net.layer("classifier.0").unwrap() else {
        panic!()
    };
    assert_eq!(fc.weight.dims(), [308 * 7 * 7, 4096]);
    let pruned_y = outputs(&pruned.net, &x);
    let e = relative_max_diff(pruned_y.clone(), sparse_y);
    assert!(e < 1e-4, "pruning changed outputs by {e}");

    let (folded, _) = fold_batch_norms(&pruned.net).unwrap();
    assert_eq!(count_parameters(&folded), 83_970_260);
    let e = relative_max_diff(outputs(&folded, &x), pruned_y);
    assert!(e < 1e-4, "folding changed outputs by {e}");

    let (factorised, _) = factorize_linears(
        &folded,
        &LinearSvdConfig::new(LinearRank::PercentRemoved(0.5)),
        None,
    )
    .unwrap();
    assert_eq!(count_parameters(&factorised), 61_430_022);
}

#[test]
fn pruning_a_trained_style_small_model_is_lossless() {
    let device = parse_device("flex").unwrap();
    device.seed(7);
    let mut net = tiny_cnn(3, 5, &device);
    randomize_batch_norms(&mut net, &device);
    let mut model = Model::new("tiny", vec![3, 16, 16], net).unwrap();
    let mut config = SparsifyConfig::new(Granularity::Filter);
    config.layers = vec!["0".into(), "4".into()];
    let mut sparsifier = Sparsifier::new(&model.net, config).unwrap();
    sparsifier.prune(&mut model.net, 0.5).unwrap();
    // Zero one hidden unit of the first Linear (weights and bias): its row goes too.
    if let Some(Layer::Linear(l)) = model.net.get_mut("9") {
        let [i, o] = l.weight.dims();
        let mask = Tensor::<2>::ones([i, o], &device)
            .slice_assign([0..i, 3..4], Tensor::zeros([i, 1], &device));
        l.weight = burn::module::Param::from_tensor(l.weight.val() * mask);
        let b = l.bias.as_ref().unwrap().val();
        let keep = Tensor::<1>::from_data(
            burn::tensor::TensorData::new(
                (0..o)
                    .map(|j| if j == 3 { 0.0f32 } else { 1.0 })
                    .collect::<Vec<_>>(),
                [o],
            ),
            &device,
        );
        l.bias = Some(burn::module::Param::from_tensor(b * keep));
    }
    let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let before = outputs(&model.net, &x);
    let (pruned, report) = prune_zeroed(&model).unwrap();
    let shapes: Vec<_> = report
        .layers
        .iter()
        .map(|l| (l.path.as_str(), l.after.clone()))
        .collect();
    assert!(shapes.contains(&("0", vec![4, 3, 3, 3])), "{report}");
    assert!(shapes.contains(&("4", vec![8, 4, 3, 3])), "{report}");
    assert!(shapes.contains(&("9", vec![31, 8 * 4 * 4])), "{report}");
    assert!(shapes.contains(&("12", vec![5, 31])), "{report}");
    assert_eq!(count_parameters(&pruned.net), report.params_after);
    let e = relative_max_diff(outputs(&pruned.net, &x), before);
    assert!(e < 1e-5, "{e}");
    // Nothing zero: nothing changes.
    let (same, report) = prune_zeroed(&pruned).unwrap();
    assert!(report.layers.is_empty());
    assert_eq!(count_parameters(&same.net), count_parameters(&pruned.net));
}

#[test]
fn zeros_read_by_a_grouped_conv_stay_and_the_report_says_why() {
    let device = parse_device("flex").unwrap();
    let specs = [
        LayerSpec::conv3x3(3, 4),
        LayerSpec::relu(),
        LayerSpec::Conv2d(Conv2dSpec {
            in_channels: 4,
            out_channels: 4,
            kernel_size: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 2,
            bias: true,
        }),
    ];
    let net = Graph::indexed(
        specs
            .iter()
            .map(|s| Layer::from_spec(s, InitScheme::PyTorchDefault, &device)),
    );
    let mut model = Model::new("g", vec![3, 8, 8], net).unwrap();
    let mut config = SparsifyConfig::new(Granularity::Filter);
    config.layers = vec!["0".into()];
    Sparsifier::new(&model.net, config)
        .unwrap()
        .prune(&mut model.net, 0.5)
        .unwrap();
    let (same, report) = prune_zeroed(&model).unwrap();
    assert!(report.layers.is_empty(), "{report}");
    assert_eq!(count_parameters(&same.net), count_parameters(&model.net));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("2 zero channel(s) made by 0")
                && n.contains("mixes channels in groups")),
        "{report}"
    );
}
