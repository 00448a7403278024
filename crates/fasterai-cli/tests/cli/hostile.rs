//! Files from strangers: the crafted corpus in `tests/corpus/` (one or more files per class of
//! attack: sizes that overflow, sizes that would exhaust memory, malformed ONNX graphs, damaged
//! quantized weights, arrays that lie about their size), each run through the command a user
//! would run on it, in a child process under a 2 GiB address-space limit and a time limit.
//! Every one must end in a clean error that says what is wrong (or, for the valid files among
//! them, in success): no panic, no abort, no signal, no hang, no allocation beyond the limit.
//!
//! The files and their generators are in `corpus.rs`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fasterai::core::io::save_model;
use fasterai::core::testing::tiny_cnn;
use fasterai::onnx::testing::{model_proto, node, tensor};
use fasterai::prelude::*;
use prost::Message;

use super::corpus::{corpus, external_linear, transposed};

/// Address space a child may use: the tool runs a real model in far less (a ResNet-20 bench
/// runs in 2 GiB), and any file that makes it reach for more fails the test.
const MEMORY_LIMIT_KB: u64 = 2 << 20;
/// No input may keep the tool busy longer.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// What a user runs on a file.
#[derive(Clone, Copy, Debug)]
enum Run {
    /// `inspect FILE`.
    Inspect,
    /// `predict FILE --input x.npy` (a `[1, 2, 1, 1]` batch).
    Predict,
    /// `predict tiny.safetensors --input FILE` (a valid model).
    PredictInput,
    /// `import FILE -o out.safetensors`.
    Import,
}

/// One crafted file: name, how it is run, and the phrase its error must contain (`None`: a
/// valid file that must succeed).
struct Case {
    file: &'static str,
    run: Run,
    error: Option<&'static str>,
}

const fn fails(file: &'static str, run: Run, error: &'static str) -> Case {
    Case {
        file,
        run,
        error: Some(error),
    }
}

const CASES: &[Case] = &[
    // Sizes that overflow (shape arithmetic once wrapped, and burn-flex wrote out of bounds).
    fails("pool_rows_2e61.safetensors", Run::Predict, "largest size"),
    fails("pool_rows_2e61.safetensors", Run::Inspect, "largest size"),
    fails(
        "conv_padding_2e63.safetensors",
        Run::Inspect,
        "largest size",
    ),
    fails(
        "pool_dilation_2e62.safetensors",
        Run::Predict,
        "largest size",
    ),
    fails(
        "input_2e60_elements.safetensors",
        Run::Inspect,
        "elements per sample",
    ),
    // Sizes that would exhaust memory before any check.
    fails("batch_norm_2e31.safetensors", Run::Inspect, "largest size"),
    fails(
        "batch_norm_2e24_no_weights.safetensors",
        Run::Inspect,
        "needs 67108864 values",
    ),
    fails(
        "linear_2e48_no_weights.safetensors",
        Run::Inspect,
        "needs 281474993487872 values",
    ),
    fails(
        "header_beyond_file.safetensors",
        Run::Inspect,
        "header length",
    ),
    // Quantized weights that the grid cannot hold.
    fails(
        "codes_outside_grid.safetensors",
        Run::Predict,
        "outside the 4-bit grid",
    ),
    fails(
        "scale_zero.safetensors",
        Run::Predict,
        "positive and finite",
    ),
    fails(
        "scale_negative.safetensors",
        Run::Predict,
        "positive and finite",
    ),
    fails(
        "activation_scale_zero.safetensors",
        Run::Inspect,
        "scale must be positive",
    ),
    // Arrays whose header lies about their size.
    fails(
        "shape_wraps.npy",
        Run::PredictInput,
        "more data than the file holds",
    ),
    fails(
        "truncated.npy",
        Run::PredictInput,
        "more data than the file holds",
    ),
    // Malformed ONNX graphs that panicked the importer.
    fails("add_no_inputs.onnx", Run::Import, "has no inputs"),
    fails("concat_no_inputs.onnx", Run::Import, "has no inputs"),
    fails("div_min_by_minus_one.onnx", Run::Import, "reshaping"),
    fails(
        "squeeze_bad_axis.onnx",
        Run::Import,
        "not an axis of size 1",
    ),
    fails("reshape_product_wraps.onnx", Run::Import, "cannot reshape"),
    fails("batch_norm_2e31.onnx", Run::Import, "elements per sample"),
    fails(
        "batch_norm_2e20_small_params.onnx",
        Run::Import,
        "need 4194304 weight values",
    ),
    fails("expand_2e40.onnx", Run::Import, "largest size"),
    fails("stride_2e62_auto_pad.onnx", Run::Import, "sizes in [1,"),
    fails("quantize_linear.onnx", Run::Import, "QuantizeLinear"),
    // Constants that broadcast along the wrong axis are no bias.
    fails("conv_plus_row.onnx", Run::Import, "bias of the convolution"),
    fails(
        "matmul_plus_column.onnx",
        Run::Import,
        "bias of the convolution",
    ),
    // Valid exports that were refused or panicked.
    Case {
        file: "reduce_mean_keepdims_0.onnx",
        run: Run::Import,
        error: None,
    },
    Case {
        file: "concat_one_input.onnx",
        run: Run::Import,
        error: None,
    },
];

/// Runs the CLI under the memory limit and `time_limit`: its exit status and stderr, or why it
/// did not end by itself.
pub(super) fn run_bounded(
    args: &[&str],
    time_limit: Duration,
) -> Result<(std::process::ExitStatus, String), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_LIMIT_KB}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_fasterai"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > time_limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("hung (killed after {time_limit:?})"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok((status, reader.join().expect("reader")))
}

/// Why an outcome is not clean: a signal (a crash, an abort), a panic, an allocation failure,
/// an exit code other than 0 (success) and 1 (a reported error).
pub(super) fn unclean(status: std::process::ExitStatus, stderr: &str) -> Option<String> {
    if status.code().is_none() {
        return Some(format!("killed by a signal ({status})"));
    }
    if stderr.contains("panicked") {
        return Some("panicked".into());
    }
    if stderr.contains("memory allocation") {
        return Some("ran out of memory".into());
    }
    (!matches!(status.code(), Some(0 | 1))).then(|| format!("exit status {status}"))
}

/// Asserts a clean outcome: the expected error (exit code 1, the phrase) or success.
fn assert_clean(args: &[&str], error: Option<&str>) {
    let what = format!("`fasterai {}`", args.join(" "));
    let (status, stderr) = run_bounded(args, TIME_LIMIT).unwrap_or_else(|e| panic!("{what} {e}"));
    if let Some(problem) = unclean(status, &stderr) {
        panic!("{what}: {problem}: {stderr}");
    }
    match error {
        Some(phrase) => {
            assert_eq!(status.code(), Some(1), "{what} should fail: {stderr}");
            assert!(
                stderr.contains(phrase),
                "{what}: lacks `{phrase}`: {stderr}"
            );
        }
        None => assert!(status.success(), "{what} should succeed: {stderr}"),
    }
}

#[test]
fn every_crafted_file_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let device = Device::flex();
    let model = Model::new("tiny", vec![3, 16, 16], tiny_cnn(3, 5, &device)).unwrap();
    save_model(&model, &dir.path().join("tiny.safetensors"), false).unwrap();
    super::write_npy(&dir.path().join("x.npy"), &[1, 2, 1, 1], &[0.5, -1.0]);
    for (i, case) in CASES.iter().enumerate() {
        let file = corpus().join(case.file);
        assert!(file.is_file(), "{} is missing from the corpus", case.file);
        let file = file.to_string_lossy().into_owned();
        let (out, x) = (d(&format!("out{i}")), d("x.npy"));
        let args: Vec<&str> = match case.run {
            Run::Inspect => vec!["inspect", &file],
            Run::Predict => vec!["predict", &file, "--input", &x, "-o", &out],
            Run::PredictInput => {
                let tiny = d("tiny.safetensors");
                let args = ["predict", &tiny, "--input", &file, "-o", &out];
                assert_clean(&args, case.error);
                continue;
            }
            Run::Import => vec!["import", &file, "-o", &out],
        };
        assert_clean(&args, case.error);
    }
}

#[test]
fn external_data_cannot_escape_the_model_folder_or_block() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, outside) = (dir.path().join("model"), dir.path().join("secret.bin"));
    std::fs::create_dir(&model_dir).unwrap();
    std::fs::write(&outside, [0u8; 4 * 2 * 3]).unwrap();
    std::os::unix::fs::symlink(&outside, model_dir.join("weights.bin")).unwrap();
    let fifo = model_dir.join("fifo.bin");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (location, phrase) in [
        ("weights.bin", "outside the model's folder"),
        ("fifo.bin", "not a regular file"),
    ] {
        let path = model_dir.join(format!("{location}.onnx"));
        std::fs::write(&path, external_linear(location).encode_to_vec()).unwrap();
        let out = dir.path().join("out.safetensors");
        let args = [
            "import",
            path.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        assert_clean(&args, Some(phrase));
    }
}

#[test]
fn a_graph_of_many_nodes_imports_in_linear_time() {
    // 128k nodes once took 85 s (every node scanned every value); linear work is a second or
    // two even unoptimised, so the time limit catches a quadratic importer.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.onnx");
    let mut nodes = Vec::new();
    let mut last = "x".to_string();
    for i in 0..128_000 {
        let out = format!("r{i}");
        nodes.push(node(&format!("relu{i}"), "Relu", &[&last], &out, vec![]));
        last = out;
    }
    nodes.push(node("fc", "Gemm", &[&last, "w"], "y", vec![transposed()]));
    let proto = model_proto(
        nodes,
        vec![tensor("w", &[3, 2], &[0.0; 6])],
        &[None, Some(2)],
        17,
    );
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let start = Instant::now();
    assert_clean(&["inspect", path.to_str().unwrap()], None);
    eprintln!("128k-node import + inspect: {:?}", start.elapsed());
}

#[test]
fn a_state_folder_a_run_did_not_write_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let state = dir.path().join("m.safetensors.state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("notes.txt"), b"mine").unwrap();
    let train = [
        "train",
        "vgg11_bn_small",
        "--width",
        "0.125",
        "--data",
        "synthetic:40",
        "--epochs",
        "1",
        "-o",
        out.to_str().unwrap(),
    ];
    for force in [false, true] {
        let args: Vec<&str> = train
            .iter()
            .copied()
            .chain(force.then_some("--force"))
            .collect();
        assert_clean(&args, Some("no training run wrote"));
        assert_eq!(std::fs::read(state.join("notes.txt")).unwrap(), b"mine");
    }
}

#[test]
fn smaller_holes_stay_closed() {
    let dir = tempfile::tempdir().unwrap();
    // `inspect` says what a file's checksum covers.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fasterai-core/tests/fixtures/v2_data_crc_vgg11_bn_small.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fasterai"))
        .args(["inspect", fixture.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("older format, header unverified"),
        "{stdout}"
    );
    // A folder that cannot be written fails before any work.
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let mut perms = std::fs::metadata(&locked).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&locked, perms).unwrap();
    let target = locked.join("m.safetensors");
    // (root may write anyway: then there is nothing to refuse.)
    if std::fs::write(locked.join("probe"), b"").is_err() {
        assert_clean(
            &["fold", "resnet20", "-o", target.to_str().unwrap()],
            Some("cannot write to the folder"),
        );
    }
    // `prune --ignore` takes a comma-separated list, as `quantize --skip` does.
    let pruned = dir.path().join("p.safetensors");
    assert_clean(
        &[
            "prune",
            "resnet20",
            "--ratio",
            "0.25",
            "--ignore",
            "conv1,layer1.0.conv1",
            "-o",
            pruned.to_str().unwrap(),
        ],
        None,
    );
}
