//! Sparsifying while training: the target follows the schedule, and pruned weights stay zero
//! through every optimiser step; lottery-ticket resetting restores the surviving initial weights.

use fasterai_core::prelude::*;
use fasterai_core::testing::tiny_cnn;
use fasterai_sparsify::sparsifier::torch_weights;
use fasterai_sparsify::{
    Granularity, Lottery, Schedule, ScheduleKind, SparsifyCallback, SparsifyConfig,
};
use fasterai_train::data::{Normalize, synthetic};
use fasterai_train::testing::{FailAt, bit_for_bit, serial_rng};
use fasterai_train::{TrainConfig, fit};

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 32,
        lr: 0.05,
        progress: false,
        keep_best: false,
        ..TrainConfig::default()
    }
}

#[test]
fn masks_follow_the_schedule_and_zeros_stay_zero() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    let train = synthetic(256, 5, [3, 16, 16], 1).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let schedule = Schedule::new(ScheduleKind::Agp).window(0.0, 0.5);
    let mut cb = SparsifyCallback::new(SparsifyConfig::new(Granularity::Weight), 0.6, schedule);
    let (trained, _) = fit(
        &model,
        &train,
        &train,
        &norm,
        &config(),
        &mut [&mut cb],
        &device,
    )
    .unwrap();
    // The target rose monotonically to 0.6 and stayed there for the second half of training.
    assert!(cb.steps.windows(2).all(|w| w[1].sparsity > w[0].sparsity));
    assert!((cb.steps.last().unwrap().sparsity - 0.6).abs() < 1e-12);
    assert!(cb.steps.last().unwrap().step <= 8, "{:?}", cb.steps.last());
    // 8 steps of training after the last mask change: the zeros are still there, exactly.
    let masks = cb.sparsifier().unwrap().masks();
    for (path, mask) in masks {
        let w = torch_weights(trained.net.layer(path).unwrap());
        let zeros = w
            .iter()
            .zip(mask)
            .filter(|(w, m)| **m == 0.0 && **w == 0.0)
            .count();
        let masked = mask.iter().filter(|m| **m == 0.0).count();
        assert_eq!(zeros, masked, "{path}");
        assert_eq!(masked, (0.6 * mask.len() as f64).floor() as usize, "{path}");
    }
}

#[test]
fn lottery_reset_restores_surviving_initial_weights() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    let train = synthetic(64, 5, [3, 16, 16], 1).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    // One-shot at the first batch (prune, then reset), and a vanishing learning rate so the
    // steps that follow leave the reset weights as they are.
    let schedule = Schedule::new(ScheduleKind::OneShot).window(0.0, 1.0);
    let mut cb = SparsifyCallback::new(SparsifyConfig::new(Granularity::Filter), 0.5, schedule)
        .with_lottery(Lottery::ResetToInit);
    let cfg = TrainConfig {
        epochs: 1,
        lr: 1e-12,
        ..config()
    };
    let (trained, _) = fit(&model, &train, &train, &norm, &cfg, &mut [&mut cb], &device).unwrap();
    let sparsifier = cb.sparsifier().unwrap();
    for (path, mask) in sparsifier.masks() {
        let now = torch_weights(trained.net.layer(path).unwrap());
        let init = &sparsifier.initial_weights()[path];
        for ((w, i), m) in now.iter().zip(init).zip(mask) {
            assert!(
                (w - i * m).abs() <= 1e-6 * i.abs().max(1.0),
                "{path}: {w} vs {}",
                i * m
            );
        }
    }
}

#[test]
fn bad_training_set_ups_fail_before_the_first_batch() {
    let _rng = serial_rng();
    let device = parse_device("flex").unwrap();
    let train = synthetic(32, 5, [3, 16, 16], 1).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    let agp = || Schedule::new(ScheduleKind::Agp);
    let filter = || SparsifyConfig::new(Granularity::Filter);
    let wanda = SparsifyConfig {
        criterion: fasterai_sparsify::Criterion::Wanda,
        ..filter()
    };
    let n_of_m = SparsifyConfig {
        n_of_m: Some((2, 5)), // rows of 27 (3·3·3) weights: not a multiple of 5
        ..SparsifyConfig::new(Granularity::Weight)
    };
    let cases = [
        (SparsifyCallback::new(wanda, 0.5, agp()), "calibration"),
        (SparsifyCallback::new(n_of_m, 0.5, agp()), "multiple of 5"),
        (
            SparsifyCallback::new(filter(), 0.5, agp().window(0.6, 0.4)),
            "window",
        ),
        (
            SparsifyCallback::new(filter(), 0.5, agp()).with_lottery(Lottery::RewindToEpoch(1)),
            "epochs",
        ),
    ];
    for (mut cb, needle) in cases {
        let err = fit(
            &model,
            &train,
            &train,
            &norm,
            &config(),
            &mut [&mut cb],
            &device,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(needle), "{err}");
        assert!(cb.steps.is_empty(), "pruned before failing: {err}");
    }
}

#[test]
fn a_stopped_schedule_resumes_with_its_masks_and_position() {
    bit_for_bit(|| {
        let device = parse_device("flex").unwrap();
        let train = synthetic(128, 5, [3, 16, 16], 1).unwrap();
        let norm = Normalize::uniform(3, 0.5, 0.25);
        let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            epochs: 3,
            state_dir: Some(dir.path().to_path_buf()),
            ..config()
        };
        let run = |fail_at: Option<usize>, cfg: &TrainConfig| {
            // The target still rises in the last epoch, and the rewind point is saved state.
            let schedule = Schedule::new(ScheduleKind::Agp).window(0.0, 0.9);
            let mut cb =
                SparsifyCallback::new(SparsifyConfig::new(Granularity::Filter), 0.5, schedule)
                    .with_lottery(Lottery::RewindToEpoch(0));
            let (trained, _) = fit(
                &model,
                &train,
                &train,
                &norm,
                cfg,
                &mut [&mut cb, &mut FailAt(fail_at)],
                &device,
            )?;
            let masks = cb.sparsifier().unwrap().masks().clone();
            Ok::<_, fasterai_train::TrainError>((trained, masks, cb.steps))
        };
        let (whole, whole_masks, whole_steps) = run(
            None,
            &TrainConfig {
                state_dir: None,
                ..cfg.clone()
            },
        )
        .unwrap();
        let (_, again_masks, _) = run(
            None,
            &TrainConfig {
                state_dir: None,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert!(again_masks == whole_masks, "not deterministic");
        assert!(run(Some(2), &cfg).is_err());
        let resume = TrainConfig {
            resume: true,
            ..cfg.clone()
        };
        let (resumed, masks, steps) = run(None, &resume).unwrap();
        assert!(masks == whole_masks, "masks differ");
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.step, s.sparsity))
                .collect::<Vec<_>>(),
            whole_steps
                .iter()
                .map(|s| (s.step, s.sparsity))
                .collect::<Vec<_>>()
        );
        for path in whole_masks.keys() {
            let a = torch_weights(resumed.net.layer(path).unwrap());
            let b = torch_weights(whole.net.layer(path).unwrap());
            assert!(a == b, "{path}: the resumed run's weights differ");
        }
    })
}
