//! Fuzzing every parser of untrusted files through the command a user runs on them: model
//! files (`inspect`, `predict`), ONNX (`import`), `.npy` arrays (`predict --input`), PyTorch
//! checkpoints (`import ARCH --weights`, parsed by burn-store, never executed) and run-state
//! folders (`train --resume`). `proptest` generates structured inputs (valid files with
//! hostile sizes, random graphs, mutated corpus files); each runs in a child process under the
//! 2 GiB address-space limit of `hostile.rs` and a time limit, and must end in success or a
//! reported error: no signal, abort, panic or hang. The memory bound is the child's limit
//! (`ulimit -v`): an allocation beyond it fails, and the failure is caught as an abort.
//!
//! Runs for `FASTERAI_FUZZ_SECONDS` (default 60): `cargo xtask fuzz --minutes N`, and a minute
//! in `cargo xtask ci`. A failing input is written to `target/fuzz-failures/` and named in
//! the failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fasterai::onnx::proto::{AttributeProto, ModelProto, NodeProto, TensorProto, data_type};
use fasterai::onnx::testing::{info, model_proto, node};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use prost::Message;
use serde_json::json;

use super::hostile::{
    arch, corpus, floats, model_file, npy_with, quantized_linear, run_bounded, unclean,
};

/// One input may keep the tool busy this long (generated models are tiny).
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// Sizes and integers that find edge cases: zero, one, small, and values near the limits of
/// every integer width a file can carry.
fn interesting() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 0i64..6,
        1 => Just(-1i64),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(1 << 24),
        1 => Just((1 << 24) + 1),
        1 => Just(1 << 31),
        1 => Just(1 << 32),
        1 => Just(1 << 62),
        1 => any::<i64>(),
    ]
}

/// A failed run's report (the failing input, shrunk where proptest could).
fn failure<V: std::fmt::Debug>(
    result: Result<(), proptest::test_runner::TestError<V>>,
) -> Result<(), String> {
    result.map_err(|e| e.to_string())
}

/// A file written for one case, kept in the temp dir.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs the CLI on one generated input; an unclean end saves the input and fails the case.
fn check(args: &[&str], input: &Path) -> Result<(), TestCaseError> {
    let problem = match run_bounded(args, CASE_LIMIT) {
        Err(hang) => hang,
        Ok((status, stderr)) => match unclean(status, &stderr) {
            None => return Ok(()),
            Some(p) => format!(
                "{p}: {}",
                stderr.lines().take(12).collect::<Vec<_>>().join("\n")
            ),
        },
    };
    let saved = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/fuzz-failures")
        .join(input.file_name().unwrap_or_default());
    let _ = std::fs::create_dir_all(saved.parent().unwrap());
    let _ = copy_path(input, &saved);
    Err(TestCaseError::fail(format!(
        "`fasterai {}` {problem} (input saved as {})",
        args.join(" "),
        saved.display()
    )))
}

fn copy_path(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_path(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

/// Byte-level damage: flips, overwrites with interesting bytes, truncation, insertion.
#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, m)| Damage::Flip(at, m)),
        (
            any::<usize>(),
            prop::sample::select(vec![0u8, 0xff, 0x7f, 0x80, b'9', b'"', b'-'])
        )
            .prop_map(|(at, b)| Damage::Set(at, b)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Damage::Insert(at, b)),
    ]
}

fn apply(mut bytes: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        let len = bytes.len().max(1);
        match d {
            Damage::Flip(at, m) if !bytes.is_empty() => bytes[at % len] ^= m,
            Damage::Set(at, b) if !bytes.is_empty() => bytes[at % len] = *b,
            Damage::Truncate(at) => bytes.truncate(at % len),
            Damage::Insert(at, b) => {
                let at = at % len;
                bytes.splice(at.min(bytes.len())..at.min(bytes.len()), b.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

// ---- model files ----

/// A tensor of a model file: name, dtype, shape, bytes.
type Tensor = (String, String, Vec<usize>, Vec<u8>);

/// Small valid models (architecture, tensors) to mutate: a conv → bn → relu → pool → linear
/// chain, a residual block, and a 4-bit quantized linear layer.
fn model_template(which: usize) -> (serde_json::Value, Vec<Tensor>) {
    let t = |name: &str, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        (
            name.to_string(),
            "F32".to_string(),
            shape,
            floats(&vec![0.25; n]),
        )
    };
    match which % 3 {
        0 => (
            arch(
                &[2, 4, 4],
                json!([
                    {"name": "conv", "op": {"type": "Conv2d", "in_channels": 2, "out_channels": 3,
                     "kernel_size": [3, 3], "padding": [1, 1], "bias": true}, "inputs": ["input"]},
                    {"name": "bn", "op": {"type": "BatchNorm2d", "num_features": 3}, "inputs": ["conv"]},
                    {"name": "relu", "op": {"type": "ReLU"}, "inputs": ["bn"]},
                    {"name": "pool", "op": {"type": "MaxPool2d", "kernel_size": [2, 2], "stride": [2, 2]},
                     "inputs": ["relu"]},
                    {"name": "flat", "op": {"type": "Flatten"}, "inputs": ["pool"]},
                    {"name": "fc", "op": {"type": "Linear", "in_features": 12, "out_features": 3},
                     "inputs": ["flat"]},
                ]),
            ),
            vec![
                t("conv.weight", vec![3, 2, 3, 3]),
                t("conv.bias", vec![3]),
                t("bn.weight", vec![3]),
                t("bn.bias", vec![3]),
                t("bn.running_mean", vec![3]),
                t("bn.running_var", vec![3]),
                t("fc.weight", vec![3, 12]),
                t("fc.bias", vec![3]),
            ],
        ),
        1 => (
            arch(
                &[2, 4, 4],
                json!([
                    {"name": "conv", "op": {"type": "Conv2d", "in_channels": 2, "out_channels": 2,
                     "kernel_size": [1, 1]}, "inputs": ["input"]},
                    {"name": "add", "op": {"type": "Add"}, "inputs": ["input", "conv"]},
                    {"name": "pool", "op": {"type": "AdaptiveAvgPool2d", "output_size": [1, 1]},
                     "inputs": ["add"]},
                    {"name": "flat", "op": {"type": "Flatten"}, "inputs": ["pool"]},
                ]),
            ),
            vec![t("conv.weight", vec![2, 2, 1, 1])],
        ),
        _ => {
            // The quantized template as the hostile corpus writes it, parsed back into parts.
            let bytes = quantized_linear([1, -2, 3, -4, 5, 6], [0.1; 3]);
            let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
            let arch: serde_json::Value = serde_json::from_str(
                header["__metadata__"]["fasterai.architecture"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            let data = &bytes[8 + len..];
            let mut tensors: Vec<_> = header
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "__metadata__")
                .map(|(k, v)| {
                    let [a, b] = [0, 1].map(|i| v["data_offsets"][i].as_u64().unwrap() as usize);
                    let shape = v["shape"].as_array().unwrap().iter();
                    (
                        k.clone(),
                        v["dtype"].as_str().unwrap().to_string(),
                        shape.map(|d| d.as_u64().unwrap() as usize).collect(),
                        data[a..b].to_vec(),
                    )
                })
                .collect();
            tensors.sort_by(|a, b| a.0.cmp(&b.0));
            (arch, tensors)
        }
    }
}

/// Every path to a number in a JSON value.
fn number_paths(value: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Number(_) => out.push(path.clone()),
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                number_paths(v, path, out);
                path.pop();
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                number_paths(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'v>(value: &'v mut serde_json::Value, path: &[String]) -> &'v mut serde_json::Value {
    path.iter().fold(value, |v, key| match v {
        serde_json::Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
        other => &mut other[key.as_str()],
    })
}

/// A mutation of a model file: a number of the architecture, a tensor's shape or type, or a
/// node removed.
#[derive(Debug, Clone)]
enum ModelEdit {
    Number(usize, i64),
    Float(usize, f64),
    Shape(usize, usize, i64),
    Dtype(usize, &'static str),
    DropNode(usize),
    DropTensor(usize),
}

fn model_edit() -> impl Strategy<Value = ModelEdit> {
    prop_oneof![
        4 => (any::<usize>(), interesting()).prop_map(|(i, v)| ModelEdit::Number(i, v)),
        1 => (any::<usize>(), prop::sample::select(vec![0.0, -1.0, 1e30, 1e-30, 0.5]))
            .prop_map(|(i, v)| ModelEdit::Float(i, v)),
        2 => (any::<usize>(), any::<usize>(), interesting())
            .prop_map(|(t, d, v)| ModelEdit::Shape(t, d, v)),
        1 => (any::<usize>(), prop::sample::select(vec!["I8", "U8", "F16", "I64", "BOOL", "F64"]))
            .prop_map(|(t, d)| ModelEdit::Dtype(t, d)),
        1 => any::<usize>().prop_map(ModelEdit::DropNode),
        1 => any::<usize>().prop_map(ModelEdit::DropTensor),
    ]
}

fn mutated_model(which: usize, edits: &[ModelEdit], damages: &[Damage]) -> Vec<u8> {
    let (mut arch, mut tensors) = model_template(which);
    for edit in edits {
        let mut paths = Vec::new();
        number_paths(&arch["nodes"], &mut vec!["nodes".into()], &mut paths);
        number_paths(
            &arch["input_shape"],
            &mut vec!["input_shape".into()],
            &mut paths,
        );
        match edit {
            ModelEdit::Number(i, v) if !paths.is_empty() => {
                *at_path(&mut arch, &paths[i % paths.len()]) = json!(v);
            }
            ModelEdit::Float(i, v) if !paths.is_empty() => {
                *at_path(&mut arch, &paths[i % paths.len()]) = json!(v);
            }
            ModelEdit::Shape(t, d, v) if !tensors.is_empty() => {
                let n = tensors.len();
                let shape = &mut tensors[t % n].2;
                if !shape.is_empty() {
                    let len = shape.len();
                    shape[d % len] = *v as usize;
                }
            }
            ModelEdit::Dtype(t, d) if !tensors.is_empty() => {
                let n = tensors.len();
                tensors[t % n].1 = d.to_string();
            }
            ModelEdit::DropNode(i) => {
                if let Some(nodes) = arch["nodes"].as_array_mut().filter(|n| !n.is_empty()) {
                    let n = nodes.len();
                    nodes.remove(i % n);
                }
            }
            ModelEdit::DropTensor(i) if !tensors.is_empty() => {
                let n = tensors.len();
                tensors.remove(i % n);
            }
            _ => {}
        }
    }
    let tensors: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), d.as_str(), s.clone(), b.clone()))
        .collect();
    apply(model_file(arch, &tensors), damages)
}

// ---- ONNX ----

const OPS: &[&str] = &[
    "Conv",
    "BatchNormalization",
    "Relu",
    "Clip",
    "Sigmoid",
    "Mul",
    "Add",
    "Sub",
    "Div",
    "Concat",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Gemm",
    "MatMul",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "Expand",
    "Shape",
    "Gather",
    "Slice",
    "Cast",
    "Constant",
    "Identity",
    "Dropout",
    "HardSigmoid",
    "QuantizeLinear",
];

const ATTRS: &[&str] = &[
    "kernel_shape",
    "pads",
    "strides",
    "dilations",
    "group",
    "axis",
    "axes",
    "keepdims",
    "transB",
    "transA",
    "epsilon",
    "auto_pad",
    "ceil_mode",
    "to",
    "value",
    "allowzero",
];

#[derive(Debug, Clone)]
struct GenNode {
    op: usize,
    inputs: Vec<usize>,
    attrs: Vec<(usize, Vec<i64>)>,
}

#[derive(Debug, Clone)]
struct GenInit {
    dims: Vec<i64>,
    data_type: i32,
    values: usize,
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        0..OPS.len(),
        prop::collection::vec(any::<usize>(), 0..4),
        prop::collection::vec(
            (0..ATTRS.len(), prop::collection::vec(interesting(), 0..5)),
            0..3,
        ),
    )
        .prop_map(|(op, inputs, attrs)| GenNode { op, inputs, attrs })
}

fn gen_init() -> impl Strategy<Value = GenInit> {
    (
        prop::collection::vec(prop_oneof![4 => 0i64..5, 1 => interesting()], 0..4),
        prop::sample::select(vec![
            data_type::FLOAT,
            data_type::INT64,
            data_type::INT8,
            data_type::DOUBLE,
            99,
        ]),
        0usize..40,
    )
        .prop_map(|(dims, data_type, values)| GenInit {
            dims,
            data_type,
            values,
        })
}

fn attribute(name: &str, values: &[i64]) -> AttributeProto {
    match name {
        "auto_pad" => {
            let pads = ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET", "??"];
            let pick = values
                .first()
                .map_or(0, |v| v.unsigned_abs() as usize % pads.len());
            AttributeProto::string(name, pads[pick])
        }
        "epsilon" => AttributeProto::float(name, values.first().copied().unwrap_or(0) as f32),
        "value" => AttributeProto::tensor(
            name,
            TensorProto {
                dims: vec![values.len() as i64],
                data_type: data_type::INT64,
                int64_data: values.to_vec(),
                ..Default::default()
            },
        ),
        _ if values.len() == 1 => AttributeProto::int(name, values[0]),
        _ => AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: values.to_vec(),
            ..Default::default()
        },
    }
}

fn random_onnx(input: &[Option<i64>], inits: &[GenInit], nodes: &[GenNode]) -> ModelProto {
    let mut names: Vec<String> = vec!["x".into()];
    let initializer: Vec<TensorProto> = inits
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let name = format!("c{i}");
            names.push(name.clone());
            let mut t = TensorProto {
                name,
                dims: g.dims.clone(),
                data_type: g.data_type,
                ..Default::default()
            };
            match g.data_type {
                data_type::FLOAT => t.float_data = vec![0.5; g.values],
                data_type::INT64 => t.int64_data = (0..g.values as i64).collect(),
                _ => t.raw_data = vec![1u8; g.values].into(),
            }
            t
        })
        .collect();
    let mut protos: Vec<NodeProto> = Vec::new();
    for (i, g) in nodes.iter().enumerate() {
        let inputs: Vec<String> = g
            .inputs
            .iter()
            .map(|&k| names[k % names.len()].clone())
            .collect();
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let out = if i + 1 == nodes.len() {
            "y".to_string()
        } else {
            format!("v{i}")
        };
        let attrs = g
            .attrs
            .iter()
            .map(|(a, v)| attribute(ATTRS[*a], v))
            .collect();
        protos.push(node(&format!("n{i}"), OPS[g.op], &refs, &out, attrs));
        names.push(out);
    }
    let mut model = model_proto(protos, initializer, input, 17);
    if let Some(graph) = model.graph.as_mut() {
        graph.input = vec![info("x", input)];
    }
    model
}

fn onnx_input() -> impl Strategy<Value = Vec<Option<i64>>> {
    prop::collection::vec(
        prop_oneof![
            1 => Just(None),
            6 => (1i64..6).prop_map(Some),
            1 => interesting().prop_map(Some),
        ],
        1..5,
    )
}

// ---- the fuzz run ----

/// The corpus files of one extension.
fn corpus_files(ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn seconds() -> u64 {
    std::env::var("FASTERAI_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// A tiny run's state folder (stopped once its first epoch is on disk), to mutate.
fn run_state(dir: &Path) -> (Vec<String>, PathBuf) {
    let out = dir.join("run.safetensors");
    let args: Vec<String> = [
        "train",
        "vgg11_bn_small",
        "--width",
        "0.0625",
        "--data",
        "synthetic:20",
        "--batch-size",
        "10",
        "--epochs",
        "3",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.to_string_lossy().into_owned()])
    .collect();
    let state = dir.join("run.safetensors.state");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fasterai"))
        .args(&args)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !state.join("progress.json").is_file() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the progress file's rename complete, then stop the run.
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    child.wait().unwrap();
    (args, state)
}

#[test]
#[ignore = "fuzzing: `cargo xtask fuzz --minutes N`; `cargo xtask ci` runs it for a minute"]
fn fuzz_every_parser_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let budget = Duration::from_secs(seconds());
    let deadline = Instant::now() + budget;
    let device = fasterai::prelude::Device::flex();
    let tiny = fasterai::prelude::Model::new(
        "tiny",
        vec![3, 16, 16],
        fasterai::core::testing::tiny_cnn(3, 5, &device),
    )
    .unwrap();
    fasterai::core::io::save_model(&tiny, &dir.path().join("tiny.safetensors"), false).unwrap();
    super::write_npy(&dir.path().join("x.npy"), &[1, 2, 4, 4], &[0.5; 32]);
    let (train_args, state) = run_state(dir.path());
    let onnx_seeds: Vec<Vec<u8>> = corpus_files("onnx")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let pth_seed = std::fs::read(corpus().join("seed_state_dict.pth")).unwrap();
    let progress_seed = std::fs::read(state.join("progress.json")).unwrap();

    // Seeded from the clock unless FASTERAI_FUZZ_SEED is given, so that runs explore further.
    let seed = std::env::var("FASTERAI_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(1, |t| t.as_nanos() as u64)
        });
    eprintln!("fuzzing for {budget:?}, seed {seed} (FASTERAI_FUZZ_SEED to replay)");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: 8,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let mut runs = [0usize; 6];
    let mut case = 0usize;
    let result: Result<(), String> = (|| {
        while Instant::now() < deadline {
            let target = case % 6;
            case += 1;
            let name = |ext: &str| d(&format!("case{case}.{ext}"));
            let outcome = match target {
                0 => failure(runner.run(
                    &(
                        0usize..3,
                        prop::collection::vec(model_edit(), 0..4),
                        prop::collection::vec(damage(), 0..2),
                    ),
                    |(which, edits, damages)| {
                        let file = write(
                            dir.path(),
                            &format!("case{case}.safetensors"),
                            &mutated_model(which, &edits, &damages),
                        );
                        let f = file.to_str().unwrap();
                        check(&["inspect", f], &file)?;
                        check(
                            &[
                                "predict",
                                f,
                                "--input",
                                &d("x.npy"),
                                "-o",
                                &name("out.npy"),
                                "--force",
                            ],
                            &file,
                        )
                    },
                )),
                1 => failure(runner.run(
                    &(
                        onnx_input(),
                        prop::collection::vec(gen_init(), 0..5),
                        prop::collection::vec(gen_node(), 1..8),
                    ),
                    |(input, inits, nodes)| {
                        let bytes = random_onnx(&input, &inits, &nodes).encode_to_vec();
                        let file = write(dir.path(), &format!("case{case}.onnx"), &bytes);
                        check(
                            &[
                                "import",
                                file.to_str().unwrap(),
                                "-o",
                                &name("out.safetensors"),
                                "--force",
                            ],
                            &file,
                        )
                    },
                )),
                2 => failure(runner.run(
                    &(0..onnx_seeds.len(), prop::collection::vec(damage(), 1..4)),
                    |(seed, damages)| {
                        let bytes = apply(onnx_seeds[seed].clone(), &damages);
                        let file = write(dir.path(), &format!("case{case}.onnx"), &bytes);
                        check(
                            &[
                                "import",
                                file.to_str().unwrap(),
                                "-o",
                                &name("out.safetensors"),
                                "--force",
                            ],
                            &file,
                        )
                    },
                )),
                3 => failure(runner.run(
                    &(
                        prop::collection::vec(interesting(), 0..6),
                        prop::sample::select(vec!["<f4", "<f8", "|u1", "<i8", ">f4", "<c8", "O"]),
                        any::<bool>(),
                        0usize..4096,
                        prop::collection::vec(damage(), 0..2),
                    ),
                    |(dims, descr, fortran, data, damages)| {
                        let shape = format!(
                            "({})",
                            dims.iter().map(|d| format!("{d}, ")).collect::<String>()
                        );
                        let mut bytes = npy_with(descr, fortran, &shape, data);
                        bytes.iter_mut().rev().take(data).for_each(|b| *b = 0x3f);
                        let file = write(
                            dir.path(),
                            &format!("case{case}.npy"),
                            &apply(bytes, &damages),
                        );
                        check(
                            &[
                                "predict",
                                &d("tiny.safetensors"),
                                "--input",
                                file.to_str().unwrap(),
                                "-o",
                                &name("y.npy"),
                                "--force",
                            ],
                            &file,
                        )
                    },
                )),
                4 => failure(
                    runner.run(&prop::collection::vec(damage(), 1..4), |damages| {
                        let file = write(
                            dir.path(),
                            &format!("case{case}.pth"),
                            &apply(pth_seed.clone(), &damages),
                        );
                        check(
                            &[
                                "import",
                                "resnet20",
                                "--weights",
                                file.to_str().unwrap(),
                                "-o",
                                &name("w.safetensors"),
                                "--force",
                            ],
                            &file,
                        )
                    }),
                ),
                _ => failure(runner.run(
                    &(any::<bool>(), prop::collection::vec(damage(), 1..3)),
                    |(progress, damages)| {
                        // A copy of the state with progress.json or one state file damaged.
                        let copy = dir.path().join(format!("case{case}.safetensors.state"));
                        copy_path(&state, &copy).unwrap();
                        let victim = if progress {
                            copy.join("progress.json")
                        } else {
                            let mut files: Vec<PathBuf> = std::fs::read_dir(&copy)
                                .unwrap()
                                .map(|e| e.unwrap().path())
                                .filter(|p| p.extension().is_some_and(|e| e == "bpk"))
                                .collect();
                            files.sort();
                            files[damages.len() % files.len()].clone()
                        };
                        let bytes = if progress {
                            progress_seed.clone()
                        } else {
                            std::fs::read(&victim).unwrap()
                        };
                        std::fs::write(&victim, apply(bytes, &damages)).unwrap();
                        let out = d(&format!("case{case}.safetensors"));
                        let mut args: Vec<&str> = train_args.iter().map(String::as_str).collect();
                        *args.last_mut().unwrap() = &out;
                        args.push("--resume");
                        check(&args, &copy)
                    },
                )),
            };
            runs[target] += 8;
            outcome?;
        }
        Ok(())
    })();
    eprintln!(
        "fuzzed {} inputs: model files {}, random ONNX {}, mutated ONNX {}, .npy {}, .pth {}, run states {}",
        runs.iter().sum::<usize>(),
        runs[0],
        runs[1],
        runs[2],
        runs[3],
        runs[4],
        runs[5]
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
