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

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use prost::Message;

use super::corpus::{corpus, npy_with};
use super::hostile::{run_bounded, unclean};

mod inputs;
use inputs::{
    apply, damage, gen_init, gen_node, interesting, model_edit, mutated_model, onnx_input,
    random_onnx,
};

/// Inputs generated per target before the next target's turn.
const CASES_PER_ROUND: u32 = 8;

/// One input may keep the tool busy this long (generated models are tiny).
const CASE_LIMIT: Duration = Duration::from_secs(30);
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
            None => {
                count(status.success(), &stderr);
                return Ok(());
            }
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

/// Clean outcomes so far: successes, and refusals by message (its last clause, which names
/// the problem without the file's path).
static OUTCOMES: std::sync::Mutex<(usize, Vec<String>)> = std::sync::Mutex::new((0, Vec::new()));

fn count(success: bool, stderr: &str) {
    let mut outcomes = OUTCOMES.lock().unwrap();
    if success {
        outcomes.0 += 1;
    } else {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or_default();
        let reason: String = line
            .rsplit(": ")
            .next()
            .unwrap_or_default()
            .chars()
            .take(60)
            .collect();
        outcomes.1.push(reason);
    }
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

/// A tiny run's state folder (stopped once its first epoch is on disk), to mutate. A run that
/// finishes, and so removes its state, before it is stopped is tried again on more images.
fn run_state(dir: &Path) -> (Vec<String>, PathBuf) {
    let out = dir.join("run.safetensors");
    let state = dir.join("run.safetensors.state");
    for images in [20, 200, 2000] {
        let args: Vec<String> = [
            "train",
            "vgg11_bn_small",
            "--width",
            "0.0625",
            "--data",
            &format!("synthetic:{images}"),
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
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fasterai"))
            .args(&args)
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while !state.join("progress.json").is_file() && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        // `progress.json` is renamed into place last: its epoch is complete once it is seen.
        let _ = child.kill();
        child.wait().unwrap();
        if state.join("progress.json").is_file() {
            return (args, state);
        }
        let _ = std::fs::remove_file(&out);
    }
    panic!("no training run left a state folder to fuzz");
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
    let config = Config {
        cases: CASES_PER_ROUND,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    let mut runs = [0usize; 6];
    let mut case = 0usize;
    let result: Result<(), String> = (|| {
        while Instant::now() < deadline {
            let target = case % 6;
            case += 1;
            // A runner counts its successes for good: one per round, its RNG seeded by the
            // run's seed and the round, so that a failure replays from the seed alone.
            let mut seed_bytes = [0u8; 32];
            seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
            seed_bytes[8..16].copy_from_slice(&(case as u64).to_le_bytes());
            let mut runner = TestRunner::new_with_rng(
                config.clone(),
                TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
            );
            let name = |ext: &str| d(&format!("case{case}.{ext}"));
            let import = |bytes: &[u8]| {
                let file = write(dir.path(), &format!("case{case}.onnx"), bytes);
                let out = name("out.safetensors");
                check(
                    &["import", file.to_str().unwrap(), "-o", &out, "--force"],
                    &file,
                )
            };
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
                        import(&random_onnx(&input, &inits, &nodes).encode_to_vec())
                    },
                )),
                2 => failure(runner.run(
                    &(0..onnx_seeds.len(), prop::collection::vec(damage(), 1..4)),
                    |(seed, damages)| import(&apply(onnx_seeds[seed].clone(), &damages)),
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
            runs[target] += CASES_PER_ROUND as usize;
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
    let (successes, mut refusals) = OUTCOMES.lock().unwrap().clone();
    let refused = refusals.len();
    refusals.sort();
    refusals.dedup();
    eprintln!(
        "clean outcomes: {successes} commands succeeded, {refused} refused the input with \
         {} distinct messages",
        refusals.len()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
