#![allow(missing_docs)] // criterion_group! generates an undocumented function
//! Criterion benchmarks of inference latency on flex: VGG16-bn (10 classes, torchvision head)
//! as built, after batch-norm folding, and after FC factorisation (`percent_removed = 0.5` on
//! every Linear, seed 004's rule), at 3×32×32 (batch 1). The parameter count of each is
//! printed before timing.
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

criterion_group!(
    name = benches;
    config = Criterion::default();
    targets = vgg16_bn
);
criterion_main!(benches);
