//! Post-training and quantization-aware int8: exact codes, the half-step bound, bit-identical
//! files, the straight-through gradient, training on the grid, and clear errors.

use burn::tensor::{Tensor, TensorData};
use fasterai_core::graph::ops::{FakeQuantize, fake_quantize};
use fasterai_core::prelude::*;
use fasterai_core::quant::{ActivationGrid, WeightGrid};
use fasterai_core::testing::{tiny_cnn, tiny_resnet};
use fasterai_quantize::{
    Calibration, QuantizeConfig, QuantizeError, prepare_qat, quantize, quantize_weights,
};
use fasterai_train::data::{ImageSet, Normalize, synthetic};
use fasterai_train::testing::serial_rng;
use fasterai_train::{TrainConfig, evaluate, fit};

fn device() -> Device {
    parse_device("flex").unwrap()
}

fn batches(set: &ImageSet, device: &Device) -> Vec<Tensor<4>> {
    let norm = Normalize::uniform(3, 0.5, 0.25);
    set.batches(64, &norm, device).map(|b| b.images).collect()
}

fn tiny(device: &Device) -> Model {
    Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, device)).unwrap()
}

#[test]
fn hand_made_weights_give_exact_codes_and_every_error_is_within_half_a_step() {
    let device = device();
    let mut g = GraphBuilder::new();
    g.then("conv", LayerSpec::conv(1, 2, 1, 1));
    let mut model = Model::new(
        "one",
        vec![1, 2, 2],
        Graph::from_spec(&g.build(), InitScheme::default(), &device),
    )
    .unwrap();
    // Filter 0 peaks at 1.27 (scale 0.01), filter 1 at 0.254 (scale 0.002).
    model
        .net
        .get_mut("conv")
        .unwrap()
        .set_torch_weight(vec![1.27, -0.254]);
    let grid = WeightGrid {
        bits: 8,
        per_channel: true,
    };
    quantize_weights(&mut model, &["conv".into()], grid).unwrap();
    let q = &model.quantized["conv"];
    let (_, w) = model.net.layer("conv").unwrap().torch_weight().unwrap();
    assert_eq!(grid.codes(&w, &q.scales), vec![127, -127]);
    assert_eq!(q.scales, vec![1.27 / 127.0, 0.254 / 127.0]);

    // A real network: every weight within half its channel's step of the float one.
    let float = Model::new("resnet", vec![3, 8, 8], tiny_resnet(3, 4, &device)).unwrap();
    for per_channel in [true, false] {
        let mut m = float.clone();
        let paths: Vec<String> = m
            .net
            .nodes
            .iter()
            .filter(|n| n.layer.torch_weight().is_some())
            .map(|n| n.name.clone())
            .collect();
        let grid = WeightGrid {
            bits: 8,
            per_channel,
        };
        let errors = quantize_weights(&mut m, &paths, grid).unwrap();
        for (path, (steps, _)) in paths.iter().zip(errors) {
            assert!(steps <= 0.5 + 1e-4, "{path}: {steps} steps");
            let (shape, w) = float.net.layer(path).unwrap().torch_weight().unwrap();
            let (_, wq) = m.net.layer(path).unwrap().torch_weight().unwrap();
            let scales = &m.quantized[path].scales;
            let row = w.len() / scales.len();
            for (i, (a, b)) in w.iter().zip(&wq).enumerate() {
                let bound = scales[i / row] / 2.0;
                assert!(
                    (a - b).abs() <= bound * (1.0 + 1e-5),
                    "{path} {shape:?} [{i}]"
                );
            }
        }
    }
}

#[test]
fn ptq_reports_every_layer_and_the_file_reloads_bit_for_bit() {
    let device = device();
    let model = tiny(&device);
    let calib = batches(&synthetic(128, 5, [3, 16, 16], 3).unwrap(), &device);
    for calibration in [
        Calibration::MinMax,
        Calibration::Percentile(99.9),
        Calibration::Mse,
    ] {
        let config = QuantizeConfig::default().with_calibration(calibration);
        let (q, report) = quantize(&model, &calib, &config).unwrap();
        assert_eq!(report.layers.len(), 4);
        for l in &report.layers {
            assert!(l.quantized, "{l:?}");
            assert!(l.weight_max_error <= l.weight_error_bound * (1.0 + 1e-5));
            // int8 on a random network: a few percent at most.
            assert!(l.output_error > 0.0 && l.output_error < 0.05, "{l:?}");
        }
        // One quantizer per layer input; the output differs from float, but little.
        let quantizers = q
            .net
            .nodes
            .iter()
            .filter(|n| matches!(n.layer, Layer::FakeQuantize(_)))
            .count();
        assert_eq!(quantizers, 4);
        let x = calib[0].clone();
        let y = model.net.forward(x.clone()).flatten();
        let yq = q.net.forward(x.clone()).flatten();
        let rel = fasterai_core::testing::relative_max_diff(y, yq.clone());
        assert!(rel > 0.0 && rel < 0.1, "{calibration}: {rel}");

        let dir = tempfile::tempdir().unwrap();
        let (fp, ip) = (
            dir.path().join("f.safetensors"),
            dir.path().join("q.safetensors"),
        );
        save_model(&model, &fp, false).unwrap();
        save_model(&q, &ip, false).unwrap();
        let loaded = load_model(&ip, &device).unwrap();
        assert_eq!(loaded.quantized, q.quantized);
        let again: Vec<f32> = loaded
            .net
            .forward(x)
            .flatten()
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(
            again,
            yq.into_data().try_to_vec::<f32>().unwrap(),
            "bit for bit"
        );
        let (fs, is) = (
            std::fs::metadata(&fp).unwrap().len() as f64,
            std::fs::metadata(&ip).unwrap().len() as f64,
        );
        // Quantized weights are 4× smaller (codes plus one scale per channel); the file also
        // holds the architecture, biases and BN statistics.
        let (float_bytes, int_bytes) = report.weight_bytes(&q);
        assert!(
            float_bytes as f64 / int_bytes as f64 > 3.9,
            "{float_bytes} / {int_bytes}"
        );
        assert!(fs / is > 2.5, "{fs} / {is}");
        println!("{report}");
    }
}

#[test]
fn skipped_and_too_lossy_layers_stay_in_float() {
    let device = device();
    let model = tiny(&device);
    let calib = batches(&synthetic(64, 5, [3, 16, 16], 3).unwrap(), &device);
    let config = QuantizeConfig::default().with_skip(vec!["12".into()]);
    let (q, report) = quantize(&model, &calib, &config).unwrap();
    assert!(!q.quantized.contains_key("12") && q.quantized.contains_key("9"));
    assert!(q.net.get("12.input_quantizer").is_none());
    let kept = report.layers.iter().find(|l| l.path == "12").unwrap();
    assert!(!kept.quantized);
    // 4-bit weights raise the error; a threshold between the layers' errors keeps the worse
    // ones in float.
    let config = QuantizeConfig::default().with_bits(4, Some(8));
    let (_, all) = quantize(&model, &calib, &config).unwrap();
    let errors: Vec<f64> = all.layers.iter().map(|l| l.output_error).collect();
    let max = errors.iter().sum::<f64>() / errors.len() as f64;
    let (q, report) = quantize(&model, &calib, &config.with_max_error(Some(max))).unwrap();
    for l in &report.layers {
        assert_eq!(l.quantized, l.output_error <= max, "{l:?}");
        assert_eq!(q.quantized.contains_key(&l.path), l.quantized);
        if !l.quantized {
            let a = model.net.layer(&l.path).unwrap().torch_weight().unwrap().1;
            let b = q.net.layer(&l.path).unwrap().torch_weight().unwrap().1;
            assert_eq!(a, b, "float weights back");
        }
    }
    assert!(report.layers.iter().any(|l| !l.quantized), "{report}");
}

#[test]
fn fake_quantize_passes_gradients_straight_through_inside_its_range() {
    let device = device().autodiff();
    let grid = ActivationGrid::from_range(0.0, 1.0, 8);
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![0.1f32, 0.5, 2.0, -1.0], [1, 4]),
        &device,
    )
    .require_grad();
    let y = fake_quantize(x.clone() * 1.0, &grid);
    let values: Vec<f32> = y.clone().into_data().try_to_vec().unwrap();
    let expected: Vec<f32> = [0.1f32, 0.5, 2.0, -1.0]
        .iter()
        .map(|&v| grid.fake_quantize(v))
        .collect();
    assert_eq!(values, expected);
    let grads = y.sum().backward();
    let g: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
    assert_eq!(g, vec![1.0, 1.0, 0.0, 0.0]);
    let _: FakeQuantize = grid;
}

#[test]
fn qat_trains_on_the_grid_and_finishes_as_an_integer_model() {
    let _rng = serial_rng();
    let device = device();
    device.seed(3);
    let train = synthetic(640, 5, [3, 16, 16], 1).unwrap();
    let valid = synthetic(200, 5, [3, 16, 16], 2).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let config = TrainConfig {
        epochs: 3,
        batch_size: 32,
        lr: 0.05,
        progress: false,
        keep_best: false,
        ..TrainConfig::default()
    };
    // QAT starts from a trained float model, whose activation ranges it calibrates.
    let (float, _) = fit(
        &tiny(&device),
        &train,
        &valid,
        &norm,
        &config,
        &mut [],
        &device,
    )
    .unwrap();
    let float_acc = evaluate(&float.net, &valid, &norm, 64, &device)
        .unwrap()
        .accuracy;
    assert!(float_acc > 0.5, "{float_acc}");
    let calib = batches(&train.take(64), &device);
    let (prepared, mut qat, _) = prepare_qat(&float, &calib, &QuantizeConfig::default()).unwrap();
    assert!(prepared.quantized.is_empty() && qat.targets().len() == 4);
    let config = TrainConfig {
        epochs: 2,
        lr: 0.01,
        ..config
    };
    let (trained, history) = fit(
        &prepared,
        &train,
        &valid,
        &norm,
        &config,
        &mut [&mut qat],
        &device,
    )
    .unwrap();
    let qat_acc = history.epochs.last().unwrap().valid.accuracy;
    assert!(qat_acc > float_acc - 0.05, "{qat_acc} vs float {float_acc}");
    let int8 = qat.finish(&trained).unwrap();
    // The trained weights were on their grids already: finishing does not move them.
    for path in qat.targets() {
        let a = trained.net.layer(path).unwrap().torch_weight().unwrap().1;
        let b = int8.net.layer(path).unwrap().torch_weight().unwrap().1;
        let max = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            max <= 1e-6 * a.iter().fold(0f32, |m, x| m.max(x.abs())),
            "{path}"
        );
    }
    let before = evaluate(&trained.net, &valid, &norm, 64, &device).unwrap();
    let after = evaluate(&int8.net, &valid, &norm, 64, &device).unwrap();
    assert!(
        (before.accuracy - after.accuracy).abs() < 0.02,
        "{before:?} {after:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    save_model(&int8, &dir.path().join("qat.safetensors"), false).unwrap();
}

#[test]
fn bad_inputs_are_clear_errors() {
    let device = device();
    let model = tiny(&device);
    let calib = batches(&synthetic(32, 5, [3, 16, 16], 3).unwrap(), &device);
    let err = |r: Result<_, QuantizeError>| r.map(|_: (Model, _)| ()).unwrap_err().to_string();

    let wrong = vec![Tensor::<4>::zeros([2, 3, 32, 32], &device)];
    let e = err(quantize(&model, &wrong, &QuantizeConfig::default()));
    assert!(
        e.contains("[3, 32, 32]") && e.contains("[3, 16, 16]"),
        "{e}"
    );
    let e = err(quantize(&model, &[], &QuantizeConfig::default()));
    assert!(e.contains("no batches"), "{e}");
    for bits in [1, 9, 16] {
        let e = err(quantize(
            &model,
            &calib,
            &QuantizeConfig::default().with_bits(bits, Some(8)),
        ));
        assert!(
            e.contains(&format!("{bits}-bit")) && e.contains("2 to 8"),
            "{e}"
        );
    }
    let e = err(quantize(
        &model,
        &calib,
        &QuantizeConfig::default().with_calibration(Calibration::Percentile(30.0)),
    ));
    assert!(e.contains("percentile"), "{e}");
    let e = err(quantize(
        &model,
        &calib,
        &QuantizeConfig::default().with_skip(vec!["head".into()]),
    ));
    assert!(e.contains("head"), "{e}");

    let (q, _) = quantize(&model, &calib, &QuantizeConfig::default()).unwrap();
    let e = err(quantize(&q, &calib, &QuantizeConfig::default()));
    assert!(e.contains("already quantized"), "{e}");

    // A quantized weight changed afterwards is refused when saving, not silently re-rounded.
    let mut moved = q.clone();
    let layer = moved.net.get_mut("0").unwrap();
    let (_, mut w) = layer.torch_weight().unwrap();
    w[0] += 1e-3;
    layer.set_torch_weight(w);
    let dir = tempfile::tempdir().unwrap();
    let e = save_model(&moved, &dir.path().join("m.safetensors"), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("left their integer grid"), "{e}");
    assert!(!dir.path().join("m.safetensors").exists());
}

#[test]
fn qat_keeps_sparsify_masks_and_the_zeros_stay_integer_zeros() {
    use fasterai_sparsify::sparsifier::torch_weights;
    use fasterai_sparsify::{
        Granularity, Schedule, ScheduleKind, SparsifyCallback, SparsifyConfig,
    };

    let _rng = serial_rng();
    let device = device();
    device.seed(5);
    let train = synthetic(320, 5, [3, 16, 16], 1).unwrap();
    let norm = Normalize::uniform(3, 0.5, 0.25);
    let model = tiny(&device);
    let calib = batches(&train.take(64), &device);
    let (prepared, mut qat, _) = prepare_qat(&model, &calib, &QuantizeConfig::default()).unwrap();
    // Half the weights of every layer zeroed at once, masks kept through every step; QAT's
    // callback goes first, as the CLI orders them.
    let schedule = Schedule::new(ScheduleKind::OneShot).window(0.0, 0.1);
    let mut sparsify =
        SparsifyCallback::new(SparsifyConfig::new(Granularity::Weight), 0.5, schedule);
    let config = TrainConfig {
        epochs: 2,
        batch_size: 32,
        lr: 0.02,
        progress: false,
        keep_best: false,
        ..TrainConfig::default()
    };
    let (trained, _) = fit(
        &prepared,
        &train,
        &train,
        &norm,
        &config,
        &mut [&mut qat, &mut sparsify],
        &device,
    )
    .unwrap();
    let int8 = qat.finish(&trained).unwrap();
    for (path, mask) in sparsify.sparsifier().unwrap().masks() {
        let w = torch_weights(int8.net.layer(path).unwrap());
        let q = &int8.quantized[path];
        let codes = q.grid.codes(&w, &q.scales);
        let masked = mask.iter().filter(|m| **m == 0.0).count();
        assert_eq!(masked, mask.len() / 2, "{path}");
        for (i, m) in mask.iter().enumerate() {
            if *m == 0.0 {
                assert_eq!((w[i], codes[i]), (0.0, 0), "{path}[{i}]");
            }
        }
    }
}

#[test]
fn per_tensor_grid_is_burns_own_symmetric_int8() {
    use burn::tensor::Distribution;
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue};

    // Burn's Q8S scheme (±127, one f32 scale): the same codes and values as our per-tensor
    // grid, so a model quantized here can hand its weights to Burn's quantized tensors.
    let device = device();
    let w = Tensor::<2>::random([64, 48], Distribution::Normal(0.0, 1.0), &device);
    let scheme = QuantScheme::default()
        .with_value(QuantValue::Q8S)
        .with_store(QuantStore::Native);
    let burn: Vec<f32> = w
        .clone()
        .quantize_dynamic(&scheme)
        .dequantize()
        .into_data()
        .try_to_vec()
        .unwrap();
    let values: Vec<f32> = w.into_data().try_to_vec().unwrap();
    let grid = WeightGrid {
        bits: 8,
        per_channel: false,
    };
    let scales = grid.scales(&values, 64);
    let ours = WeightGrid::dequantize(&grid.codes(&values, &scales), &scales);
    assert_eq!(ours, burn);
}
