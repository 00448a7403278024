//! Decoders from Hugging Face folders: two committed fixtures written by `transformers`
//! (`scripts/lm_parity.py fixtures`) — a GPT-2 in f32 in one file, a Llama with grouped
//! key/value heads and q/k/v biases in bf16 over three shards — whose logits and greedy
//! continuations we must reproduce; the key/value cache against full passes; export and
//! re-import; and the errors a broken folder gives.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use fasterai_core::graph::Graph;
use fasterai_core::graph::sequence::Decoding;
use fasterai_core::linalg::host_values;
use fasterai_core::model::Model;
use fasterai_models::generate::{GenerateConfig, Sampling, generate};
use fasterai_models::hf::{export_folder, import_folder};
use fasterai_models::{DecoderConfig, ModelsError};

const FIXTURES: [&str; 2] = ["tiny_gpt2", "tiny_llama"];

fn device() -> Device {
    Device::flex()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[derive(serde::Deserialize)]
struct Expected {
    ids: Vec<Vec<i64>>,
    logits: Vec<f32>,
    greedy_prompt: Vec<Vec<u32>>,
    greedy: Vec<Vec<u32>>,
    padded_prompt: Vec<Vec<u32>>,
    padded_mask: Vec<Vec<u32>>,
    padded_greedy: Vec<Vec<u32>>,
    eos_token_id: u32,
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(rows: &[Vec<i64>], device: &Device) -> Tensor<2> {
    let (n, t) = (rows.len(), rows[0].len());
    let flat: Vec<f32> = rows.iter().flatten().map(|&i| i as f32).collect();
    Tensor::from_data(TensorData::new(flat, [n, t]), device)
}

fn relative_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    diff / b.iter().map(|v| v.abs()).fold(0.0, f32::max)
}

fn logits(net: &Graph, x: Tensor<2>) -> Vec<f32> {
    host_values(net.try_forward(x).unwrap().into_tokens().unwrap())
}

#[test]
fn tiny_decoders_give_transformers_logits() {
    let device = device();
    for name in FIXTURES {
        let model = import_folder(&fixture(name), &device).unwrap();
        let e = expected(name);
        let got = logits(&model.net, ids(&e.ids, &device));
        let diff = relative_diff(&got, &e.logits);
        assert!(diff < 1e-4, "{name}: relative difference {diff}");
    }
}

#[test]
fn the_key_value_cache_gives_the_logits_of_full_passes() {
    let device = device();
    for name in FIXTURES {
        let model = import_folder(&fixture(name), &device).unwrap();
        let e = expected(name);
        let full = logits(&model.net, ids(&e.ids, &device));
        // A prompt of 5 tokens, then one token per pass over the cache.
        let mut state = Decoding::new();
        let x = ids(&e.ids, &device);
        let [n, t] = x.dims();
        let mut pieces = Vec::new();
        let mut at = 0;
        for len in std::iter::once(5).chain(std::iter::repeat_n(1, t - 5)) {
            let y = model
                .net
                .forward_decoding(x.clone().narrow(1, at, len), None, &mut state)
                .unwrap();
            pieces.push(y.into_tokens().unwrap());
            at += len;
        }
        assert_eq!(state.past, t);
        if name == "tiny_gpt2" {
            // 12 tokens so far; GPT-2's table holds 32 positions.
            let more = x.clone().narrow(1, 0, 1).repeat_dim(1, 21);
            let err = model
                .net
                .forward_decoding(more, None, &mut state)
                .unwrap_err();
            assert!(err.to_string().contains("32 positions"), "{err}");
        }
        let cached = host_values(Tensor::cat(pieces, 1));
        let diff = relative_diff(&cached, &full);
        assert!(
            diff < 1e-5,
            "{name}: cache vs full pass {diff} ({n} sequences)"
        );
    }
}

fn greedy(model: &Model, prompts: &[Vec<u32>], new: usize, eos: u32) -> Vec<Vec<u32>> {
    let config = GenerateConfig {
        max_new_tokens: new,
        sampling: Sampling::Greedy,
        eos_token_id: Some(eos),
        context: model.input_shape[0],
    };
    generate(&model.net, prompts, &config, &device(), |_| {}).unwrap()
}

/// transformers' continuation up to and including the end-of-text token.
fn until_eos(ids: &[u32], eos: u32) -> Vec<u32> {
    match ids.iter().position(|&t| t == eos) {
        Some(i) => ids[..=i].to_vec(),
        None => ids.to_vec(),
    }
}

#[test]
fn greedy_generation_gives_transformers_tokens_with_and_without_padding() {
    let device = device();
    for name in FIXTURES {
        let model = import_folder(&fixture(name), &device).unwrap();
        let e = expected(name);
        let eos = e.eos_token_id;
        let new = e.greedy[0].len();
        let got = greedy(&model, &e.greedy_prompt, new, eos);
        let want: Vec<Vec<u32>> = e.greedy.iter().map(|g| until_eos(g, eos)).collect();
        assert_eq!(got, want, "{name}");
        // Prompts of different lengths: ours unpadded, transformers' left-padded and masked.
        let prompts: Vec<Vec<u32>> = e
            .padded_prompt
            .iter()
            .zip(&e.padded_mask)
            .map(|(p, m)| {
                p.iter()
                    .zip(m)
                    .filter(|(_, m)| **m == 1)
                    .map(|(t, _)| *t)
                    .collect()
            })
            .collect();
        let got = greedy(&model, &prompts, new, eos);
        let want: Vec<Vec<u32>> = e.padded_greedy.iter().map(|g| until_eos(g, eos)).collect();
        assert_eq!(got, want, "{name}, padded");
    }
}

#[test]
fn generation_refuses_a_prompt_past_the_context() {
    let device = device();
    let model = import_folder(&fixture("tiny_gpt2"), &device).unwrap();
    let config = GenerateConfig {
        max_new_tokens: 4,
        sampling: Sampling::Greedy,
        eos_token_id: None,
        context: model.input_shape[0],
    };
    let prompt = vec![vec![1u32; 30]];
    let err = generate(&model.net, &prompt, &config, &device, |_| {}).unwrap_err();
    assert!(err.to_string().contains("context of 32"), "{err}");
}

#[test]
fn gpt2_small_has_its_parameter_count() {
    // transformers' GPT2LMHeadModel: the tied head counted once.
    let spec = DecoderConfig::gpt2_small().spec().unwrap();
    assert_eq!(spec.params(), 124_439_808);
}

#[test]
fn an_exported_folder_imports_back_to_the_same_model() {
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let model = import_folder(&fixture(name), &device).unwrap();
        let out = dir.path().join(name);
        export_folder(&model, &out, false).unwrap();
        assert!(
            export_folder(&model, &out, false).is_err(),
            "an existing export is not replaced without overwrite"
        );
        let back = import_folder(&out, &device).unwrap();
        let e = expected(name);
        let (a, b) = (
            logits(&model.net, ids(&e.ids, &device)),
            logits(&back.net, ids(&e.ids, &device)),
        );
        assert_eq!(a, b, "{name}");
        // The same Hugging Face keys as the checkpoint transformers wrote.
        let keys = |dir: &Path| -> Vec<String> {
            let mut keys = Vec::new();
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "safetensors") {
                    let bytes = std::fs::read(&path).unwrap();
                    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
                    keys.extend(file.names().into_iter().map(str::to_string));
                }
            }
            keys.sort();
            keys
        };
        assert_eq!(keys(&out), keys(&fixture(name)), "{name}");
    }
}

/// A copy of a fixture folder to break.
fn copy(name: &str, to: &Path) -> PathBuf {
    let dir = to.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn import_error(dir: &Path) -> String {
    match import_folder(dir, &device()) {
        Ok(_) => panic!("{} imported", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_folders_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let edit_config = |dir: &Path, from: &str, to: &str| {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    // No config.json.
    let dir = copy("tiny_gpt2", &tmp.path().join("a"));
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(import_error(&dir).contains("no config.json"));
    // An unknown model_type.
    let dir = copy("tiny_gpt2", &tmp.path().join("b"));
    edit_config(&dir, "\"gpt2\"", "\"bert\"");
    assert!(import_error(&dir).contains("model_type `bert`"));
    // A shard the index lists is gone.
    let dir = copy("tiny_llama", &tmp.path().join("c"));
    std::fs::remove_file(dir.join("model-00002-of-00003.safetensors")).unwrap();
    assert!(
        import_error(&dir).contains("missing"),
        "{}",
        import_error(&dir)
    );
    // config.json disagrees with the tensors.
    let dir = copy("tiny_llama", &tmp.path().join("d"));
    edit_config(
        &dir,
        "\"intermediate_size\": 48",
        "\"intermediate_size\": 40",
    );
    let err = import_error(&dir);
    assert!(
        err.contains("shape") && err.contains("config.json implies"),
        "{err}"
    );
    // A tensor that no layer reads.
    let dir = copy("tiny_gpt2", &tmp.path().join("e"));
    edit_config(&dir, "\"n_layer\": 2", "\"n_layer\": 1");
    assert!(import_error(&dir).contains("no place"));
    // A config that declares far more blocks than the files could hold.
    let dir = copy("tiny_gpt2", &tmp.path().join("f"));
    edit_config(&dir, "\"n_layer\": 2", "\"n_layer\": 16000000");
    assert!(import_error(&dir).contains("declares 16000000 blocks"));
    // Not a folder at all.
    let err = import_folder(&tmp.path().join("nothing"), &device()).unwrap_err();
    assert!(matches!(err, ModelsError::Checkpoint { .. }), "{err}");
}
