//! Backend parity: the same small VGG (random weights, fixed seed, non-trivial batch-norm
//! statistics) gives the same outputs on flex and on wgpu. On a machine without a GPU, wgpu runs
//! on Mesa's software Vulkan (lavapipe; `cargo xtask setup` installs it).
//!
//! Run with `cargo test -p fasterai-models --features wgpu backend_parity`.
//! Tolerance: `max|y_wgpu − y_flex| ≤ 1e-4 · max|y_flex|` (float32, different summation orders).
#![cfg(feature = "wgpu")]

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use fasterai_core::device::parse_device;
use fasterai_core::testing::randomize_batch_norms;
use fasterai_models::{VggConfig, VggDepth};

#[test]
fn small_vgg_agrees_on_flex_and_wgpu() {
    let flex = parse_device("flex").unwrap();
    let wgpu = parse_device("wgpu").unwrap();
    flex.seed(42);
    let mut model = VggConfig::small(VggDepth::Vgg11, true, 10, [3, 32, 32])
        .with_width(0.25)
        .init(&flex)
        .unwrap();
    randomize_batch_norms(&mut model.net, &flex);
    let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &flex);

    let on_flex = model
        .net
        .forward(x.clone())
        .flatten()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let on_wgpu_net = model.net.clone().to_device(&wgpu);
    let on_wgpu = on_wgpu_net
        .forward(x.to_device(&wgpu))
        .flatten()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();

    assert_close("small VGG", &on_flex, &on_wgpu);
}

/// `max|wgpu − flex| ≤ 1e-4 · max|flex|`, printed.
fn assert_close(what: &str, on_flex: &[f32], on_wgpu: &[f32]) {
    assert_eq!(on_flex.len(), on_wgpu.len());
    let scale = on_flex.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = on_flex
        .iter()
        .zip(on_wgpu)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!(
        "{what}, flex vs wgpu: max|diff| = {diff:e}, max|y| = {scale:e}, relative {:e}",
        diff / scale
    );
    assert!(scale > 0.0);
    assert!(
        diff <= 1e-4 * scale,
        "flex and wgpu disagree: max|diff| {diff} vs max|y| {scale}"
    );
}

/// A transformer (attention, layer norm, GELU, tokens) agrees on both backends too.
#[test]
fn tiny_vit_agrees_on_flex_and_wgpu() {
    let flex = parse_device("flex").unwrap();
    let wgpu = parse_device("wgpu").unwrap();
    flex.seed(7);
    let config = fasterai_models::VitConfig {
        patch: 4,
        layers: 2,
        heads: 2,
        hidden: 16,
        mlp: 32,
        drop_path: 0.1,
    };
    let spec = config.spec([3, 16, 16], 5).unwrap();
    let net = fasterai_core::graph::Graph::from_spec(
        &spec,
        fasterai_core::graph::InitScheme::PyTorchDefault,
        &flex,
    );
    let x = Tensor::<4>::random([3, 3, 16, 16], Distribution::Normal(0.0, 1.0), &flex);
    let on_flex = net
        .forward(x.clone())
        .flatten()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let on_wgpu = net
        .to_device(&wgpu)
        .forward(x.to_device(&wgpu))
        .flatten()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_close("tiny ViT", &on_flex, &on_wgpu);
}
