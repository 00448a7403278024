//! The distillation callback in the training loop: bad set-ups fail before training; logit and
//! feature losses train; FitNet's adapter learns.

use fasterai_core::graph::ops::LinearSpec;
use fasterai_core::graph::{Graph, InitScheme, Layer, LayerSpec};
use fasterai_core::prelude::*;
use fasterai_core::testing::tiny_cnn;
use fasterai_distill::{Distiller, KdLoss, KdWeight};
use fasterai_train::data::{Normalize, synthetic};
use fasterai_train::testing::{FailAt, bit_for_bit, serial_rng};
use fasterai_train::{TrainConfig, TrainError, fit};

fn narrow(device: &Device) -> Graph {
    let layers = [
        LayerSpec::conv3x3(3, 4),
        LayerSpec::relu(),
        LayerSpec::max_pool2(false),
        LayerSpec::conv3x3(4, 8),
        LayerSpec::relu(),
        LayerSpec::max_pool2(false),
        LayerSpec::flatten(),
        LayerSpec::Linear(LinearSpec {
            in_features: 8 * 4 * 4,
            out_features: 5,
            bias: true,
        }),
    ];
    Graph::indexed(
        layers
            .iter()
            .map(|s| Layer::from_spec(s, InitScheme::PyTorchDefault, device)),
    )
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: 32,
        lr: 0.05,
        progress: false,
        ..TrainConfig::default()
    }
}

#[test]
fn distillation_trains_with_every_loss() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    device.seed(5);
    let train = synthetic(96, 5, [3, 16, 16], 1).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let teacher = Model::new("teacher", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let student = Model::new("student", vec![3, 16, 16], narrow(&device)).unwrap();
    // Student `1` is [4, 16, 16]; teacher `2` is [8, 16, 16].
    let pairs = vec![("1".to_string(), "2".to_string())];
    let losses = [
        KdLoss::SoftTarget { temperature: 4.0 },
        KdLoss::LogitMse,
        KdLoss::MutualKl,
        KdLoss::Decoupled {
            alpha: 1.0,
            beta: 8.0,
            temperature: 4.0,
        },
        KdLoss::Attention {
            pairs: pairs.clone(),
            p: 2.0,
        },
        KdLoss::FitNet {
            pairs: pairs.clone(),
        },
        KdLoss::Similarity {
            pairs: pairs.clone(),
        },
    ];
    for loss in losses {
        let mut kd = Distiller::new(
            teacher.clone(),
            loss.clone(),
            KdWeight::Cosine {
                start: 0.9,
                end: 0.1,
            },
        );
        let (_, history) = fit(
            &student,
            &train,
            &train,
            &norm,
            &config(),
            &mut [&mut kd],
            &device,
        )
        .unwrap_or_else(|e| panic!("{loss:?}: {e}"));
        assert!(history.epochs[0].train_loss.is_finite(), "{loss:?}");
        if let KdLoss::FitNet { .. } = loss {
            let adapters = kd.adapters().unwrap();
            let Layer::Conv2d(conv) = adapters.layer("0").unwrap() else {
                unreachable!()
            };
            assert_eq!(conv.weight.dims(), [8, 4, 1, 1]);
        }
    }
    // Activation boundaries need equal shapes: teacher `2` against itself.
    let same = vec![("2".to_string(), "2".to_string())];
    let student_same = Model::new("s", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let mut kd = Distiller::new(
        teacher.clone(),
        KdLoss::ActivationBoundaries {
            pairs: same,
            margin: 1.0,
        },
        KdWeight::Constant(0.5),
    );
    fit(
        &student_same,
        &train,
        &train,
        &norm,
        &config(),
        &mut [&mut kd],
        &device,
    )
    .unwrap();
}

#[test]
fn fitnet_adapter_learns() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    let train = synthetic(64, 5, [3, 16, 16], 1).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let teacher = Model::new("teacher", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let student = Model::new("student", vec![3, 16, 16], narrow(&device)).unwrap();
    let pairs = vec![("1".to_string(), "2".to_string())];
    let weights = |kd: &Distiller| match kd.adapters().unwrap().layer("0").unwrap() {
        Layer::Conv2d(c) => c.weight.val().into_data().try_to_vec::<f32>().unwrap(),
        _ => unreachable!(),
    };
    let mut one = Distiller::new(
        teacher.clone(),
        KdLoss::FitNet {
            pairs: pairs.clone(),
        },
        KdWeight::Constant(0.5),
    );
    // One step of plain SGD; the adapter's initial weights come from the run's seed, so a run
    // with a zero weight (no hint gradient, no decay) keeps them: that shows where it began.
    let one_step = TrainConfig {
        batch_size: 64,
        optimizer: fasterai_train::learner::OptimizerKind::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        ..config()
    };
    let mut still = Distiller::new(
        teacher.clone(),
        KdLoss::FitNet { pairs },
        KdWeight::Constant(0.0),
    );
    fit(
        &student,
        &train,
        &train,
        &norm,
        &one_step,
        &mut [&mut still],
        &device,
    )
    .unwrap();
    fit(
        &student,
        &train,
        &train,
        &norm,
        &one_step,
        &mut [&mut one],
        &device,
    )
    .unwrap();
    assert_ne!(weights(&one), weights(&still), "the adapter did not train");
}

#[test]
fn mismatched_teacher_and_student_fail_before_training() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let train = synthetic(32, 5, [3, 16, 16], 1).unwrap();
    let teacher10 = Model::new("t", vec![3, 16, 16], tiny_cnn(3, 10, &device)).unwrap();
    let student = Model::new("s", vec![3, 16, 16], narrow(&device)).unwrap();
    let mut kd = Distiller::new(
        teacher10,
        KdLoss::SoftTarget { temperature: 4.0 },
        KdWeight::Constant(0.5),
    );
    let err = fit(
        &student,
        &train,
        &train,
        &norm,
        &config(),
        &mut [&mut kd],
        &device,
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::Config(_)) && err.to_string().contains("classes"),
        "{err}"
    );

    let teacher = Model::new("t", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let bad_path = KdLoss::Attention {
        pairs: vec![("1".into(), "features.99".into())],
        p: 2.0,
    };
    let mut kd = Distiller::new(teacher.clone(), bad_path, KdWeight::Constant(0.5));
    let err = fit(
        &student,
        &train,
        &train,
        &norm,
        &config(),
        &mut [&mut kd],
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("features.99"), "{err}");
    // Different spatial sizes for attention: student `1` is 16×16, teacher `4` is 8×8.
    let wrong = KdLoss::Attention {
        pairs: vec![("1".into(), "4".into())],
        p: 2.0,
    };
    let mut kd = Distiller::new(teacher.clone(), wrong, KdWeight::Constant(0.5));
    assert!(
        fit(
            &student,
            &train,
            &train,
            &norm,
            &config(),
            &mut [&mut kd],
            &device
        )
        .is_err()
    );
    // Activation boundaries need image features: `9` is a Linear's [32] on both sides.
    let twin = Model::new("twin", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let flat = KdLoss::ActivationBoundaries {
        pairs: vec![("9".into(), "9".into())],
        margin: 1.0,
    };
    let mut kd = Distiller::new(teacher.clone(), flat, KdWeight::Constant(0.5));
    let err = fit(
        &twin,
        &train,
        &train,
        &norm,
        &config(),
        &mut [&mut kd],
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("[C, H, W]"), "{err}");
    let mut kd = Distiller::new(
        teacher,
        KdLoss::SoftTarget { temperature: 4.0 },
        KdWeight::Constant(1.5),
    );
    let err = fit(
        &student,
        &train,
        &train,
        &norm,
        &config(),
        &mut [&mut kd],
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("[0, 1]"), "{err}");
}

#[test]
fn branched_teacher_and_student_pair_features_by_node_name() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    device.seed(6);
    let train = synthetic(64, 10, [3, 32, 32], 1).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let build = |name: &str| {
        name.parse::<fasterai_models::Builtin>()
            .unwrap()
            .with_num_classes(10)
            .with_input_shape([3, 32, 32])
    };
    let teacher = build("resnet20").init(&device).unwrap();
    let student = build("mobilenet_v2")
        .with_width(0.25)
        .unwrap()
        .init(&device)
        .unwrap();
    // Student's first residual sum [8, 16, 16]; teacher's last stage-2 block output [32, 16, 16].
    let pairs = vec![("features.1.add".to_string(), "layer2.2.relu_1".to_string())];
    for loss in [
        KdLoss::Attention {
            pairs: pairs.clone(),
            p: 2.0,
        },
        KdLoss::FitNet {
            pairs: pairs.clone(),
        },
    ] {
        let mut kd = Distiller::new(teacher.clone(), loss, KdWeight::Constant(0.5));
        let (_, history) = fit(
            &student,
            &train,
            &train,
            &norm,
            &config(),
            &mut [&mut kd],
            &device,
        )
        .unwrap();
        assert!(history.epochs[0].train_loss.is_finite(), "{history:?}");
    }
}

/// Mean squared difference of two `[N, K]` logit tensors after a softmax at temperature 4,
/// where the logit losses here act.
fn probability_gap(a: burn::tensor::Tensor<2>, b: burn::tensor::Tensor<2>) -> f32 {
    use burn::tensor::activation::softmax;
    (softmax(a / 4.0, 1) - softmax(b / 4.0, 1))
        .square()
        .mean()
        .into_scalar()
}

/// Mean squared difference of the channel-mean squared activations (an attention map computed
/// here, not by the loss), each map scaled to unit norm.
fn attention_gap(a: burn::tensor::Tensor<4>, b: burn::tensor::Tensor<4>) -> f32 {
    let map = |x: burn::tensor::Tensor<4>| {
        let m = x.square().mean_dim(1).flatten::<2>(1, 3);
        let norm = m.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        m / norm
    };
    (map(a) - map(b)).square().mean().into_scalar()
}

#[test]
fn each_loss_moves_the_student_toward_the_teacher() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    device.seed(8);
    let train = synthetic(128, 5, [3, 16, 16], 1).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let teacher = Model::new("teacher", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let student = Model::new("student", vec![3, 16, 16], narrow(&device)).unwrap();
    let images = train.batches(128, &norm, &device).next().unwrap().images;
    let pairs = vec![("1".to_string(), "2".to_string())];
    let paths = (vec!["1".to_string()], vec!["2".to_string()]);
    // (loss, gap between student and teacher, measured independently of the loss).
    let gap = |s: &Model, logits: bool| -> f32 {
        let (ys, fs) = s.net.forward_capture(images.clone(), &paths.0);
        let (yt, ft) = teacher.net.forward_capture(images.clone(), &paths.1);
        if logits {
            probability_gap(ys.flatten(), yt.flatten())
        } else {
            attention_gap(
                fs[0].clone().into_spatial().unwrap(),
                ft[0].clone().into_spatial().unwrap(),
            )
        }
    };
    let cases = [
        (KdLoss::SoftTarget { temperature: 4.0 }, true),
        (KdLoss::LogitMse, true),
        (KdLoss::MutualKl, true),
        (
            KdLoss::Decoupled {
                alpha: 1.0,
                beta: 1.0,
                temperature: 4.0,
            },
            true,
        ),
        (KdLoss::Attention { pairs, p: 2.0 }, false),
    ];
    let before = (gap(&student, true), gap(&student, false));
    let long = |lr: f64| TrainConfig {
        epochs: 4,
        lr,
        ..config()
    };
    for (loss, logits) in cases {
        // Distillation alone (weight 1): the labels play no part.
        let mut kd = Distiller::new(teacher.clone(), loss.clone(), KdWeight::Constant(1.0));
        // The attention term carries β = 10³: a smaller step.
        let lr = if logits { 0.05 } else { 0.005 };
        let (trained, _) = fit(
            &student,
            &train,
            &train,
            &norm,
            &long(lr),
            &mut [&mut kd],
            &device,
        )
        .unwrap_or_else(|e| panic!("{loss:?}: {e}"));
        let start = if logits { before.0 } else { before.1 };
        let end = gap(&trained, logits);
        // Decoupled KD weighs the non-target classes apart from the target one (the labels
        // are random here): it closes the gap more slowly (−8 % here, against −83 % for the
        // others), but it must close it. Its gradient is checked against finite differences
        // in `losses.rs`.
        // Attention: one 3→4 conv and a ReLU can only approach an 8-channel map (−17 % here).
        let bar = match loss {
            KdLoss::Decoupled { .. } => 0.98,
            KdLoss::Attention { .. } => 0.9,
            _ => 0.5,
        };
        assert!(end < bar * start, "{loss:?}: gap {start:e} → {end:e}");
    }
}

#[test]
fn a_stopped_fitnet_run_resumes_with_its_adapter_and_momenta() {
    bit_for_bit(|| {
        let device = parse_device("flex").unwrap();
        let train = synthetic(96, 5, [3, 16, 16], 1).unwrap();
        let norm = Normalize::uniform(3, 0.5, 0.25);
        let teacher = Model::new("teacher", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
        let student = Model::new("student", vec![3, 16, 16], narrow(&device)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            epochs: 3,
            keep_best: false,
            state_dir: Some(dir.path().to_path_buf()),
            ..config()
        };
        let run = |fail_at: Option<usize>, cfg: &TrainConfig| {
            let mut kd = Distiller::new(
                teacher.clone(),
                KdLoss::FitNet {
                    pairs: vec![("1".to_string(), "2".to_string())],
                },
                KdWeight::Constant(0.5),
            );
            let (trained, _) = fit(
                &student,
                &train,
                &train,
                &norm,
                cfg,
                &mut [&mut kd, &mut FailAt(fail_at)],
                &device,
            )?;
            let adapter = fasterai_core::io::pytorch_tensors(kd.adapters().unwrap()).unwrap();
            Ok::<_, TrainError>((
                fasterai_core::io::pytorch_tensors(&trained.net).unwrap(),
                adapter,
            ))
        };
        let whole = run(
            None,
            &TrainConfig {
                state_dir: None,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert!(run(Some(2), &cfg).is_err());
        let resumed = run(
            None,
            &TrainConfig {
                resume: true,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert!(resumed.0 == whole.0, "the student differs");
        assert!(resumed.1 == whole.1, "the adapter differs");
    })
}
