//! Vision transformers through the CLI: train, predict, bench; the transformer groups listed,
//! masked and removed, and pruned by kind.

use std::path::Path;

use super::{fails_with, fasterai, read_npy, write_npy};

/// Runs the CLI and asserts success.
fn ok(args: &[&str]) -> std::process::Output {
    let out = fasterai(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_vision_transformer_inspects_trains_predicts_and_benches_but_does_not_export() {
    let json = ok(&["inspect", "vit_b_16", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["total_params"], 86_567_656);
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let model = d("vit.safetensors");
    ok(&[
        "train",
        "vit_cifar",
        "--data",
        "synthetic:64",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--optimizer",
        "adamw",
        "--weight-decay",
        "0.05",
        "--lr",
        "0.001",
        "--lr-schedule",
        "warmup-cosine",
        "-o",
        &model,
    ]);
    let data: Vec<f32> = (0..2 * 3 * 32 * 32).map(|i| (i % 7) as f32 - 3.0).collect();
    write_npy(Path::new(&d("x.npy")), &[2, 3, 32, 32], &data);
    ok(&[
        "predict",
        &model,
        "--input",
        &d("x.npy"),
        "--output",
        &d("y.npy"),
    ]);
    let (shape, y) = read_npy(Path::new(&d("y.npy")));
    assert_eq!(shape, vec![2, 10]);
    assert!(y.iter().all(|v| v.is_finite()));
    let out = ok(&["bench", &model, "--runs", "2", "--warmup", "1", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every op of the ViT runs on the engine's kernels, the GELUs in their Linears' output pass.
    let engine = &report["engine"];
    assert_eq!(engine["as_built"], serde_json::json!([]), "{engine}");
    assert!(engine["fused_nodes"].as_u64().unwrap() > 0, "{engine}");
    // No ONNX form for transformer ops yet: a typed error naming the node, and no file.
    let onnx = d("vit.onnx");
    fails_with(
        &fasterai(&["export", &model, "-o", &onnx]),
        "conv_proj.tokens",
    );
    assert!(!Path::new(&onnx).exists());
    // Heads masked (one of three per block), then removed: the same outputs, 6 heads fewer.
    let sparse = d("sparse.safetensors");
    let pruned = d("pruned.safetensors");
    ok(&[
        "sparsify",
        &model,
        "--granularity",
        "head",
        "--sparsity",
        "0.34",
        "-o",
        &sparse,
    ]);
    let report = ok(&["prune", &sparse, "-o", &pruned, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 6, "{report}");
    assert!(
        groups
            .iter()
            .all(|g| g["kind"] == "head" && g["removed"] == 1)
    );
    let predict = |m: &str, y: &str| ok(&["predict", m, "--input", &d("x.npy"), "--output", &d(y)]);
    predict(&sparse, "ys.npy");
    predict(&pruned, "yp.npy");
    let (ys, yp) = (
        read_npy(Path::new(&d("ys.npy"))).1,
        read_npy(Path::new(&d("yp.npy"))).1,
    );
    let scale = ys.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ys
        .iter()
        .zip(&yp)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(scale > 0.0 && diff <= 1e-5 * scale, "{diff} of {scale}");
    // By kind and by importance, heads ranked on calibration images.
    let out = ok(&[
        "prune",
        &model,
        "--heads",
        "0.5",
        "--mlp",
        "0.25",
        "--criterion",
        "output",
        "--data",
        "synthetic:16",
        "-o",
        &d("kinds.safetensors"),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "head").count(),
        6,
        "{report}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "mlp_unit").count(),
        6,
        "{report}"
    );
    // Calibration reads only training files: a CIFAR folder without `test_batch` serves.
    if let Some(cifar) = fasterai::core::testing::shared_data("cifar-10-batches-bin") {
        let data = format!("cifar10:{}", cifar.display());
        ok(&[
            "prune",
            &model,
            "--heads",
            "0.34",
            "--criterion",
            "output",
            "--data",
            &data,
            "--train-files",
            "data_batch_1",
            "-o",
            &d("cifar.safetensors"),
        ]);
    }
    fails_with(
        &fasterai(&[
            "prune",
            &model,
            "--heads",
            "0.5",
            "--criterion",
            "output",
            "-o",
            &d("n.safetensors"),
        ]),
        "pass --data",
    );
    // The groups, listed with their kinds.
    let out = ok(&["inspect", "vit_cifar", "--groups", "--json"]);
    let groups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for kind in ["embed", "mlp_unit", "head", "qk_dim", "v_dim"] {
        assert!(
            groups.as_array().unwrap().iter().any(|g| g["kind"] == kind),
            "{kind}"
        );
    }
    fails_with(
        &fasterai(&[
            "train",
            "vit_cifar",
            "--data",
            "synthetic:8",
            "--warmup",
            "1.5",
            "-o",
            &d("w.safetensors"),
        ]),
        "[0, 1)",
    );
}
