//! Seed 004's chain on VGG16-bn (10 classes, 224²), exactly: sparsify 40 % of filters (local,
//! L1; a layer of n filters loses floor(0.4·n)) and prune → 83,975,344 → fold → 83,970,260 →
//! FC SVD (percent_removed 0.5) → 61,430,022; outputs unchanged by the prune and fold steps.
//! Then the branched families: coupled filter sparsity pruned losslessly, group-importance
//! pruning, the Conv → ReLU → BN leak, and bad requests.

use burn::module::Param;
use burn::tensor::{Distribution, Tensor, TensorData};
use fasterai_core::graph::GraphBuilder;
use fasterai_core::graph::coupling::Coupling;
use fasterai_core::graph::ops::Conv2dSpec;
use fasterai_core::prelude::*;
use fasterai_core::summary::count_parameters;
use fasterai_core::testing::{
    Block, BranchedPlan, branched_spec, random_graph, randomize_batch_norms, relative_max_diff,
    tiny_cnn,
};
use fasterai_decompose::linear::{LinearRank, LinearSvdConfig, factorize_linears};
use fasterai_fold::fold_batch_norms;
use fasterai_models::{Builtin, VggConfig, VggDepth};
use fasterai_prune::{GroupCriterion, GroupPruneConfig, PruneContext, prune_groups, prune_zeroed};
use fasterai_sparsify::{Granularity, Sparsifier, SparsifyConfig};
use proptest::prelude::*;

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

    let mut sparsifier = Sparsifier::new(
        &model.net,
        &model.input_shape,
        SparsifyConfig::new(Granularity::Filter),
    )
    .unwrap();
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
    let mut sparsifier = Sparsifier::new(&model.net, &model.input_shape, config).unwrap();
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
    Sparsifier::new(&model.net, &model.input_shape, config)
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

/// A built-in family for 32×32 inputs and 10 classes, random weights, non-trivial BN statistics.
fn family(name: &str, device: &Device) -> Model {
    let mut model = name
        .parse::<Builtin>()
        .unwrap()
        .with_num_classes(10)
        .with_input_shape([3, 32, 32])
        .init(device)
        .unwrap();
    randomize_batch_norms(&mut model.net, device);
    model
}

#[test]
fn coupled_filter_sparsity_prunes_every_family_losslessly() {
    let device = parse_device("flex").unwrap();
    device.seed(10);
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    for name in [
        "resnet20",
        "resnet18",
        "resnet50",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "efficientnet_b0",
    ] {
        let mut model = family(name, &device);
        let mut sparsifier = Sparsifier::new(
            &model.net,
            &model.input_shape,
            SparsifyConfig::new(Granularity::Filter),
        )
        .unwrap();
        sparsifier.prune(&mut model.net, 0.3).unwrap();
        let sparse_y = outputs(&model.net, &x);
        let (pruned, report) = prune_zeroed(&model).unwrap();
        // Every prunable group with a sparsified producer lost its 30 %.
        let coupling = Coupling::new(&model.net, &model.input_shape).unwrap();
        for g in coupling.groups.iter().filter(|g| g.prunable()) {
            let removed = report
                .groups
                .iter()
                .find(|r| r.id == g.id)
                .map_or(0, |r| r.removed);
            let convs = g
                .producers
                .iter()
                .all(|p| model.net.layer(p).unwrap().kind() == "Conv2d");
            if convs {
                assert_eq!(
                    removed,
                    g.channels * 3 / 10,
                    "{name}: group {} {:?}",
                    g.id,
                    g.producers
                );
            }
        }
        assert!(report.params_after < report.params_before, "{name}");
        assert!(report.macs_after < report.macs_before, "{name}");
        assert_eq!(count_parameters(&pruned.net), report.params_after);
        let e = relative_max_diff(outputs(&pruned.net, &x), sparse_y);
        assert!(e < 1e-4, "{name}: pruning changed outputs by {e}");
    }
}

#[test]
fn a_zero_filter_before_relu_then_batch_norm_stays_until_the_norm_is_zero() {
    let device = parse_device("flex").unwrap();
    let mut g = GraphBuilder::new();
    g.then("conv", LayerSpec::conv(3, 6, 3, 1));
    g.then("relu", LayerSpec::relu());
    g.then("bn", LayerSpec::batch_norm(6));
    g.then("conv2", LayerSpec::conv(6, 4, 3, 1));
    g.then("pool", LayerSpec::global_avg_pool());
    g.then("flatten", LayerSpec::flatten());
    g.then("fc", LayerSpec::linear(4, 2));
    let net = random_graph(&g.build(), &device);
    let mut model = Model::new("leak", vec![3, 8, 8], net).unwrap();
    let x = Tensor::<4>::random([3, 3, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    // Zero filter 2 of `conv` only: the BN turns it into β − μγ/√(σ²+ε) ≠ 0.
    let keep = |n: usize, dead: usize| {
        Tensor::<1>::from_data(
            TensorData::new(
                (0..n).map(|c| f32::from(c != dead)).collect::<Vec<_>>(),
                [n],
            ),
            &device,
        )
    };
    if let Some(Layer::Conv2d(c)) = model.net.get_mut("conv") {
        c.weight = Param::from_tensor(c.weight.val() * keep(6, 2).reshape([6, 1, 1, 1]));
    }
    let y = outputs(&model.net, &x);
    let (same, report) = prune_zeroed(&model).unwrap();
    assert!(report.layers.is_empty(), "{report}");
    assert!(relative_max_diff(outputs(&same.net, &x), y.clone()) < 1e-6);
    // With γ and β of that channel zero too, it carries zero and goes.
    if let Some(Layer::BatchNorm2d(bn)) = model.net.get_mut("bn") {
        bn.gamma = Param::from_tensor(bn.gamma.val() * keep(6, 2));
        bn.beta = Param::from_tensor(bn.beta.val() * keep(6, 2));
    }
    let y = outputs(&model.net, &x);
    let (pruned, report) = prune_zeroed(&model).unwrap();
    let Layer::Conv2d(conv2) = pruned.net.layer("conv2").unwrap() else {
        panic!()
    };
    assert_eq!(conv2.weight.dims(), [4, 5, 3, 3], "{report}");
    assert!(relative_max_diff(outputs(&pruned.net, &x), y) < 1e-5);
}

#[test]
fn group_pruning_shrinks_branched_models_and_keeps_their_interfaces() {
    let device = parse_device("flex").unwrap();
    device.seed(11);
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let cases = [
        (0.3, PruneContext::Local, GroupCriterion::L1),
        (0.5, PruneContext::Global, GroupCriterion::L2),
    ];
    for name in ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small"] {
        let model = family(name, &device);
        for (ratio, context, criterion) in cases {
            let config = GroupPruneConfig {
                context,
                criterion,
                ..GroupPruneConfig::new(ratio)
            };
            let (pruned, report) = prune_groups(&model, &config).unwrap();
            let what = format!("{name} {ratio} {context:?} {criterion:?}");
            assert!(report.params_after < report.params_before, "{what}");
            assert!(report.macs_after < report.macs_before, "{what}");
            assert_eq!(
                pruned.net.output_shape(&[3, 32, 32]).unwrap(),
                vec![10],
                "{what}"
            );
            assert_eq!(outputs(&pruned.net, &x).dims(), [2, 10], "{what}");
            if context == PruneContext::Local {
                // Every prunable group lost floor(30 %) of its channels.
                let coupling = Coupling::new(&model.net, &model.input_shape).unwrap();
                let prunable = coupling.groups.iter().filter(|g| g.prunable()).count();
                assert_eq!(report.groups.len(), prunable, "{what}");
                for g in &report.groups {
                    assert_eq!(g.removed, g.of * 3 / 10, "{what}: group {}", g.id);
                }
            }
        }
    }
    // A ratio that would empty every group, and an unknown layer to ignore, are errors.
    let model = family("resnet20", &device);
    let err = prune_groups(&model, &GroupPruneConfig::new(1.0)).unwrap_err();
    assert!(err.to_string().contains("ratio 1"), "{err}");
    let config = GroupPruneConfig {
        ignored: vec!["layer9.conv".into()],
        ..GroupPruneConfig::new(0.3)
    };
    let err = prune_groups(&model, &config).unwrap_err();
    assert!(err.to_string().contains("layer9.conv"), "{err}");
}

#[test]
fn ignored_layers_keep_their_channels() {
    let device = parse_device("flex").unwrap();
    let model = family("resnet20", &device);
    let config = GroupPruneConfig {
        ignored: vec!["conv1".into()],
        ..GroupPruneConfig::new(0.5)
    };
    let (pruned, _) = prune_groups(&model, &config).unwrap();
    let Layer::Conv2d(stem) = pruned.net.layer("conv1").unwrap() else {
        panic!()
    };
    assert_eq!(stem.weight.dims()[0], 16);
    let Layer::Conv2d(inner) = pruned.net.layer("layer1.0.conv1").unwrap() else {
        panic!()
    };
    assert_eq!(inner.weight.dims()[0], 8);
}

fn block() -> impl Strategy<Value = Block> {
    let width = 3..9usize;
    prop_oneof![
        Just(Block::Residual),
        (width.clone(), 2..6usize).prop_map(|(width, other)| Block::Concat { width, other }),
        (width.clone(), 2..5usize).prop_map(|(width, squeeze)| Block::Inverted { width, squeeze }),
        width.clone().prop_map(|width| Block::Down { width }),
        width.prop_map(|width| Block::Late { width }),
    ]
}

fn plan() -> impl Strategy<Value = BranchedPlan> {
    (
        1..4usize,
        4..9usize,
        prop::collection::vec(block(), 1..5),
        any::<bool>(),
        3..7usize,
    )
        .prop_map(|(in_channels, stem, blocks, pool, classes)| BranchedPlan {
            in_channels,
            stem,
            blocks,
            pool,
            classes,
        })
}

proptest! {
    // 24 graphs per run (new ones each run; a failure shrinks to the smallest plan that fails).
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Invariants on random branched graphs (residual, concat, depthwise + SE, strided,
    /// Conv → ReLU → BN; random widths and weights): a save/load round trip is exact; folding is
    /// lossless; coupled filter sparsity at a random ratio then `prune_zeroed` is lossless and
    /// shrinks the model; group pruning keeps the interfaces.
    #[test]
    fn random_branched_graphs_keep_their_invariants(
        plan in plan(),
        seed in any::<u64>(),
        ratio in 0.4..0.7f64,
    ) {
        let device = parse_device("flex").unwrap();
        device.seed(seed);
        let (spec, input) = branched_spec(&plan);
        let model = Model::new("random", input.to_vec(), random_graph(&spec, &device)).unwrap();
        let x = Tensor::<4>::random([2, input[0], 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let y = outputs(&model.net, &x);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        fasterai_core::io::save_model(&model, &path, false).unwrap();
        let loaded = fasterai_core::io::load_model(&path, &device).unwrap();
        let same = outputs(&loaded.net, &x).equal(y.clone()).all().into_scalar::<bool>();
        prop_assert!(same, "round trip changed the outputs");

        let (folded, _) = fold_batch_norms(&model.net).unwrap();
        let e = relative_max_diff(outputs(&folded, &x), y.clone());
        prop_assert!(e < 1e-4, "fold: {e}");

        let mut sparse = model.clone();
        Sparsifier::new(&sparse.net, &sparse.input_shape, SparsifyConfig::new(Granularity::Filter))
            .unwrap()
            .prune(&mut sparse.net, ratio)
            .unwrap();
        let sparse_y = outputs(&sparse.net, &x);
        let (pruned, report) = prune_zeroed(&sparse).unwrap();
        // The stem has 4+ filters: at 40 % or more, some are zeroed and removed.
        prop_assert!(report.params_after < report.params_before, "nothing pruned:\n{report}");
        let e = relative_max_diff(outputs(&pruned.net, &x), sparse_y);
        prop_assert!(e < 1e-4, "prune: {e}\n{report}");

        let (smaller, _) = prune_groups(&model, &GroupPruneConfig::new(ratio)).unwrap();
        prop_assert_eq!(outputs(&smaller.net, &x).dims(), [2, plan.classes]);
    }
}
