//! The `fasterai` binary end to end: a model saved here and run in a new process gives the same
//! outputs; every bad input is a clear error with a non-zero exit code and no panic.

use std::path::Path;
use std::process::{Command, Output};

use fasterai::burn::tensor::{Distribution, Tensor};
use fasterai::core::io::save_model;
use fasterai::core::testing::tiny_cnn;
use fasterai::infer::{Inference, PathChoice};
use fasterai::prelude::*;
use npyz::WriterBuilder;

mod corpus;
mod fuzz;
mod hostile;
mod transformer;

fn fasterai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fasterai"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// [`fasterai`] with the engine's convolution paths chosen by `FASTERAI_CONV=choice`.
fn fasterai_conv(choice: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fasterai"))
        .args(args)
        .env("FASTERAI_CONV", choice)
        .output()
        .expect("binary runs")
}

/// Asserts failure with a message containing `needle`, and no panic.
fn fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    assert!(stderr.contains(needle), "stderr lacks `{needle}`: {stderr}");
}

fn write_npy(path: &Path, shape: &[u64], data: &[f32]) {
    let mut file = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut file)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn read_npy(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let npy = npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

/// Saves the tiny CNN and an input batch; returns the in-process outputs.
fn setup(dir: &Path) -> Vec<f32> {
    let device = parse_device("flex").unwrap();
    let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    save_model(&model, &dir.join("tiny.safetensors"), false).unwrap();
    let x = Tensor::<4>::random([3, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let data = x.clone().into_data().try_to_vec::<f32>().unwrap();
    write_npy(&dir.join("x.npy"), &[3, 3, 16, 16], &data);
    // `predict` runs the model prepared for inference (fused batch norm and ReLU, Winograd),
    // paths by rule so that both processes take the same ones.
    Inference::with_choice(model.net, &device, PathChoice::Rules)
        .forward(x)
        .flatten()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn saved_model_predicts_identically_in_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let expected = setup(dir.path());
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let predict = [
        "predict",
        &d("tiny.safetensors"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("y.npy"),
        "--threads",
        "2",
    ];
    let out = fasterai_conv("rules", &predict);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (shape, values) = read_npy(&dir.path().join("y.npy"));
    assert_eq!(shape, vec![3, 5]);
    assert_eq!(values, expected, "outputs must be bit-identical");

    // --plain runs the graph node by node: the same values up to float rounding.
    let plain = fasterai(&[
        "predict",
        &d("tiny.safetensors"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("y_plain.npy"),
        "--plain",
    ]);
    assert!(plain.status.success());
    let (_, plain) = read_npy(&dir.path().join("y_plain.npy"));
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (p, e) in plain.iter().zip(&expected) {
        assert!((p - e).abs() <= 1e-5 * scale, "plain {p} vs prepared {e}");
    }
    // An unknown path name, or no threads, is a clean error that says what is expected.
    let bad_output = d("y_bad.npy");
    let mut bad = predict.to_vec();
    bad[5] = &bad_output;
    fails_with(
        &fasterai_conv("im2col", &bad),
        "gemm, winograd or depthwise",
    );
    bad[7] = "0";
    fails_with(&fasterai(&bad), "--threads must be at least 1");

    // The output exists now: refused without --force, accepted with it; never over the input.
    let again = fasterai(&[
        "predict",
        &d("tiny.safetensors"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("y.npy"),
    ]);
    fails_with(&again, "--force");
    let forced = fasterai(&[
        "predict",
        &d("tiny.safetensors"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("y.npy"),
        "--force",
    ]);
    assert!(forced.status.success());
    let over_input = fasterai(&[
        "predict",
        &d("tiny.safetensors"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("x.npy"),
        "--force",
    ]);
    fails_with(&over_input, "input file");
}

#[test]
fn inspect_counts_vgg16_bn_like_pytorch() {
    let out = fasterai(&["inspect", "vgg16_bn", "--num-classes", "10"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("134,309,962"), "{stdout}");
    let json = fasterai(&["inspect", "vgg16_bn", "--num-classes", "10", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["total_params"], 134_309_962);
    assert_eq!(value["layers"][0]["path"], "features.0");
}

/// `fasterai inspect … | head`: a reader that stops early ends the process quietly, not with a
/// panic and its backtrace.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fasterai"))
        .args(["inspect", "vgg16_bn", "--num-classes", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let model = d("tiny.safetensors");

    fails_with(
        &fasterai(&["bench", "vgg11", "--device", "tpu"]),
        "unknown device `tpu`",
    );
    #[cfg(not(feature = "cuda"))]
    fails_with(
        &fasterai(&["bench", "vgg11", "--device", "cuda:0"]),
        "--features cuda",
    );
    fails_with(
        &fasterai(&["inspect", "resnet51"]),
        "neither an existing model file nor a built-in model",
    );
    fails_with(&fasterai(&["inspect", "vgg16", "--width=-1"]), "width");

    // Wrong input shape: 1 channel for a 3-channel model.
    write_npy(
        &dir.path().join("gray.npy"),
        &[2, 1, 16, 16],
        &[0.5; 2 * 256],
    );
    fails_with(
        &fasterai(&[
            "predict",
            &model,
            "--input",
            &d("gray.npy"),
            "--output",
            &d("o.npy"),
        ]),
        "3 input channels",
    );
    write_npy(&dir.path().join("flat.npy"), &[2, 8], &[0.5; 16]);
    fails_with(
        &fasterai(&[
            "predict",
            &model,
            "--input",
            &d("flat.npy"),
            "--output",
            &d("o.npy"),
        ]),
        "expected [N, C, H, W]",
    );

    // Damaged model files.
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(d("truncated.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &fasterai(&["inspect", &d("truncated.safetensors")]),
        "truncated",
    );
    std::fs::write(d("garbage.safetensors"), b"definitely not a model").unwrap();
    fails_with(
        &fasterai(&["inspect", &d("garbage.safetensors")]),
        "not a valid fasterai model file",
    );

    // Import: wrong architecture for the weights (a 5-class tiny model is no VGG).
    fails_with(
        &fasterai(&[
            "import",
            "vgg11",
            "--num-classes",
            "5",
            "--weights",
            &model,
            "-o",
            &d("v.safetensors"),
        ]),
        "do not match the architecture",
    );
    fails_with(
        &fasterai(&[
            "import",
            "vgg11",
            "--weights",
            &d("missing.pth"),
            "-o",
            &d("v.safetensors"),
        ]),
        "no such file",
    );
}

#[test]
fn fold_then_decompose_a_saved_model() {
    let dir = tempfile::tempdir().unwrap();
    let expected = setup(dir.path());
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();

    let out = fasterai(&[
        "fold",
        &d("tiny.safetensors"),
        "-o",
        &d("folded.safetensors"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("folded 2 batch norm(s)"));
    let out = fasterai(&[
        "predict",
        &d("folded.safetensors"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("yf.npy"),
    ]);
    assert!(out.status.success());
    let (_, folded) = read_npy(&dir.path().join("yf.npy"));
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = folded
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-5 * scale.max(1.0),
        "folding changed outputs by {diff}"
    );

    let out = fasterai(&[
        "decompose",
        &d("folded.safetensors"),
        "-o",
        &d("small.safetensors"),
        "--fc-rank",
        "4",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &reports[0];
    // 256→32 becomes 256→4→32 (and 32→5 becomes 32→4→5: 148 < 160 parameters).
    assert_eq!(report["layers"][0]["rank"], 4);
    assert_eq!(report["layers"][0]["params_after"], 256 * 4 + 4 * 32 + 32);
    assert!(report["layers"][0]["output_error"].as_f64().unwrap() > 0.0);
    let inspect = fasterai(&["inspect", &d("small.safetensors"), "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(summary["total_params"], report["params_after"]);

    fails_with(
        &fasterai(&[
            "decompose",
            &d("folded.safetensors"),
            "-o",
            &d("x2.safetensors"),
            "--fc",
            "1.5",
        ]),
        "[0, 1)",
    );
    fails_with(
        &fasterai(&[
            "decompose",
            &d("folded.safetensors"),
            "-o",
            &d("x3.safetensors"),
            "--fc",
            "0.5",
            "--layers",
            "0",
        ]),
        "is a layer the chosen methods decompose",
    );
    fails_with(
        &fasterai(&[
            "fold",
            &d("folded.safetensors"),
            "-o",
            &d("folded.safetensors"),
            "--force",
        ]),
        "input file",
    );
}

#[test]
fn decompose_convs_with_each_method_saves_a_working_model() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    for method in ["tucker", "cp", "svd"] {
        let out_file = d(&format!("{method}.safetensors"));
        let out = fasterai(&[
            "decompose",
            &d("tiny.safetensors"),
            "-o",
            &out_file,
            "--conv",
            method,
            "--rank",
            "4",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let layers = reports[0]["layers"].as_array().unwrap();
        assert!(layers.iter().any(|l| l["decomposed"] == true), "{method}");
        for l in layers.iter().filter(|l| l["decomposed"] == true) {
            assert!(l["output_error"].as_f64().unwrap() > 0.0);
            assert!(l["params_after"].as_u64() < l["params_before"].as_u64());
        }
        // Chain sizes by hand for conv `0` [8, 3, 3, 3] and `4` [16, 8, 3, 3] (with biases) at
        // rank 4: Tucker-2 in·r_in + r_in·r_out·9 + r_out·out (r_in capped at 3 inputs), CP
        // r·(in + 3 + 3 + out), spatial SVD r·in·3 + out·r·3.
        let expected = match method {
            "tucker" => [
                3 * 3 + 3 * 4 * 9 + 4 * 8 + 8,
                8 * 4 + 4 * 4 * 9 + 4 * 16 + 16,
            ],
            "cp" => [4 * (3 + 3 + 3 + 8) + 8, 4 * (8 + 3 + 3 + 16) + 16],
            _ => [4 * 3 * 3 + 8 * 4 * 3 + 8, 4 * 8 * 3 + 16 * 4 * 3 + 16],
        };
        for (path, params) in ["0", "4"].iter().zip(expected) {
            let row = layers.iter().find(|l| l["path"] == *path).unwrap();
            assert_eq!(
                row["params_after"].as_u64(),
                Some(params as u64),
                "{method} {path}"
            );
        }
        let inspect = fasterai(&["inspect", &out_file, "--json"]);
        let summary: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(
            summary["total_params"], reports[0]["params_after"],
            "{method}"
        );
        let y = d(&format!("y_{method}.npy"));
        let out = fasterai(&["predict", &out_file, "--input", &d("x.npy"), "--output", &y]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fails_with(
        &fasterai(&[
            "decompose",
            &d("tiny.safetensors"),
            "-o",
            &d("bad.safetensors"),
            "--conv",
            "cp",
            "--rank-ratio",
            "2",
        ]),
        "(0, 1]",
    );
    fails_with(
        &fasterai(&[
            "decompose",
            &d("tiny.safetensors"),
            "-o",
            &d("bad.safetensors"),
            "--conv",
            "cp",
            "--rank",
            "many",
        ]),
        "--rank must be",
    );
}

#[test]
fn train_eval_distill_on_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let (teacher, student, history) = (d("t.safetensors"), d("s.safetensors"), d("h.json"));
    let data = [
        "--data",
        "synthetic:200",
        "--epochs",
        "1",
        "--batch-size",
        "50",
    ];
    let out = fasterai(
        &[
            &[
                "train",
                "vgg11_bn_small",
                "--width",
                "0.125",
                "-o",
                &teacher,
                "--history",
                &history,
            ][..],
            &data,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    assert_eq!(history["epochs"].as_array().unwrap().len(), 1);
    let out = fasterai(&["eval", &teacher, "--data", "synthetic:200", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"], 50);
    assert_eq!(report["per_class"].as_array().unwrap().len(), 10);
    let out = fasterai(
        &[
            &[
                "distill",
                "--teacher",
                &teacher,
                "--student",
                "vgg11_bn_small",
                "--width",
                "0.0625",
                "-o",
                &student,
            ][..],
            &data,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Bad inputs, each before any training.
    fails_with(
        &fasterai(&[
            "train",
            "vgg11_bn_small",
            "--data",
            "cifar10:/no/such/dir",
            "-o",
            &d("x.safetensors"),
        ]),
        "does not exist",
    );
    // An output folder that does not exist fails before training, not at the first checkpoint.
    fails_with(
        &fasterai(&[
            "train",
            "vgg11_bn_small",
            "--data",
            "synthetic:50",
            "-o",
            &d("no/such/folder/x.safetensors"),
        ]),
        "create it first",
    );
    fails_with(
        &fasterai(&[
            "sparsify",
            "vgg11_bn_small",
            "--sparsity",
            "0.5",
            "--resume",
            "-o",
            &d("x.safetensors"),
        ]),
        "needs --schedule",
    );
    fails_with(
        &fasterai(&[
            "train",
            "vgg11_bn_small",
            "--data",
            "imagenet:/x",
            "-o",
            &d("x.safetensors"),
        ]),
        "unknown data kind",
    );
    fails_with(
        &fasterai(&[
            "train",
            "vgg11_bn_small",
            "--num-classes",
            "5",
            "--data",
            "synthetic:50",
            "-o",
            &d("x.safetensors"),
        ]),
        "10 classes",
    );
    let cifar = dir.path().join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    std::fs::write(cifar.join("data_batch_1.bin"), vec![0u8; 3073 + 10]).unwrap();
    fails_with(
        &fasterai(&[
            "train",
            "vgg11_bn_small",
            "--data",
            &format!("cifar10:{}", cifar.display()),
            "-o",
            &d("x.safetensors"),
        ]),
        "3073-byte",
    );
    fails_with(
        &fasterai(&[
            "distill",
            "--teacher",
            &teacher,
            "--student",
            "vgg11_bn_small",
            "--data",
            "synthetic:50",
            "--weight",
            "2",
            "-o",
            &d("y.safetensors"),
        ]),
        "[0, 1]",
    );
}

#[test]
fn sparsify_then_prune_a_saved_model() {
    let dir = tempfile::tempdir().unwrap();
    let expected = setup(dir.path());
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let out = fasterai(&[
        "sparsify",
        &d("tiny.safetensors"),
        "-o",
        &d("sparse.safetensors"),
        "--sparsity",
        "0.5",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for layer in report.as_array().unwrap() {
        assert_eq!(
            layer["zero_groups"].as_u64().unwrap() * 2,
            layer["groups"].as_u64().unwrap()
        );
    }
    let out = fasterai(&[
        "prune",
        &d("sparse.safetensors"),
        "-o",
        &d("pruned.safetensors"),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["params_after"].as_u64() < report["params_before"].as_u64());
    // The pruned model computes what the sparse one did.
    for (model, y) in [("sparse", "ys.npy"), ("pruned", "yp.npy")] {
        let out = fasterai(&[
            "predict",
            &d(&format!("{model}.safetensors")),
            "--input",
            &d("x.npy"),
            "--output",
            &d(y),
        ]);
        assert!(out.status.success());
    }
    let (_, ys) = read_npy(&dir.path().join("ys.npy"));
    let (_, yp) = read_npy(&dir.path().join("yp.npy"));
    let scale = ys.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
    assert!(
        ys.iter()
            .zip(&yp)
            .all(|(a, b)| (a - b).abs() <= 1e-4 * scale)
    );
    assert_eq!(expected.len(), ys.len());
    fails_with(
        &fasterai(&[
            "sparsify",
            &d("tiny.safetensors"),
            "-o",
            &d("b.safetensors"),
            "--sparsity",
            "1.2",
        ]),
        "[0, 1)",
    );
    fails_with(
        &fasterai(&[
            "sparsify",
            &d("tiny.safetensors"),
            "-o",
            &d("b.safetensors"),
            "--sparsity",
            "0.2",
            "--granularity",
            "blob",
        ]),
        "unknown granularity",
    );
    fails_with(
        &fasterai(&[
            "sparsify",
            &d("tiny.safetensors"),
            "-o",
            &d("b.safetensors"),
            "--sparsity",
            "0.2",
            "--layers",
            "nope",
        ]),
        "nope",
    );
}

#[test]
fn groups_of_a_resnet_and_pruning_it_by_importance() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let out = fasterai(&["inspect", "resnet20", "--groups"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // The stem and every block of stage 1 make one group through the residual additions.
    assert!(
        text.contains("made by   conv1, layer1.0.conv2, layer1.1.conv2, layer1.2.conv2"),
        "{text}"
    );
    assert!(text.contains("locked: the model output"), "{text}");

    let out = fasterai(&[
        "prune",
        "resnet20",
        "--speedup",
        "2",
        "--context",
        "global",
        "--criterion",
        "l1",
        "-o",
        &d("half.safetensors"),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (before, after) = (
        report["macs_before"].as_u64().unwrap(),
        report["macs_after"].as_u64().unwrap(),
    );
    assert!(after < before, "{report}");
    write_npy(
        &dir.path().join("x.npy"),
        &[2, 3, 32, 32],
        &[0.25; 2 * 3 * 1024],
    );
    let out = fasterai(&[
        "predict",
        &d("half.safetensors"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("y.npy"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_npy(&dir.path().join("y.npy")).0, [2, 10]);
    fails_with(
        &fasterai(&[
            "prune",
            "resnet20",
            "--ratio",
            "0.3",
            "--context",
            "everywhere",
            "-o",
            &d("z.safetensors"),
        ]),
        "expected one of local, global",
    );
}

#[test]
fn inputs_are_never_overwritten_and_odd_models_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let model = d("tiny.safetensors");
    let before = std::fs::read(&model).unwrap();
    fails_with(
        &fasterai(&[
            "predict",
            &model,
            "--input",
            &d("x.npy"),
            "--output",
            &model,
            "--force",
        ]),
        "refusing to write the output over the input",
    );
    fails_with(
        &fasterai(&[
            "train",
            &model,
            "--data",
            "synthetic:16",
            "--epochs",
            "1",
            "-o",
            &d("t.safetensors"),
            "--history",
            &model,
            "--force",
        ]),
        "refusing to write the output over the input",
    );
    assert_eq!(std::fs::read(&model).unwrap(), before);

    // A model on flat inputs: decompose probes it with vectors.
    let device = parse_device("flex").unwrap();
    let mut g = GraphBuilder::new();
    g.then("fc1", LayerSpec::linear(8, 32));
    g.then("relu", LayerSpec::relu());
    g.then("fc2", LayerSpec::linear(32, 4));
    let net = Graph::from_spec(&g.build(), InitScheme::default(), &device);
    save_model(
        &Model::new("flat", vec![8], net).unwrap(),
        &dir.path().join("flat.safetensors"),
        false,
    )
    .unwrap();
    let out = fasterai(&[
        "decompose",
        &d("flat.safetensors"),
        "-o",
        &d("flat_svd.safetensors"),
        "--fc",
        "0.5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A layer that lost every filter: pruning keeps one channel and says so.
    let out = fasterai(&[
        "sparsify",
        "vgg11_bn_small",
        "--width",
        "0.0625",
        "--sparsity",
        "0.5",
        "--granularity",
        "layer",
        "--context",
        "global",
        "-o",
        &d("dead.safetensors"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fasterai(&[
        "prune",
        &d("dead.safetensors"),
        "-o",
        &d("dead_pruned.safetensors"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("are zero: one is kept"), "{text}");
}

#[test]
fn export_import_and_predict_through_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let expected = setup(dir.path());
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = fasterai(&["export", &d("tiny.safetensors"), "-o", &d("tiny.onnx")]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("opset 17"));
    // Any command takes the ONNX file directly, and `import` makes a model file of it.
    ok(&fasterai(&[
        "predict",
        &d("tiny.onnx"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("y_onnx.npy"),
    ]));
    ok(&fasterai(&[
        "import",
        &d("tiny.onnx"),
        "-o",
        &d("back.safetensors"),
    ]));
    ok(&fasterai(&[
        "predict",
        &d("back.safetensors"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("y_back.npy"),
    ]));
    for y in ["y_onnx.npy", "y_back.npy"] {
        let (shape, values) = read_npy(&dir.path().join(y));
        assert_eq!(shape, vec![3, 5]);
        assert_eq!(values, expected, "{y}: outputs must be bit-identical");
    }

    fails_with(
        &fasterai(&["export", &d("tiny.safetensors"), "-o", &d("tiny.txt")]),
        ".onnx",
    );
    fails_with(
        &fasterai(&["export", &d("tiny.safetensors"), "-o", &d("tiny.onnx")]),
        "--force",
    );
    fails_with(
        &fasterai(&[
            "import",
            &d("tiny.onnx"),
            "--weights",
            &d("x.npy"),
            "-o",
            &d("z.safetensors"),
        ]),
        "carries its weights",
    );
    std::fs::write(dir.path().join("broken.onnx"), b"\x0a\xff\xff\xff garbage").unwrap();
    fails_with(
        &fasterai(&["import", &d("broken.onnx"), "-o", &d("z.safetensors")]),
        "not a valid ONNX model",
    );
}

#[test]
fn a_killed_training_run_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let args = |out: &str| -> Vec<String> {
        [
            "sparsify",
            "vgg11_bn_small",
            "--width",
            "0.125",
            "--num-classes",
            "10",
            "--sparsity",
            "0.5",
            "--schedule",
            "agp",
            "--data",
            "synthetic:400",
            "--epochs",
            "4",
            "--batch-size",
            "50",
            "-o",
            out,
        ]
        .map(String::from)
        .to_vec()
    };
    // One thread: flex's parallel reductions would make even two uninterrupted runs differ in
    // the last bits, which training amplifies.
    let command = |args: &[String]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fasterai"));
        c.args(args).env("RAYON_NUM_THREADS", "1");
        c
    };
    let run = |args: &[String]| command(args).output().unwrap();
    let whole = d("whole.safetensors");
    let out = run(&args(&whole));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !Path::new(&format!("{whole}.state")).exists(),
        "state left after success"
    );

    // The same run, killed once its first epoch is on disk.
    let stopped = d("stopped.safetensors");
    let progress = dir.path().join("stopped.safetensors.state/progress.json");
    let mut child = command(&args(&stopped))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !progress.is_file() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be stopped"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Starting again without --resume is refused, not silently restarted.
    fails_with(&run(&args(&stopped)), "--resume");
    let out = run(&[args(&stopped), vec!["--resume".into()]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming after epoch"), "{stderr}");
    let tensors = |path: &str| {
        let model = fasterai::core::io::load_model(Path::new(path), &Device::flex()).unwrap();
        fasterai::core::io::pytorch_tensors(&model.net).unwrap()
    };
    assert!(
        tensors(&stopped) == tensors(&whole),
        "the resumed model differs from the uninterrupted one"
    );
}

#[test]
fn quantize_train_and_distill_with_qat_then_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let (float, int8) = (d("f.safetensors"), d("q.safetensors"));
    let data = [
        "--data",
        "synthetic:200",
        "--epochs",
        "1",
        "--batch-size",
        "50",
    ];
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let train = ["train", "vgg11_bn_small", "--width", "0.125", "-o", &float];
    ok(&fasterai(&[&train[..], &data].concat()));

    let out = fasterai(&[
        "quantize",
        &float,
        "--data",
        "synthetic:200",
        "--calibration",
        "mse",
        "--json",
        "-o",
        &int8,
    ]);
    ok(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = summary["report"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 10, "8 convolutions and 2 linear layers");
    assert!(layers.iter().all(|l| l["quantized"] == true));
    let ratio =
        summary["input_bytes"].as_f64().unwrap() / summary["output_bytes"].as_f64().unwrap();
    assert!(ratio > 3.5, "{ratio}");
    let device = parse_device("flex").unwrap();
    let q = load_model(Path::new(&int8), &device).unwrap();
    assert_eq!(q.quantized.len(), 10);
    ok(&fasterai(&["eval", &int8, "--data", "synthetic:200"]));
    ok(&fasterai(&["export", &int8, "-o", &d("q.onnx")]));
    // Our own int8 export names what it cannot import; plain training of an int8 model is
    // refused before any epoch runs.
    fails_with(
        &fasterai(&["import", &d("q.onnx"), "-o", &d("back.safetensors")]),
        "QuantizeLinear",
    );
    fails_with(
        &fasterai(&[&["train", &int8, "-o", &d("t.safetensors")][..], &data].concat()),
        "with --qat",
    );

    // Clear errors.
    let again = fasterai(&[
        "quantize",
        &int8,
        "--data",
        "synthetic:200",
        "-o",
        &d("qq.safetensors"),
    ]);
    fails_with(&again, "already quantized");
    fails_with(
        &fasterai(&["fold", &int8, "-o", &d("x.safetensors")]),
        "is quantized",
    );
    for (flag, value, needle) in [
        ("--bits", "9", "9-bit"),
        ("--calibration", "entropy", "minmax, percentile:P"),
        ("--calibration", "percentile:10", "(50, 100]"),
    ] {
        let out = fasterai(&[
            "quantize",
            &float,
            "--data",
            "synthetic:200",
            flag,
            value,
            "-o",
            &d("x.safetensors"),
        ]);
        fails_with(&out, needle);
    }
    let tiny = d("tiny.safetensors");
    setup(dir.path());
    let out = fasterai(&[
        "quantize",
        &tiny,
        "--data",
        "synthetic:200",
        "-o",
        &d("x.safetensors"),
    ]);
    fails_with(&out, "cannot take");
    let out = fasterai(
        &[
            &[
                "train",
                "vgg11_bn_small",
                "--qat",
                "-o",
                &d("x.safetensors"),
            ][..],
            &data,
        ]
        .concat(),
    );
    fails_with(&out, "trained model");

    // QAT by training and by distillation from the float model: int8 files come out.
    let (qat, kd) = (d("qat.safetensors"), d("kd.safetensors"));
    ok(&fasterai(
        &[
            &["train", &float, "--qat", "--lr", "0.01", "-o", &qat][..],
            &data,
        ]
        .concat(),
    ));
    let distill = [
        "distill",
        "--teacher",
        &float,
        "--student",
        &float,
        "--qat",
        "-o",
        &kd,
    ];
    ok(&fasterai(&[&distill[..], &data].concat()));
    for file in [&qat, &kd] {
        let m = load_model(Path::new(file), &device).unwrap();
        assert_eq!(m.quantized.len(), 10, "{file}");
    }
}
