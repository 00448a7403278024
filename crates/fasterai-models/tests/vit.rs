//! Vision transformers: torchvision's parameter counts and MACs, a torchvision state dict
//! loaded by name with PyTorch's logits reproduced (a committed 1,683-parameter fixture;
//! `cargo xtask parity` does the same for ViT-B/16, ViT-B/32 and the CIFAR ViT), and bad input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use fasterai_core::graph::coupling::Coupling;
use fasterai_core::graph::ops::attention::MultiheadAttentionSpec;
use fasterai_core::graph::ops::norm::LayerNormSpec;
use fasterai_core::graph::{Activation, Graph, GraphBuilder, InitScheme, LayerSpec};
use fasterai_core::io::{import_pytorch_weights, load_model, save_model};
use fasterai_core::model::Model;
use fasterai_core::summary::count_parameters;
use fasterai_infer::Inference;
use fasterai_models::{Builtin, VitConfig};

fn device() -> Device {
    fasterai_core::device::parse_device("flex").unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture's torchvision `VisionTransformer(image_size=8, patch_size=4, num_layers=2,
/// num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3)`.
const TINY: VitConfig = VitConfig {
    patch: 4,
    layers: 2,
    heads: 2,
    hidden: 8,
    mlp: 16,
    drop_path: 0.0,
};

struct Reference {
    x: Tensor<4>,
    y: Vec<f32>,
}

fn reference() -> Reference {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_vit.json")).unwrap()).unwrap();
    let floats = |key: &str| -> Vec<f32> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let shape: Vec<usize> = json["x_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(floats("x"), shape), &device());
    Reference { x, y: floats("y") }
}

fn tiny_vit(device: &Device) -> Graph {
    let spec = TINY.spec([3, 8, 8], 3).unwrap();
    spec.check(&[3, 8, 8]).unwrap();
    let mut net = Graph::from_spec(&spec, InitScheme::Zeros, device);
    import_pytorch_weights(&mut net, &fixture("tiny_vit.safetensors"), None).unwrap();
    net
}

fn values(y: Activation) -> Vec<f32> {
    y.flatten().into_data().try_to_vec::<f32>().unwrap()
}

fn relative_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

#[test]
fn tiny_vit_from_a_torchvision_state_dict_gives_pytorchs_logits() {
    let r = reference();
    let net = tiny_vit(&device());
    let plain = values(net.forward(r.x.clone()));
    let diff = relative_diff(&plain, &r.y);
    println!("tiny ViT vs PyTorch: relative {diff:e}");
    assert!(diff <= 1e-5, "relative difference {diff}");
    // The CPU engine (its attention, layer norm, GELU and token kernels) gives PyTorch's logits.
    let prepared = values(Inference::new(net.clone(), &device()).forward(r.x.clone()));
    assert!(relative_diff(&prepared, &r.y) <= 1e-5);
    // A model file stores and reloads every tensor: the same logits, bit for bit.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny_vit.safetensors");
    let model = Model::new("tiny_vit", vec![3, 8, 8], net).unwrap();
    save_model(&model, &path, false).unwrap();
    let loaded = load_model(&path, &device()).unwrap();
    assert_eq!(loaded.net.spec(), model.net.spec());
    assert_eq!(values(loaded.net.forward(r.x)), plain);
}

#[test]
fn vit_counts_and_macs_match_torchvision() {
    // torchvision 0.24: sum(p.numel() for p in m.parameters()); `_ops` of the weights' meta
    // (GMACs, attention's two activation products included).
    let cases = [
        ("vit_b_16", 1000, 86_567_656, Some(17.564)),
        ("vit_b_16", 10, 85_806_346, None),
        ("vit_b_32", 1000, 88_224_232, Some(4.409)),
        // VisionTransformer(32, 4, 6, 3, 192, 384, num_classes=10).
        ("vit_cifar", 10, 1_806_538, None),
    ];
    for (name, classes, params, gmacs) in cases {
        let b: Builtin = name.parse().unwrap();
        let b = b.with_num_classes(classes);
        let spec = b.spec().unwrap();
        assert_eq!(spec.params(), params, "{name} spec");
        let shapes = spec.check(&b.input_shape()).unwrap();
        assert_eq!(shapes.outputs.last().unwrap(), &vec![classes]);
        let macs: u64 = shapes.macs.iter().sum();
        if let Some(expected) = gmacs {
            let ours = macs as f64 / 1e9;
            println!("{name}: {ours:.3} GMACs, torchvision {expected}");
            assert!(
                (ours / expected - 1.0).abs() < 0.01,
                "{name}: {ours} vs {expected}"
            );
        }
        let model = b.init(&device()).unwrap();
        assert_eq!(count_parameters(&model.net), params, "{name} tensors");
    }
    let spec = Builtin::net(fasterai_models::Family::ViTB16, 10)
        .spec()
        .unwrap();
    let names: Vec<&str> = spec.nodes.iter().map(|n| n.name.as_str()).collect();
    for expected in [
        "conv_proj",
        "class_token",
        "encoder.pos_embedding",
        "encoder.layers.encoder_layer_11.self_attention",
        "encoder.layers.encoder_layer_0.mlp.3",
        "encoder.ln",
        "heads.head",
    ] {
        assert!(names.contains(&expected), "{expected}");
    }
}

#[test]
fn the_residual_stream_is_one_channel_group() {
    let net = tiny_vit(&device());
    let coupling = Coupling::new(&net, &[3, 8, 8]).unwrap();
    let stream = coupling
        .groups
        .iter()
        .find(|g| g.producers.contains(&"conv_proj".to_string()))
        .unwrap();
    assert_eq!(stream.channels, 8);
    for producer in [
        "encoder.layers.encoder_layer_0.self_attention",
        "encoder.layers.encoder_layer_1.mlp.3",
    ] {
        assert!(stream.producers.iter().any(|p| p == producer), "{producer}");
    }
    for carrier in ["class_token", "encoder.pos_embedding", "encoder.ln"] {
        assert!(stream.carriers.iter().any(|c| c == carrier), "{carrier}");
    }
    assert!(stream.consumers.iter().any(|c| c.node == "heads.head"));
    // Each MLP's hidden width is a group of its own: mlp.0 makes it, mlp.3 reads it.
    let hidden = coupling
        .groups
        .iter()
        .find(|g| g.producers == ["encoder.layers.encoder_layer_0.mlp.0"])
        .unwrap();
    assert_eq!(hidden.channels, 16);
    assert!(hidden.prunable());
    // Removing hidden channels whose mlp.3 columns are zero leaves the outputs unchanged.
    let mut zeroed = net.clone();
    let keep: Vec<Vec<bool>> = coupling
        .groups
        .iter()
        .map(|g| {
            (0..g.channels)
                .map(|c| g.id != hidden.id || c % 2 == 0)
                .collect()
        })
        .collect();
    let mlp3 = "encoder.layers.encoder_layer_0.mlp.3";
    let (shape, mut w) = zeroed.layer(mlp3).unwrap().torch_weight().unwrap();
    for (k, v) in w.iter_mut().enumerate() {
        if (k % shape[1]) % 2 == 1 {
            *v = 0.0;
        }
    }
    zeroed.get_mut(mlp3).unwrap().set_torch_weight(w);
    let x = reference().x;
    let before = values(zeroed.forward(x.clone()));
    coupling.remove_channels(&mut zeroed, &keep).unwrap();
    assert_eq!(
        count_parameters(&zeroed),
        count_parameters(&net) - 8 * (8 + 1 + 8)
    );
    let after = values(zeroed.forward(x));
    assert!(relative_diff(&after, &before) <= 1e-6);
}

#[test]
fn bad_transformers_are_errors_naming_the_node() {
    let check = |ops: Vec<(&str, LayerSpec)>, input: &[usize]| {
        let mut g = GraphBuilder::new();
        for (name, op) in ops {
            g.then(name, op);
        }
        g.build().check(input).unwrap_err().to_string()
    };
    let err = check(
        vec![(
            "blocks.0.attn",
            LayerSpec::MultiheadAttention(MultiheadAttentionSpec::new(768, 5)),
        )],
        &[197, 768],
    );
    assert!(
        err.contains("blocks.0.attn") && err.contains("does not split into 5 heads"),
        "{err}"
    );
    let err = check(
        vec![(
            "blocks.0.ln_1",
            LayerSpec::LayerNorm(LayerNormSpec::new(384, 1e-6)),
        )],
        &[197, 768],
    );
    assert!(
        err.contains("blocks.0.ln_1") && err.contains("384") && err.contains("768"),
        "{err}"
    );
    let mismatched = MultiheadAttentionSpec {
        key_dim: 512,
        ..MultiheadAttentionSpec::new(768, 12)
    };
    let err = check(
        vec![("attn", LayerSpec::MultiheadAttention(mismatched))],
        &[197, 768],
    );
    assert!(err.contains("`attn`") && err.contains("512"), "{err}");
    let err = check(
        vec![(
            "attn",
            LayerSpec::MultiheadAttention(MultiheadAttentionSpec::new(768, 12)),
        )],
        &[197, 512],
    );
    assert!(err.contains("768") && err.contains("512"), "{err}");
    // ViT-B/16 built for 224² and given a 384² image: the position embedding says so.
    let spec = Builtin::net(fasterai_models::Family::ViTB16, 10)
        .spec()
        .unwrap();
    let err = spec.check(&[3, 384, 384]).unwrap_err().to_string();
    assert!(
        err.contains("encoder.pos_embedding") && err.contains("197") && err.contains("577"),
        "{err}"
    );
    assert!(
        "vit_b_16"
            .parse::<Builtin>()
            .unwrap()
            .with_input_shape([3, 225, 225])
            .spec()
            .is_err()
    );
}

#[test]
fn a_checkpoint_without_its_class_token_is_refused() {
    let bytes = std::fs::read(fixture("tiny_vit.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: HashMap<String, safetensors::tensor::TensorView> = file
        .tensors()
        .into_iter()
        .filter(|(k, _)| k != "class_token")
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_class_token.safetensors");
    safetensors::serialize_to_file(kept, None, &path).unwrap();
    let spec = TINY.spec([3, 8, 8], 3).unwrap();
    let mut net = Graph::from_spec(&spec, InitScheme::Zeros, &device());
    let err = import_pytorch_weights(&mut net, &path, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("class_token") && err.contains("missing"),
        "{err}"
    );
}
