//! Granularities zero exactly their groups, local and global reach their targets, schedules
//! follow their formulas, N:M keeps n of every m, and bad requests are clear errors.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use fasterai_core::graph::ops::{Conv2dSpec, LinearSpec};
use fasterai_core::prelude::*;
use fasterai_models::{VggConfig, VggDepth};
use fasterai_sparsify::mask::{Groups, groups_to_remove};
use fasterai_sparsify::sparsifier::{Context, torch_weights};
use fasterai_sparsify::{
    Criterion, Granularity, Schedule, ScheduleKind, Sparsifier, SparsifyConfig, SparsifyError,
};

/// A conv [out 4, in 3, 2, 2] whose weight at [o, i, h, w] is `value(o, i, h, w)`.
fn conv_net(value: impl Fn(usize, usize, usize, usize) -> f32) -> Graph {
    let device = parse_device("flex").unwrap();
    let spec = LayerSpec::Conv2d(Conv2dSpec {
        in_channels: 3,
        out_channels: 4,
        kernel_size: [2, 2],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        groups: 1,
        bias: false,
    });
    let Layer::Conv2d(mut conv) = Layer::from_spec(&spec, InitScheme::PyTorchDefault, &device)
    else {
        unreachable!()
    };
    let mut data = Vec::new();
    for o in 0..4 {
        for i in 0..3 {
            for h in 0..2 {
                for w in 0..2 {
                    data.push(value(o, i, h, w));
                }
            }
        }
    }
    conv.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(data, [4, 3, 2, 2]),
        &device,
    ));
    Graph::indexed([Layer::Conv2d(conv)])
}

fn weights(net: &Graph) -> Vec<f32> {
    match net.layer("0").unwrap() {
        Layer::Conv2d(c) => c.weight.val().into_data().try_to_vec::<f32>().unwrap(),
        _ => unreachable!(),
    }
}

fn zeroed(net: &Graph, o: usize, i: usize, h: usize, w: usize) -> bool {
    weights(net)[((o * 3 + i) * 2 + h) * 2 + w] == 0.0
}

#[test]
fn each_granularity_zeroes_exactly_its_weakest_groups() {
    // Magnitudes grow with every index, so the weakest group is the one at index 0 of the
    // dimensions the granularity keeps: |w| = 1 + 1000·o + 100·i + 10·h + w.
    let value = |o: usize, i: usize, h: usize, w: usize| {
        (1 + 1000 * o + 100 * i + 10 * h + w) as f32
            * if (o + i + h + w).is_multiple_of(2) {
                1.0
            } else {
                -1.0
            }
    };
    // For each granularity: which dimensions index its groups (the others are reduced over).
    let cases: [(Granularity, [bool; 4]); 16] = [
        (Granularity::Weight, [true, true, true, true]),
        (Granularity::SharedWeight, [false, true, true, true]),
        (Granularity::Channel, [true, false, true, true]),
        (Granularity::Column, [true, true, false, true]),
        (Granularity::Row, [true, true, true, false]),
        (Granularity::Kernel, [true, true, false, false]),
        (Granularity::Filter, [true, false, false, false]),
        (Granularity::SharedChannel, [false, false, true, true]),
        (Granularity::SharedColumn, [false, true, false, true]),
        (Granularity::SharedRow, [false, true, true, false]),
        (Granularity::VerticalSlice, [true, false, false, true]),
        (Granularity::HorizontalSlice, [true, false, true, false]),
        (
            Granularity::SharedVerticalSlice,
            [false, false, false, true],
        ),
        (
            Granularity::SharedHorizontalSlice,
            [false, false, true, false],
        ),
        (Granularity::SharedKernel, [false, true, false, false]),
        (Granularity::Layer, [false, false, false, false]),
    ];
    for (g, kept_dims) in cases {
        let mut net = conv_net(value);
        let groups = Groups::new(&[4, 3, 2, 2], g.reduced_dims(4).unwrap()).count();
        // Remove exactly one group (the layer granularity has one group: remove it all).
        let sparsity = if groups == 1 {
            0.0
        } else {
            1.0 / groups as f64 + 1e-9
        };
        let mut s = Sparsifier::new(&net, &[3, 4, 4], SparsifyConfig::new(g)).unwrap();
        let report = s.prune(&mut net, sparsity).unwrap();
        if groups == 1 {
            assert_eq!(report[0].zero_groups, 0, "{g}");
            continue;
        }
        assert_eq!(report[0].zero_groups, 1, "{g}");
        for o in 0..4 {
            for i in 0..3 {
                for h in 0..2 {
                    for w in 0..2 {
                        let idx = [o, i, h, w];
                        let in_weakest = (0..4).all(|d| !kept_dims[d] || idx[d] == 0);
                        assert_eq!(zeroed(&net, o, i, h, w), in_weakest, "{g} at {idx:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn layer_granularity_in_global_context_zeroes_the_weaker_layer() {
    let device = parse_device("flex").unwrap();
    device.seed(3);
    let mut net = fasterai_core::testing::tiny_cnn(3, 5, &device);
    let mean_abs = |net: &Graph, p: &str| {
        let w = torch_weights(net.layer(p).unwrap());
        w.iter().map(|v| v.abs()).sum::<f32>() / w.len() as f32
    };
    let (a, b) = (mean_abs(&net, "0"), mean_abs(&net, "4"));
    let config = SparsifyConfig {
        context: Context::Global,
        ..SparsifyConfig::new(Granularity::Layer)
    };
    let mut s = Sparsifier::new(&net, &[3, 16, 16], config).unwrap();
    let report = s.prune(&mut net, 0.5).unwrap();
    let weaker = if a < b { "0" } else { "4" };
    for layer in &report {
        let dead = layer.path == weaker;
        assert_eq!(
            layer.zero_groups,
            usize::from(dead),
            "{layer:?} ({a} vs {b})"
        );
        assert_eq!(layer.sparsity, if dead { 1.0 } else { 0.0 }, "{layer:?}");
    }
}

#[test]
fn linear_granularities_and_type_errors() {
    assert_eq!(Granularity::Column.reduced_dims(2).unwrap(), &[0]);
    assert_eq!(Granularity::Row.reduced_dims(2).unwrap(), &[1]);
    let err = Granularity::Filter.reduced_dims(2).unwrap_err();
    assert!(
        matches!(err, SparsifyError::Granularity { .. })
            && err.to_string().contains("weight, column, row, layer"),
        "{err}"
    );
    assert!("kernel".parse::<Granularity>().is_ok());
    assert!("blob".parse::<Granularity>().is_err());
    assert_eq!("l1".parse::<Criterion>().unwrap(), Criterion::LargeFinal);
}

#[test]
fn local_and_global_reach_their_targets() {
    let device = parse_device("flex").unwrap();
    device.seed(2);
    let mut model = VggConfig::small(VggDepth::Vgg11, true, 10, [3, 32, 32])
        .with_width(0.25)
        .init(&device)
        .unwrap();
    let mut config = SparsifyConfig::new(Granularity::Filter);
    config.round_to = 1;
    let mut s = Sparsifier::new(&model.net, &model.input_shape, config.clone()).unwrap();
    for layer in s.prune(&mut model.net, 0.3).unwrap() {
        // floor(30 %) of each layer's filters (fasterai's count is one more; seed 004's rule).
        assert_eq!(layer.zero_groups, layer.groups * 3 / 10, "{}", layer.path);
    }
    let mut global = config.clone();
    global.context = Context::Global;
    let mut model = VggConfig::small(VggDepth::Vgg11, true, 10, [3, 32, 32])
        .with_width(0.25)
        .init(&device)
        .unwrap();
    let mut s = Sparsifier::new(&model.net, &model.input_shape, global.clone()).unwrap();
    // Every filter's mean |w| before, across all layers.
    let paths = s.paths().to_vec();
    let filter_scores = |net: &Graph| -> Vec<(String, Vec<f32>)> {
        paths
            .iter()
            .map(|p| {
                let w = torch_weights(net.layer(p).unwrap());
                let out = match net.layer(p).unwrap() {
                    Layer::Conv2d(c) => c.weight.dims()[0],
                    _ => unreachable!(),
                };
                let per = w.len() / out;
                let means = w
                    .chunks(per)
                    .map(|f| f.iter().map(|v| v.abs()).sum::<f32>() / per as f32);
                (p.clone(), means.collect())
            })
            .collect()
    };
    let before = filter_scores(&model.net);
    let report = s.prune(&mut model.net, 0.5).unwrap();
    let total: usize = report.iter().map(|l| l.groups).sum();
    let zero: usize = report.iter().map(|l| l.zero_groups).sum();
    assert_eq!(zero, total / 2);
    // One threshold for all layers: every removed filter scored below every kept one, and the
    // layers lost different fractions (a local rule would take half of each).
    let after = filter_scores(&model.net);
    let (mut removed_max, mut kept_min) = (0f32, f32::MAX);
    for ((_, b), (_, a)) in before.iter().zip(&after) {
        for (score, now) in b.iter().zip(a) {
            if *now == 0.0 {
                removed_max = removed_max.max(*score);
            } else {
                kept_min = kept_min.min(*score);
            }
        }
    }
    assert!(removed_max <= kept_min, "{removed_max} > {kept_min}");
    assert!(
        report.iter().any(|l| l.zero_groups * 2 != l.groups),
        "{report:?}"
    );
    global.round_to = 8;
    let err = Sparsifier::new(&model.net, &model.input_shape, global).unwrap_err();
    assert!(err.to_string().contains("local context"), "{err}");
    // round_to: the kept count is a multiple of 8.
    let mut rounded = config;
    rounded.round_to = 8;
    let mut model = VggConfig::small(VggDepth::Vgg11, true, 10, [3, 32, 32])
        .with_width(0.25)
        .init(&device)
        .unwrap();
    let mut s = Sparsifier::new(&model.net, &model.input_shape, rounded).unwrap();
    for layer in s.prune(&mut model.net, 0.3).unwrap() {
        assert_eq!((layer.groups - layer.zero_groups) % 8, 0, "{}", layer.path);
    }
    assert_eq!(groups_to_remove(64, 0.4, 1), 25);
    assert_eq!(groups_to_remove(64, 0.4, 8), 24);
}

#[test]
fn n_of_m_keeps_the_two_largest_of_every_four() {
    let mut net = conv_net(|o, i, h, w| (o * 12 + i * 4 + h * 2 + w) as f32 % 7.0 + 1.0);
    let mut config = SparsifyConfig::new(Granularity::Weight);
    config.n_of_m = Some((2, 4));
    let before = weights(&net);
    Sparsifier::new(&net, &[3, 4, 4], config)
        .unwrap()
        .prune(&mut net, 0.0)
        .unwrap();
    let after = weights(&net);
    for (b, a) in before.chunks(4).zip(after.chunks(4)) {
        assert_eq!(a.iter().filter(|&&v| v != 0.0).count(), 2);
        let mut sorted = b.to_vec();
        sorted.sort_by(|x, y| y.total_cmp(x));
        for &v in a.iter().filter(|&&v| v != 0.0) {
            assert!(v >= sorted[1]);
        }
    }
    // 3 inputs × 2 × 2 = 12 per output: 8:16 cannot apply.
    let mut bad = SparsifyConfig::new(Granularity::Weight);
    bad.n_of_m = Some((8, 16));
    let mut net = conv_net(|_, _, _, _| 1.0);
    let err = Sparsifier::new(&net, &[3, 4, 4], bad)
        .unwrap()
        .prune(&mut net, 0.0)
        .unwrap_err();
    assert!(err.to_string().contains("multiple of 16"), "{err}");
}

#[test]
fn schedules_follow_their_formulas() {
    let target = 0.8;
    let agp = Schedule::new(ScheduleKind::Agp).window(0.2, 1.0);
    assert_eq!(agp.at(target, 0.1), 0.0);
    // Zhu & Gupta's cubic, worked by hand: s = 0.8·(1 − (1 − (t − 0.2)/0.8)³).
    for (t, expected) in [(0.2, 0.0), (0.4, 0.4625), (0.6, 0.7), (1.0, 0.8)] {
        assert!((agp.at(target, t) - expected).abs() < 1e-12, "t = {t}");
    }
    let it = Schedule::new(ScheduleKind::Iterative { steps: 4 }).window(0.0, 1.0);
    assert!((it.at(target, 0.3) - 0.4).abs() < 1e-12);
    assert!((it.at(target, 1.0) - target).abs() < 1e-12);
    let one = Schedule::new(ScheduleKind::OneShot);
    assert_eq!((one.at(target, 0.49), one.at(target, 0.5)), (0.0, target));
    let cos = Schedule::new(ScheduleKind::Cos);
    assert!((cos.at(target, 0.5) - target / 2.0).abs() < 1e-12);
    let lin = Schedule::new(ScheduleKind::Lin);
    assert!((lin.at(target, 0.25) - target / 4.0).abs() < 1e-12);
    let dsd = Schedule::new(ScheduleKind::Dsd);
    assert!((dsd.at(target, 0.5) - target).abs() < 1e-12 && dsd.at(target, 1.0).abs() < 1e-12);
    let oc = Schedule::new(ScheduleKind::OneCycle);
    assert!(oc.at(target, 0.0).abs() < 0.01 && (oc.at(target, 1.0) - target).abs() < 1e-12);
}

#[test]
fn bad_requests_are_clear_errors() {
    let mut net = conv_net(|_, _, _, _| 1.0);
    let mut s =
        Sparsifier::new(&net, &[3, 4, 4], SparsifyConfig::new(Granularity::Filter)).unwrap();
    assert!(matches!(
        s.prune(&mut net, 1.0),
        Err(SparsifyError::Config(_))
    ));
    assert!(s.prune(&mut net, -0.1).is_err());
    let mut unknown = SparsifyConfig::new(Granularity::Filter);
    unknown.layers = vec!["features.3".into()];
    assert!(Sparsifier::new(&net, &[3, 4, 4], unknown).is_err());
    let mut init = SparsifyConfig::new(Granularity::Filter);
    init.criterion = Criterion::Taylor;
    let mut s = Sparsifier::new(&net, &[3, 4, 4], init).unwrap();
    assert!(
        s.prune(&mut net, 0.5)
            .unwrap_err()
            .to_string()
            .contains("gradient")
    );
}

#[test]
fn wanda_and_taylor_use_their_calibration() {
    use burn::tensor::Int;
    let device = parse_device("flex").unwrap();
    // Flatten → Linear(4 → 2) with equal weights: only the inputs' scales tell columns apart.
    let specs = [
        LayerSpec::flatten(),
        LayerSpec::Linear(LinearSpec {
            in_features: 4,
            out_features: 2,
            bias: true,
        }),
    ];
    let mut net = Graph::indexed(
        specs
            .iter()
            .map(|s| Layer::from_spec(s, InitScheme::PyTorchDefault, &device)),
    );
    if let Some(Layer::Linear(l)) = net.get_mut("1") {
        l.weight = Param::from_tensor(Tensor::ones([4, 2], &device));
    }
    let scales = [4.0f32, 1.0, 3.0, 2.0];
    let images: Vec<f32> = (0..8)
        .flat_map(|n| scales.map(|s| s * if n % 2 == 0 { 1.0 } else { -1.0 }))
        .collect();
    let images = Tensor::<4>::from_data(TensorData::new(images, [8, 4, 1, 1]), &device);
    let mut config = SparsifyConfig::new(Granularity::Column);
    config.criterion = Criterion::Wanda;
    config.layers = vec!["1".into()];
    let mut s = Sparsifier::new(&net, &[4, 1, 1], config.clone()).unwrap();
    assert!(
        s.prune(&mut net.clone(), 0.25).is_err(),
        "Wanda without calibration must fail"
    );
    s.calibrate(&net, images.clone()).unwrap();
    s.prune(&mut net, 0.25).unwrap();
    // The column of the smallest input (feature 1) goes.
    assert_eq!(s.masks()["1"], vec![1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]);

    config.criterion = Criterion::Taylor;
    let mut s = Sparsifier::new(&net, &[4, 1, 1], config).unwrap();
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new(vec![0i64, 1, 0, 1, 0, 1, 0, 1], [8]),
        &device,
    );
    // Calibration data that does not fit: other image shape, labels beyond the outputs.
    let gray = Tensor::<4>::zeros([8, 1, 3, 3], &device);
    let err = s.calibrate(&net, gray).unwrap_err();
    assert!(err.to_string().contains("do not fit the model"), "{err}");
    let five = Tensor::<1, Int>::from_data(TensorData::new(vec![5i64; 8], [8]), &device);
    let err = s
        .calibrate_gradients(&net, images.clone(), five)
        .unwrap_err();
    assert!(err.to_string().contains("2 outputs"), "{err}");
    // The Taylor scores by hand: cross-entropy gradient of the Linear, (w·g)², column means.
    let Layer::Linear(l) = net.layer("1").unwrap() else {
        unreachable!()
    };
    let w = torch_weights(net.layer("1").unwrap()); // [out 2, in 4]
    let b = l
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let x = images.clone().into_data().try_to_vec::<f32>().unwrap(); // [8, 4]
    let mut g = [0f32; 8];
    for n in 0..8 {
        let logits: Vec<f32> = (0..2)
            .map(|o| b[o] + (0..4).map(|i| w[o * 4 + i] * x[n * 4 + i]).sum::<f32>())
            .collect();
        let z: f32 = logits.iter().map(|v| v.exp()).sum();
        for o in 0..2 {
            let p = logits[o].exp() / z - if o == n % 2 { 1.0 } else { 0.0 };
            for i in 0..4 {
                g[o * 4 + i] += p * x[n * 4 + i] / 8.0;
            }
        }
    }
    let column = |i: usize| {
        (0..2)
            .map(|o| (w[o * 4 + i] * g[o * 4 + i]).powi(2))
            .sum::<f32>()
    };
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|&a, &b| column(a).total_cmp(&column(b)));
    s.calibrate_gradients(&net, images, targets).unwrap();
    let report = s.prune(&mut net, 0.5).unwrap();
    assert_eq!(report[0].zero_groups, 2);
    let mask = &s.masks()["1"];
    for (rank, &i) in order.iter().enumerate() {
        let kept = rank >= 2;
        assert_eq!(mask[i] == 1.0, kept, "column {i}: score {}", column(i));
        assert_eq!(mask[4 + i] == 1.0, kept, "column {i}");
    }
}
