//! The training loop: it learns, calls every hook, saves the best model, and refuses bad
//! set-ups before training.

use fasterai_core::io::load_model;
use fasterai_core::prelude::*;
use fasterai_core::schedule::LrSchedule;
use fasterai_core::testing::{tiny_cnn, tiny_vit};
use fasterai_train::data::{Normalize, synthetic};
use fasterai_train::learner::{EpochRecord, OptimizerKind};
use fasterai_train::testing::{FailAt, bit_for_bit, serial_rng};
use fasterai_train::{Callback, LossContext, TrainConfig, TrainError, TrainState, evaluate, fit};

fn quick() -> TrainConfig {
    TrainConfig {
        epochs: 3,
        batch_size: 32,
        lr: 0.05,
        progress: false,
        ..TrainConfig::default()
    }
}

#[derive(Default)]
struct Counter {
    batches: usize,
    losses: usize,
    steps: usize,
    epochs: usize,
    last_progress: f64,
}

impl Callback for Counter {
    fn before_batch(&mut self, _: &mut Graph, _: &TrainState) {
        self.batches += 1;
    }
    fn after_loss(&mut self, ctx: &mut LossContext<'_>) {
        self.losses += 1;
        assert_eq!(ctx.logits.dims()[1], 5);
    }
    fn after_step(&mut self, _: &mut Graph, state: &TrainState) {
        self.steps += 1;
        self.last_progress = state.progress();
    }
    fn after_epoch(&mut self, _: &mut Graph, _: &EpochRecord) {
        self.epochs += 1;
    }
}

#[test]
fn learns_synthetic_data_and_calls_every_hook() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    device.seed(3);
    let train = synthetic(640, 5, [3, 16, 16], 1).unwrap();
    let valid = synthetic(200, 5, [3, 16, 16], 2).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let before = evaluate(&model.net, &valid, &norm, 64, &device)
        .unwrap()
        .accuracy;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("best.safetensors");
    let config = TrainConfig {
        checkpoint: Some(checkpoint.clone()),
        ..quick()
    };
    let mut counter = Counter::default();
    let (best, history) = fit(
        &model,
        &train,
        &valid,
        &norm,
        &config,
        &mut [&mut counter],
        &device,
    )
    .unwrap();
    assert!(
        history.best.0 > 0.5 && history.best.0 > before + 0.25,
        "accuracy {} (before {before})",
        history.best.0
    );
    assert!(history.epochs.last().unwrap().train_loss < history.epochs[0].train_loss);
    assert_eq!(
        (counter.batches, counter.losses, counter.steps),
        (60, 60, 60)
    );
    assert_eq!(counter.epochs, 3);
    assert!((counter.last_progress - 1.0).abs() < 1e-12);
    // The returned model is the best epoch's, and so is the checkpoint.
    let again = evaluate(&best.net, &valid, &norm, 64, &device).unwrap();
    assert!((again.accuracy - history.best.0).abs() < 1e-9);
    let saved = load_model(&checkpoint, &device).unwrap();
    let from_file = evaluate(&saved.net, &valid, &norm, 64, &device).unwrap();
    assert!((from_file.accuracy - history.best.0).abs() < 1e-9);
}

/// A callback that zeroes the loss: with plain SGD (no momentum, no decay) nothing moves.
struct ZeroLoss;

impl Callback for ZeroLoss {
    fn after_loss(&mut self, ctx: &mut LossContext<'_>) {
        ctx.loss = ctx.loss.clone() * 0.0;
    }
}

#[test]
fn the_loss_a_callback_sets_is_the_one_optimised() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    let train = synthetic(64, 5, [3, 16, 16], 1).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let net = tiny_cnn(3, 5, &device);
    let model = Model::new("tiny", vec![3, 16, 16], net).unwrap();
    let config = TrainConfig {
        epochs: 1,
        schedule: LrSchedule::Constant,
        optimizer: OptimizerKind::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        ..quick()
    };
    let (trained, _) = fit(
        &model,
        &train,
        &train,
        &norm,
        &config,
        &mut [&mut ZeroLoss],
        &device,
    )
    .unwrap();
    let weights = |m: &Model| match m.net.layer("0").unwrap() {
        Layer::Conv2d(c) => c.weight.val().into_data().try_to_vec::<f32>().unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(weights(&trained), weights(&model));
}

#[test]
fn bad_setups_fail_before_training() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let ten = synthetic(50, 10, [3, 16, 16], 1).unwrap();
    let five_class_model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let err = fit(
        &five_class_model,
        &ten,
        &ten,
        &norm,
        &quick(),
        &mut [],
        &device,
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::Config(_)) && err.to_string().contains("10 classes"),
        "{err}"
    );
    let wrong_size = synthetic(50, 5, [3, 32, 32], 1).unwrap();
    let err = fit(
        &five_class_model,
        &wrong_size,
        &wrong_size,
        &norm,
        &quick(),
        &mut [],
        &device,
    )
    .unwrap_err();
    assert!(err.to_string().contains("[3, 32, 32]"), "{err}");
    let five = synthetic(50, 5, [3, 16, 16], 1).unwrap();
    let zero_lr = TrainConfig { lr: 0.0, ..quick() };
    assert!(
        fit(
            &five_class_model,
            &five,
            &five,
            &norm,
            &zero_lr,
            &mut [],
            &device
        )
        .is_err()
    );
    let empty = five.take(0);
    assert!(
        fit(
            &five_class_model,
            &empty,
            &five,
            &norm,
            &quick(),
            &mut [],
            &device
        )
        .is_err()
    );
}

/// Every parameter and buffer (BN statistics included) of a model, serialised.
fn all_values(model: &Model) -> Vec<u8> {
    use burn::module::Module;
    model
        .net
        .clone()
        .into_record()
        .into_bytes()
        .unwrap()
        .to_vec()
}

#[test]
fn a_run_stopped_after_an_epoch_resumes_to_the_uninterrupted_result() {
    bit_for_bit(|| {
        let device = parse_device("flex").unwrap();
        let train = synthetic(96, 5, [3, 16, 16], 1).unwrap();
        let valid = synthetic(40, 5, [3, 16, 16], 2).unwrap();
        let norm = Normalize::uniform(3, 0.5, 0.25);
        device.seed(5);
        let cnn = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
        // A transformer with AdamW and a warm-up: stochastic depth draws on every step.
        let vit = Model::new("tiny_vit", vec![3, 16, 16], tiny_vit(3, 5, &device)).unwrap();
        let warmup = LrSchedule::WarmupCosine { warmup: 0.3 };
        for (model, optimizer, schedule) in [
            (
                &cnn,
                OptimizerKind::Sgd {
                    momentum: 0.9,
                    weight_decay: 5e-4,
                },
                quick().schedule,
            ),
            (
                &cnn,
                OptimizerKind::Adam { weight_decay: 0.0 },
                quick().schedule,
            ),
            (&vit, OptimizerKind::AdamW { weight_decay: 0.05 }, warmup),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let config = TrainConfig {
                epochs: 3,
                optimizer,
                schedule,
                lr: 0.01,
                // Keep the last epoch's model: the comparison covers the whole run.
                keep_best: false,
                state_dir: Some(dir.path().join("state")),
                ..quick()
            };
            let run = |fail_at: Option<usize>, config: &TrainConfig| {
                let mut fail = FailAt(fail_at);
                fit(
                    model,
                    &train,
                    &valid,
                    &norm,
                    config,
                    &mut [&mut fail],
                    &device,
                )
            };
            let (whole, whole_history) = run(
                None,
                &TrainConfig {
                    state_dir: None,
                    ..config.clone()
                },
            )
            .unwrap();
            // Stops in the third epoch: the state of the first two is on disk.
            let err = run(Some(2), &config).unwrap_err();
            assert!(
                matches!(err, TrainError::Diverged { epoch: 2, .. }),
                "{err}"
            );
            let names: Vec<String> = std::fs::read_dir(dir.path().join("state"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(names.contains(&"net-2.bpk".to_string()), "{names:?}");
            assert!(
                !names.iter().any(|n| n.contains("-1.")),
                "stale files: {names:?}"
            );
            let resume = TrainConfig {
                resume: true,
                ..config.clone()
            };
            let (resumed, history) = run(None, &resume).unwrap();
            assert_eq!(history.epochs.len(), 3);
            assert_eq!(
                history.epochs[2].valid.accuracy,
                whole_history.epochs[2].valid.accuracy
            );
            assert!(
                all_values(&resumed) == all_values(&whole),
                "{optimizer:?}: the resumed run differs"
            );
            // A finished run resumes to its result without training.
            let (again, _) = run(Some(0), &resume).unwrap();
            assert!(all_values(&again) == all_values(&whole));
            // Other settings do not resume this run's state.
            let other = TrainConfig {
                lr: 0.02,
                ..resume.clone()
            };
            let err = run(None, &other).unwrap_err();
            assert!(err.to_string().contains("another run"), "{err}");
        }
    })
}

#[test]
fn a_tampered_state_is_refused_and_only_a_runs_files_are_removed() {
    let device = parse_device("flex").unwrap();
    let train = synthetic(32, 5, [3, 16, 16], 1).unwrap();
    let valid = synthetic(16, 5, [3, 16, 16], 2).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = TrainConfig {
        epochs: 2,
        keep_best: false,
        state_dir: Some(state.clone()),
        ..quick()
    };
    fit(&model, &train, &valid, &norm, &config, &mut [], &device).unwrap();
    let progress = state.join("progress.json");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&progress).unwrap()).unwrap();
    let resume = TrainConfig {
        resume: true,
        ..config.clone()
    };
    let edits: [(&str, serde_json::Value); 4] = [
        ("kept", serde_json::Value::Null),
        ("epochs_done", 7.into()),
        ("epochs_done", 0.into()),
        ("best", serde_json::json!([0.5, 9])),
    ];
    for (field, value) in edits {
        let mut tampered = saved.clone();
        tampered[field] = value.clone();
        std::fs::write(&progress, tampered.to_string()).unwrap();
        let err = fit(&model, &train, &valid, &norm, &resume, &mut [], &device).unwrap_err();
        assert!(
            err.to_string().contains("damaged"),
            "{field} = {value}: {err}"
        );
    }

    // Clearing removes the state and the temporaries of writers that are gone, and keeps a
    // live writer's temporary and every file no run wrote (and so the folder).
    let orphan = state.join(".net-2.bpk.4294967295.tmp");
    let live = state.join(format!(".net-2.bpk.{}.tmp", std::process::id()));
    let foreign = state.join("notes.txt");
    for f in [&orphan, &live, &foreign] {
        std::fs::write(f, b"x").unwrap();
    }
    assert_eq!(
        fasterai_train::resume::foreign_files(&state),
        std::slice::from_ref(&foreign)
    );
    fasterai_train::resume::clear_state(&state).unwrap();
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.len() == 2 && left.contains(&live) && left.contains(&foreign),
        "{left:?}"
    );
    std::fs::remove_file(&live).unwrap();
    std::fs::remove_file(&foreign).unwrap();
    fasterai_train::resume::clear_state(&state).unwrap();
    assert!(!state.exists(), "an emptied state folder is removed");
}
