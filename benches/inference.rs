#![allow(missing_docs)] // criterion_group! generates an undocumented function
//! Criterion benchmarks of inference latency on flex: VGG16-bn (10 classes, torchvision head)
//! as built, after batch-norm folding, and after FC factorisation (`percent_removed = 0.5` on
//! every Linear, seed 004's rule), at 3×32×32 (batch 1). The parameter count of each is
//! printed before timing.
//!
//! Also `linear_int8`: a 4096×4096 Linear (VGG16's second classifier layer) at batch 1 with its
//! float weight and with the same weight as Burn's own int8 tensor (Q8S, per tensor: the codes
//! of `fasterai-quantize`'s per-tensor grid), to measure what int8 storage does to latency.
//!
//! `cargo bench -p fasterai --bench inference`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fasterai::core::summary::{count_parameters, thousands};
use fasterai::core::testing::randomize_batch_norms;
use fasterai::decompose::linear::{LinearRank, LinearSvdConfig, factorize_linears};
use fasterai::fold::fold_batch_norms;
use fasterai::prelude::*;

fn vgg16_bn(c: &mut Criterion) {
    let device = parse_device("flex").unwrap();
    device.seed(0);
    let mut model = VggConfig::new(VggDepth::Vgg16, true, 10)
        .init(&device)
        .unwrap();
    randomize_batch_norms(&mut model.net, &device);
    let (folded, _) = fold_batch_norms(&model.net).unwrap();
    let fc = LinearSvdConfig::new(LinearRank::PercentRemoved(0.5));
    let (factorised, _) = factorize_linears(&folded, &fc, None).unwrap();
    let x = Tensor::<4>::random([1, 3, 32, 32], burn::tensor::Distribution::Default, &device);

    let mut group = c.benchmark_group("vgg16_bn/flex/3x32x32");
    group.sample_size(20);
    let variants = [
        ("original", &model.net),
        ("folded", &folded),
        ("folded+fc-svd", &factorised),
    ];
    for (name, net) in variants {
        eprintln!(
            "{name}: {} parameters",
            thousands(count_parameters(net) as u64)
        );
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let y = net.forward(x.clone());
                device.sync().unwrap();
                y
            })
        });
    }
    group.finish();
}

fn linear_int8(c: &mut Criterion) {
    use burn::nn::LinearConfig;
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue};

    let device = parse_device("flex").unwrap();
    device.seed(0);
    let float = LinearConfig::new(4096, 4096).init(&device);
    let scheme = QuantScheme::default()
        .with_value(QuantValue::Q8S)
        .with_store(QuantStore::Native);
    let mut int8 = float.clone();
    int8.weight = int8.weight.map(|w| w.quantize_dynamic(&scheme));
    let x = Tensor::<2>::random([1, 4096], burn::tensor::Distribution::Default, &device);
    let mut group = c.benchmark_group("linear_4096x4096/flex/batch1");
    group.sample_size(30);
    for (name, layer) in [("float32", &float), ("burn-int8", &int8)] {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let y = layer.forward(x.clone());
                device.sync().unwrap();
                y
            })
        });
    }
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default();
    targets = vgg16_bn, linear_int8
);
criterion_main!(benches);
