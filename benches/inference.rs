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
//! `kernels`: the CPU engine's kernel families (`fasterai-infer`), each a one-layer graph at a
//! ResNet/MobileNet size, batch 1, by every path it offers (`PathChoice::Force`) and as built
//! (Burn's ops, `--plain`): 3×3 convolution (GEMM, Winograd), 1×1 convolution (GEMM without
//! im2col), stride-2 3×3, depthwise 3×3 (loop, grouped GEMM), conv → BN → add → ReLU, max
//! pooling, a 4096×4096 `Linear`.
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

fn kernels(c: &mut Criterion) {
    use fasterai::core::graph::ops::Conv2dSpec;
    use fasterai::infer::{ConvPath, Inference, PathChoice};

    let device = parse_device("flex").unwrap();
    device.seed(0);
    let conv = |cin, cout, k, stride, groups| {
        let mut spec = Conv2dSpec::new(cin, cout, k, stride);
        spec.groups = groups;
        LayerSpec::Conv2d(spec)
    };
    let one = |ops: Vec<LayerSpec>| {
        let mut g = GraphBuilder::new();
        g.chain("net", ops);
        let mut net = Graph::from_spec(&g.build(), InitScheme::PyTorchDefault, &device);
        randomize_batch_norms(&mut net, &device);
        net
    };
    let residual = {
        let mut g = GraphBuilder::new();
        g.then("conv", conv(64, 64, 3, 1, 1));
        g.then("bn", LayerSpec::batch_norm(64));
        g.node("add", LayerSpec::Add(Default::default()), &["bn", "input"]);
        g.then("relu", LayerSpec::relu());
        Graph::from_spec(&g.build(), InitScheme::PyTorchDefault, &device)
    };
    let gate = {
        let conv1x1 = |i, o| LayerSpec::Conv2d(Conv2dSpec::new(i, o, 1, 1).with_bias(true));
        let mut g = GraphBuilder::new();
        g.then("avgpool", LayerSpec::global_avg_pool());
        g.then("fc1", conv1x1(672, 28));
        g.then("act", LayerSpec::SiLU(Default::default()));
        g.then("fc2", conv1x1(28, 672));
        g.then("gate", LayerSpec::Sigmoid(Default::default()));
        g.node(
            "mul",
            LayerSpec::Mul(Default::default()),
            &["gate", "input"],
        );
        Graph::from_spec(&g.build(), InitScheme::PyTorchDefault, &device)
    };
    let cases: Vec<(&str, Graph, Vec<usize>)> = vec![
        (
            "conv3x3_64_56",
            one(vec![conv(64, 64, 3, 1, 1)]),
            vec![1, 64, 56, 56],
        ),
        (
            "conv3x3_128_112",
            one(vec![conv(128, 128, 3, 1, 1)]),
            vec![1, 128, 112, 112],
        ),
        (
            "conv1x1_256to64_56",
            one(vec![conv(256, 64, 1, 1, 1)]),
            vec![1, 256, 56, 56],
        ),
        (
            "conv3x3s2_64to128_56",
            one(vec![conv(64, 128, 3, 2, 1)]),
            vec![1, 64, 56, 56],
        ),
        (
            "depthwise3x3_144_56",
            one(vec![conv(144, 144, 3, 1, 144)]),
            vec![1, 144, 56, 56],
        ),
        (
            "depthwise3x3s2_96_112",
            one(vec![conv(96, 96, 3, 2, 96)]),
            vec![1, 96, 112, 112],
        ),
        (
            "depthwise5x5_1152_7",
            one(vec![conv(1152, 1152, 5, 1, 1152)]),
            vec![1, 1152, 7, 7],
        ),
        ("se_gate_672_14", gate, vec![1, 672, 14, 14]),
        ("conv_bn_add_relu_64_56", residual, vec![1, 64, 56, 56]),
        (
            "maxpool3x3s2_64_112",
            one(vec![LayerSpec::MaxPool2d(
                fasterai::core::graph::ops::MaxPool2dSpec::new(3, 2, 1),
            )]),
            vec![1, 64, 112, 112],
        ),
        (
            "linear_4096",
            one(vec![LayerSpec::flatten(), LayerSpec::linear(4096, 4096)]),
            vec![1, 4096, 1, 1],
        ),
    ];
    let mut group = c.benchmark_group("kernels/flex/batch1");
    group.sample_size(20);
    for (name, net, dims) in cases {
        let x = Tensor::<4>::random(
            [dims[0], dims[1], dims[2], dims[3]],
            burn::tensor::Distribution::Default,
            &device,
        );
        let mut variants = vec![("as-built".to_string(), Inference::plain(net.clone()))];
        for path in ConvPath::ALL {
            let prepared = Inference::with_choice(net.clone(), &device, PathChoice::Force(path));
            drop(prepared.forward(x.clone())); // chooses and reports the path taken
            let taken = prepared.convs_by(path) > 0;
            let has_conv = !prepared.report().conv_paths.is_empty();
            if taken || (!has_conv && path == ConvPath::Gemm) {
                let label = if has_conv {
                    path.name().to_string()
                } else {
                    "engine".to_string()
                };
                variants.push((label, prepared));
            }
        }
        for (label, net) in &variants {
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| net.forward(x.clone()))
            });
        }
    }
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default();
    targets = vgg16_bn, linear_int8, kernels
);
criterion_main!(benches);
