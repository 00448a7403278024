//! Project automation: `cargo xtask <setup|demo|test|ci|parity>`.
//!
//! Every command that needs system packages runs `setup` first, so on a fresh machine
//! `cargo xtask demo` and `cargo xtask ci` are all there is to type.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian packages the build and tests need: OpenBLAS (LAPACK for `ndarray-linalg`) and Mesa's
/// software Vulkan driver (lavapipe) so that the wgpu backend runs without a GPU.
const APT_PACKAGES: &[&str] = &["libopenblas-dev", "mesa-vulkan-drivers", "pkg-config"];

const HELP: &str = "\
cargo xtask <command>

  setup    install the system packages the build and tests need (apt-get)
  demo     build the CLI (release) and run the demo on the flex backend
  test     run the test suite (flex, and the flex/wgpu parity test on software Vulkan)
  ci       what CI runs: setup, fmt check, clippy, then `test` with ../shared required (benches
           and examples included), then a minute of `fuzz`; prints each stage's time
  parity   PyTorch parity: torch writes VGG16-bn, every branched family's and the vision
           transformers' checkpoints and outputs, fasterai must match; then the ONNX and the
           language-model checks
  parity-lm
           the language-model checks alone: transformers writes GPT-2 small and a small Llama
           (f32, sharded, bf16) with random weights; logits, greedy generation and our
           Hugging Face export loaded back by transformers must match
  fuzz [--minutes N]
           fuzz every parser of untrusted files through the CLI (model files, ONNX, .npy,
           .pth, run states) for N minutes (default 10); CI runs it for one
  bench-vs-torch [--before OLD_CLI]
           seed 004's chain (CLI steps) and batch-1 latency beside fasterai 0.4.1 and PyTorch,
           in one run, as ratios (and beside another build of the CLI)
";

fn main() -> Result<()> {
    let task = env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "setup" => setup(),
        "demo" => setup().and_then(|_| demo()),
        "test" => setup().and_then(|_| test()),
        "ci" => ci(),
        "parity" => setup().and_then(|_| parity()),
        "parity-lm" => setup().and_then(|_| {
            let python = torch_venv(&LM_PACKAGES)?;
            run(&cargo(), &["build", "--release", "-p", "fasterai-cli"])?;
            let cli = target_dir().join("release/fasterai");
            lm_parity(&python, cli.to_str().expect("utf-8 path"))
        }),
        "bench-vs-torch" => setup().and_then(|_| bench_vs_torch()),
        "fuzz" => setup().and_then(|_| fuzz(minutes_arg()?)),
        _ => {
            print!("{HELP}");
            if task.is_empty() || task == "help" || task == "--help" {
                Ok(())
            } else {
                bail!("unknown task `{task}`")
            }
        }
    }
}

/// The workspace root. `cargo run` sets `CARGO_MANIFEST_DIR` at run time; prefer it to the
/// compile-time value, which is stale when clones share one target dir.
fn root() -> PathBuf {
    let manifest = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let manifest = manifest.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, echoing it, failing on a non-zero exit.
fn run(program: &str, args: &[&str]) -> Result<()> {
    run_env(program, args, &[])
}

fn run_env(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("\n$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start `{program}`"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn setup() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        eprintln!(
            "setup: system packages present ({})",
            APT_PACKAGES.join(", ")
        );
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let (program, prefix): (&str, &[&str]) = if is_root {
        ("apt-get", &[])
    } else {
        ("sudo", &["apt-get"])
    };
    let with = |args: &[&str]| -> Vec<String> {
        prefix.iter().chain(args).map(|s| s.to_string()).collect()
    };
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    let update = with(&["update", "-q"]);
    run_env(
        program,
        &update.iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    )?;
    let mut install = with(&["install", "-y", "-q", "--no-install-recommends"]);
    install.extend(missing.iter().map(|s| s.to_string()));
    run_env(
        program,
        &install.iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    )
    .context("installing system packages (needs root or sudo)")
}

fn demo() -> Result<()> {
    let cargo = cargo();
    run(&cargo, &["build", "--release", "-p", "fasterai-cli"])?;
    let cli = target_dir().join("release/fasterai");
    let cli = cli.to_str().expect("utf-8 path");
    run(cli, &["inspect", "vgg16_bn", "--num-classes", "10"])?;
    run(
        cli,
        &[
            "bench",
            "vgg16_bn",
            "--num-classes",
            "10",
            "--input",
            "3x224x224",
            "--runs",
            "5",
        ],
    )?;
    run(
        cli,
        &[
            "bench",
            "vgg16_bn",
            "--num-classes",
            "10",
            "--input",
            "3x32x32",
            "--runs",
            "20",
        ],
    )?;
    run(
        &cargo,
        &[
            "run",
            "--release",
            "-p",
            "fasterai",
            "--example",
            "compress_vgg",
        ],
    )?;
    let out = target_dir().join("demo");
    std::fs::create_dir_all(&out)?;
    let file = |name: &str| out.join(name).to_string_lossy().into_owned();
    // A model with branches: its channel groups, then half its MACs removed by group importance.
    let half = file("resnet20_half.safetensors");
    run(cli, &["inspect", "resnet20", "--groups"])?;
    run(
        cli,
        &[
            "prune",
            "resnet20",
            "--speedup",
            "2",
            "--context",
            "global",
            "-o",
            &half,
            "--force",
        ],
    )?;
    run(
        cli,
        &["bench", "resnet20", "--input", "3x32x32", "--runs", "20"],
    )?;
    run(cli, &["bench", &half, "--input", "3x32x32", "--runs", "20"])?;
    // Train, evaluate and distil on generated images: runs with no data files present.
    let (teacher, student) = (file("teacher.safetensors"), file("student.safetensors"));
    let data = ["--data", "synthetic:2000"];
    let common = ["--epochs", "2", "--force"];
    let train = ["train", "vgg11_bn_small", "--width", "0.25", "-o", &teacher];
    run(cli, &[&train[..], &data, &common].concat())?;
    run(cli, &[&["eval", &teacher][..], &data].concat())?;
    let distill = [
        "distill",
        "--teacher",
        &teacher,
        "--student",
        "vgg11_bn_small",
        "--width",
        "0.125",
        "--loss",
        "soft-target",
        "-o",
        &student,
    ];
    run(cli, &[&distill[..], &data, &common].concat())?;
    // The teacher to int8: per-layer errors, accuracy before and after, a 4× smaller file.
    let int8 = file("teacher.int8.safetensors");
    run(
        cli,
        &[
            &[
                "quantize",
                &teacher,
                "--calibration",
                "mse",
                "-o",
                &int8,
                "--force",
            ][..],
            &data,
        ]
        .concat(),
    )
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The test builds enable wgpu beside flex, so the flex/wgpu parity test (Mesa lavapipe when
/// there is no GPU) runs with the others from one build of Burn instead of a second one.
const TEST_FEATURES: [&str; 2] = ["--features", "fasterai-models/wgpu"];

fn test_with(envs: &[(&str, &str)]) -> Result<()> {
    let cargo = cargo();
    // One test at a time in each binary: Burn's flex RNG is global to the process, so a test
    // drawing weights while another replays a run (the bit-for-bit resume tests) changes that
    // run's dropout draws. Each test still uses every core through rayon.
    let envs = [envs, &[("RUST_TEST_THREADS", "1")]].concat();
    let all = ["test", "--workspace", "--all-targets"];
    run_env(&cargo, &[&all[..], &TEST_FEATURES].concat(), &envs)?;
    let doc = ["test", "--workspace", "--doc"];
    run_env(&cargo, &[&doc[..], &TEST_FEATURES].concat(), &envs)
}

fn test() -> Result<()> {
    test_with(&[])
}

fn ci() -> Result<()> {
    let mut stages: Vec<(&str, std::time::Duration)> = Vec::new();
    let result = ci_stages(&mut stages);
    // Printed on failure too: which stage ran how long.
    eprintln!("\n== stage times ==");
    for (name, time) in &stages {
        eprintln!("{name:<10} {:>6.1} min", time.as_secs_f64() / 60.0);
    }
    result
}

fn ci_stages(stages: &mut Vec<(&'static str, std::time::Duration)>) -> Result<()> {
    let mut stage = |name: &'static str, work: &dyn Fn() -> Result<()>| -> Result<()> {
        let start = std::time::Instant::now();
        let result = work();
        stages.push((name, start.elapsed()));
        result
    };
    let cargo = cargo();
    stage("setup", &setup)?;
    stage("fmt", &|| run(&cargo, &["fmt", "--all", "--", "--check"]))?;
    stage("clippy", &|| {
        run(
            &cargo,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )
    })?;
    // CI requires the reference vectors and datasets: their absence fails, never skips.
    let shared = [("FASTERAI_REQUIRE_SHARED", "1")];
    // `--all-targets` also builds (and smoke-runs) the benches and examples; the flex/wgpu
    // parity test runs among the others.
    stage("tests", &|| test_with(&shared))?;
    stage("fuzz", &|| fuzz(1.0))
}

/// `--minutes N` of `cargo xtask fuzz`, 10 when absent.
fn minutes_arg() -> Result<f64> {
    let args: Vec<String> = env::args().skip(2).collect();
    match args.as_slice() {
        [] => Ok(10.0),
        [flag, n] if flag == "--minutes" => n
            .parse::<f64>()
            .ok()
            .filter(|m| *m > 0.0)
            .with_context(|| format!("--minutes takes a positive number, not `{n}`")),
        _ => bail!("usage: cargo xtask fuzz [--minutes N]"),
    }
}

/// The fuzz test of the CLI's test binary (`tests/cli/fuzz/`) for `minutes`.
fn fuzz(minutes: f64) -> Result<()> {
    let seconds = ((minutes * 60.0).round() as u64).max(1).to_string();
    let args = [
        // `--workspace`, as the tests build: `-p` would unify features differently and
        // rebuild Burn.
        "test",
        "--workspace",
        "--test",
        "cli",
        TEST_FEATURES[0],
        TEST_FEATURES[1],
        "--",
        "--ignored",
        "--exact",
        "fuzz::fuzz_every_parser_through_the_cli",
        "--nocapture",
    ];
    run_env(&cargo(), &args, &[("FASTERAI_FUZZ_SECONDS", &seconds)])
}

/// The Python venv of the comparisons (outside the repository; `FASTERAI_TORCH_VENV` or
/// `~/.cache/fasterai-torch`) with torch 2.9 from PyPI and `extra` packages; returns its python.
fn torch_venv(extra: &[&str]) -> Result<String> {
    let venv = env::var_os("FASTERAI_TORCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var("HOME").unwrap_or_default()).join(".cache/fasterai-torch")
        });
    let python = venv.join("bin/python");
    if !python.exists() {
        run(
            "python3",
            &["-m", "venv", venv.to_str().expect("utf-8 path")],
        )?;
    }
    let python = python.to_str().expect("utf-8 path").to_string();
    let base = [
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "torch==2.9.0",
        "torchvision==0.24.0",
        "numpy",
        "safetensors",
    ];
    run(&python, &[&base[..], extra].concat())?;
    Ok(python)
}

/// Seed 004's chain and batch-1 inference beside fasterai 0.4.1 and PyTorch, in one run
/// (`scripts/bench_vs_torch.py`): prints the ratio table BENCHMARKS.md keeps.
fn bench_vs_torch() -> Result<()> {
    let python = torch_venv(&["fasterai==0.4.1"])?;
    run(&cargo(), &["build", "--release", "-p", "fasterai-cli"])?;
    let cli = target_dir().join("release/fasterai");
    let work = target_dir().join("bench-vs-torch");
    let json = work.join("result.json");
    // Extra arguments (`--before OLD_CLI`) go to the script.
    let extra: Vec<String> = env::args().skip(2).collect();
    let args = [
        "scripts/bench_vs_torch.py",
        cli.to_str().expect("utf-8 path"),
        work.to_str().expect("utf-8 path"),
        "--json",
        json.to_str().expect("utf-8 path"),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    run(&python, &[&args[..], &extra].concat())
}

/// PyTorch parity, end to end: a Python venv with torch (from PyPI) writes checkpoints (VGG16-bn
/// in both formats, every branched family, the vision transformers), inputs and PyTorch's
/// outputs; fasterai imports each, predicts, and `scripts/torch_parity.py compare` checks the
/// outputs to 1e-4 relative. Then the ONNX checks.
fn parity() -> Result<()> {
    let python = torch_venv(&["onnx==1.23.2", "onnxruntime==1.32.0"])?;
    let python = python.as_str();
    let work = target_dir().join("parity");
    std::fs::create_dir_all(&work)?;
    let work_str = work.to_str().expect("utf-8 path");
    run(python, &["scripts/torch_parity.py", "make", work_str])?;
    run(&cargo(), &["build", "--release", "-p", "fasterai-cli"])?;
    let cli = target_dir().join("release/fasterai");
    let cli = cli.to_str().expect("utf-8 path");
    let file = |name: &str| format!("{work_str}/{name}");
    for format in ["pth", "safetensors"] {
        let check = Import {
            arch: "vgg16_bn",
            classes: "10",
            weights: file(&format!("vgg16_bn.{format}")),
            model: file(&format!("imported_{format}.safetensors")),
            x: file("x.npy"),
            y_torch: file("y_torch.npy"),
            y_ours: file(&format!("fasterai_{format}.npy")),
        };
        check.run(python, cli)?;
    }
    // Every branched family: torchvision's state dict imported by name, same outputs.
    run(python, &["scripts/torch_parity.py", "families", work_str])?;
    for name in [
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet20",
        "resnet56",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_b0",
    ] {
        let check = Import {
            arch: name,
            classes: "10",
            weights: file(&format!("{name}.pth")),
            model: file(&format!("{name}.safetensors")),
            x: file(&format!("{name}_x.npy")),
            y_torch: file(&format!("{name}_y.npy")),
            y_ours: file(&format!("{name}_fasterai.npy")),
        };
        check.run(python, cli)?;
    }
    // Vision transformers: torchvision's ViT-B/16, ViT-B/32 and the CIFAR ViT with every
    // parameter random, from `.pth` (and `.safetensors` for ViT-B/32) state dicts.
    run(python, &["scripts/torch_parity.py", "vits", work_str])?;
    for (name, classes, format) in [
        ("vit_b_16", "1000", "pth"),
        ("vit_b_32", "1000", "pth"),
        ("vit_b_32", "1000", "safetensors"),
        ("vit_cifar", "10", "pth"),
    ] {
        let check = Import {
            arch: name,
            classes,
            weights: file(&format!("{name}.{format}")),
            model: file(&format!("{name}_{format}.fai.safetensors")),
            x: file(&format!("{name}_x.npy")),
            y_torch: file(&format!("{name}_y.npy")),
            y_ours: file(&format!("{name}_{format}_fasterai.npy")),
        };
        check.run(python, cli)?;
    }
    onnx_parity(python, cli, work_str)?;
    let python = torch_venv(&LM_PACKAGES)?;
    lm_parity(&python, cli)
}

/// What the language-model checks add to the torch venv.
const LM_PACKAGES: [&str; 1] = ["transformers==5.25.0"];

/// Language models against transformers: GPT-2 small and a small Llama (grouped-query
/// attention, rotary positions, SwiGLU) with random weights, from f32 single files, f32 shards
/// and bf16 shards: our logits within 1e-4 of theirs, greedy generation giving their ids, and
/// our Hugging Face export giving the same logits in transformers.
fn lm_parity(python: &str, cli: &str) -> Result<()> {
    let work = target_dir().join("parity-lm");
    std::fs::create_dir_all(&work)?;
    let work = work.to_str().expect("utf-8 path");
    let file = |name: &str| format!("{work}/{name}");
    run(python, &["scripts/lm_parity.py", "make", work])?;
    let ids = file("ids.npy");
    for name in ["gpt2", "gpt2_bf16", "llama", "llama_sharded", "llama_bf16"] {
        let model = file(&format!("{name}.fai.safetensors"));
        run(cli, &["import", &file(name), "-o", &model, "--force"])?;
        let ours = file(&format!("{name}_fasterai.npy"));
        run(
            cli,
            &["predict", &model, "--input", &ids, "-o", &ours, "--force"],
        )?;
        let theirs = file(&format!("{name}_logits.npy"));
        run(python, &["scripts/lm_parity.py", "compare", &theirs, &ours])?;
    }
    for name in ["gpt2", "llama"] {
        let model = file(&format!("{name}.fai.safetensors"));
        // Greedy generation: transformers' ids for the first 16 tokens of each row.
        run(
            python,
            &[
                "scripts/lm_parity.py",
                "greedy-ids",
                &ids,
                &file(&format!("{name}_prompts.txt")),
            ],
        )?;
        let prompts = std::fs::read_to_string(file(&format!("{name}_prompts.txt")))?;
        let mut args = vec![
            "generate".to_string(),
            model.clone(),
            "--max-new-tokens".into(),
            "8".into(),
            "--json".into(),
        ];
        for p in prompts.lines() {
            args.push("--prompt-ids".into());
            args.push(p.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = Command::new(cli).args(&args).current_dir(root()).output()?;
        anyhow::ensure!(
            out.status.success(),
            "generate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json = file(&format!("{name}_generate_fasterai.json"));
        std::fs::write(&json, &out.stdout)?;
        run(
            python,
            &[
                "scripts/lm_parity.py",
                "same-ids",
                &file(&format!("{name}_generate.npy")),
                &json,
            ],
        )?;
        // Our export, loaded by transformers.
        let exported = file(&format!("{name}_exported"));
        run(
            cli,
            &[
                "export", &model, "--format", "hf", "-o", &exported, "--force",
            ],
        )?;
        let back = file(&format!("{name}_exported_logits.npy"));
        run(
            python,
            &["scripts/lm_parity.py", "load", &exported, &ids, &back],
        )?;
        run(
            python,
            &[
                "scripts/lm_parity.py",
                "compare",
                &file(&format!("{name}_logits.npy")),
                &back,
            ],
        )?;
    }
    Ok(())
}

/// One parity check: a PyTorch checkpoint imported into a built-in architecture, run on
/// PyTorch's input; the outputs must match PyTorch's to 1e-4 relative.
struct Import<'a> {
    arch: &'a str,
    classes: &'a str,
    weights: String,
    model: String,
    x: String,
    y_torch: String,
    y_ours: String,
}

impl Import<'_> {
    fn run(&self, python: &str, cli: &str) -> Result<()> {
        let import = [
            "import",
            self.arch,
            "--num-classes",
            self.classes,
            "--weights",
            &self.weights,
            "-o",
            &self.model,
            "--force",
        ];
        run(cli, &import)?;
        let predict = [
            "predict",
            &self.model,
            "--input",
            &self.x,
            "--output",
            &self.y_ours,
            "--force",
        ];
        run(cli, &predict)?;
        let compare = [
            "scripts/torch_parity.py",
            "compare",
            &self.y_torch,
            &self.y_ours,
        ];
        run(python, &compare)
    }
}

/// ONNX in: torchvision exports imported, onnxruntime's outputs reproduced; every pass run on
/// an imported model. ONNX out: the seed-004 chain, a pruned, a folded and a Tucker-decomposed
/// model exported, checked by `onnx.checker` and run by onnxruntime against our outputs.
fn onnx_parity(python: &str, cli: &str, work: &str) -> Result<()> {
    let file = |name: &str| format!("{work}/{name}");
    run(python, &["scripts/onnx_parity.py", "export", work])?;
    for tag in [
        "resnet18_fused",
        "resnet18_bn",
        "mobilenet_v2_bn",
        "mobilenet_v3_small_bn",
        "efficientnet_b0_bn",
        "vgg11_bn_bn",
        "resnet18_dynamo",
        "mobilenet_v3_small_dynamo",
        "efficientnet_b0_dynamo",
    ] {
        let (model, x) = (file(&format!("{tag}.onnx")), file(&format!("{tag}_x.npy")));
        let y = file(&format!("{tag}_fasterai.npy"));
        run(
            cli,
            &["predict", &model, "--input", &x, "--output", &y, "--force"],
        )?;
        run(
            python,
            &[
                "scripts/torch_parity.py",
                "compare",
                &file(&format!("{tag}_ort.npy")),
                &y,
            ],
        )?;
    }
    // Each pass on the imported ResNet-18, and each result exported and run by onnxruntime.
    let x = file("resnet18_bn_x.npy");
    let imported = file("r18.safetensors");
    run(
        cli,
        &[
            "import",
            &file("resnet18_bn.onnx"),
            "-o",
            &imported,
            "--force",
        ],
    )?;
    let steps: [(&str, &[&str]); 7] = [
        ("r18_folded", &["fold", &imported]),
        ("r18_pruned", &["prune", &imported, "--ratio", "0.3"]),
        ("r18_tucker", &["decompose", &imported, "--conv", "tucker"]),
        (
            "r18_sparse",
            &[
                "sparsify",
                &imported,
                "--sparsity",
                "0.5",
                "--granularity",
                "filter",
            ],
        ),
        (
            "r18_student",
            &[
                "distill",
                "--teacher",
                &imported,
                "--student",
                &imported,
                "--data",
                "synthetic:64",
                "--epochs",
                "1",
            ],
        ),
        // int8: QDQ nodes (QuantizeLinear/DequantizeLinear) in the export.
        (
            "r18_int8",
            &["quantize", &imported, "--data", "synthetic:64"],
        ),
        (
            "r18_int8_tensor",
            &[
                "quantize",
                &imported,
                "--data",
                "synthetic:64",
                "--per-tensor",
                "--calibration",
                "minmax",
            ],
        ),
    ];
    for (name, args) in steps {
        let out = file(&format!("{name}.safetensors"));
        let mut args = args.to_vec();
        args.extend(["-o", &out, "--force"]);
        run(cli, &args)?;
        check_export(python, cli, &out, &x, work, name)?;
    }
    // Seed 004's chain on the VGG16-bn imported from its PyTorch checkpoint, exported.
    let chain: [(&str, &[&str]); 4] = [
        (
            "vgg_sparse",
            &["sparsify", "--sparsity", "0.4", "--granularity", "filter"],
        ),
        ("vgg_pruned", &["prune"]),
        ("vgg_folded", &["fold"]),
        ("vgg_fc", &["decompose", "--fc", "0.5"]),
    ];
    let mut previous = file("imported_pth.safetensors");
    for (name, args) in chain {
        let out = file(&format!("{name}.safetensors"));
        let mut full = vec![args[0], previous.as_str()];
        full.extend(&args[1..]);
        full.extend(["-o", &out, "--force"]);
        run(cli, &full)?;
        previous = out;
    }
    check_export(python, cli, &previous, &file("x.npy"), work, "vgg_fc")
}

/// Exports `model`, then checks the file with onnx.checker and onnxruntime against `predict`.
fn check_export(
    python: &str,
    cli: &str,
    model: &str,
    x: &str,
    work: &str,
    name: &str,
) -> Result<()> {
    let (onnx, y) = (
        format!("{work}/{name}.onnx"),
        format!("{work}/{name}_fasterai.npy"),
    );
    run(
        cli,
        &["predict", model, "--input", x, "--output", &y, "--force"],
    )?;
    run(cli, &["export", model, "-o", &onnx, "--force"])?;
    run(python, &["scripts/onnx_parity.py", "check", &onnx, x, &y])
}
