//! Seed 004's compression story on VGG16-bn (10 classes), step by step: sparsify 40 % of the
//! filters (local, L1), prune them away, fold the batch norms, factorise the classifier by SVD;
//! with the parameters, MACs, latency and output change of each step, on the flex backend.
//!
//! ```text
//! cargo run --release -p fasterai --example compress_vgg            # 3x32x32 timing (fast)
//! cargo run --release -p fasterai --example compress_vgg -- 3x224x224 [vgg.onnx]
//! ```
//!
//! Random weights with non-trivial batch-norm statistics stand in for a trained model, so the
//! lossless steps can be checked exactly (the FC step is lossy: its output change is the price of
//! the rank cut on weights that have no low-rank structure; sparsifying is lossy by design).
//! The output change is measured against the step before. The compressed model is then written
//! as ONNX (to the system's temporary folder, or the path given second) and read back.

use fasterai::core::summary::{Summary, thousands};
use fasterai::core::testing::{randomize_batch_norms, relative_max_diff};
use fasterai::decompose::linear::{LinearRank, LinearSvdConfig, factorize_linears};
use fasterai::fold::fold_batch_norms;
use fasterai::infer::Inference;
use fasterai::infer::latency::measure;
use fasterai::onnx::{ImportOptions, export_file, import_file};
use fasterai::prelude::*;
use fasterai::prune::prune_zeroed;
use fasterai::sparsify::{Granularity, Sparsifier, SparsifyConfig};

fn main() -> anyhow::Result<()> {
    let input: Vec<usize> = match std::env::args().nth(1) {
        Some(s) => s.split('x').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![3, 32, 32],
    };
    anyhow::ensure!(input.len() == 3, "input must look like 3x224x224");
    let device = parse_device("flex")?;
    device.seed(0);

    let mut model = VggConfig::new(VggDepth::Vgg16, true, 10).init(&device)?;
    randomize_batch_norms(&mut model.net, &device);
    let x = Tensor::<4>::random(
        [2, input[0], input[1], input[2]],
        burn::tensor::Distribution::Default,
        &device,
    );
    let mut previous: Option<Tensor<2>> = None;

    println!(
        "{:<24} {:>12} {:>10} {:>12} {:>12} {:>10}",
        "step", "parameters", "MACs", "as built", "prepared", "change"
    );
    let mut baseline_ms = None;
    let mut step = |name: &str, net: &Graph| -> anyhow::Result<()> {
        let summary = Summary::new(name, net, &input)?;
        // As built (node by node), and prepared for inference (fused, Winograd).
        let shape = [1, input[0], input[1], input[2]];
        let plain = measure(
            &Inference::plain(net.clone()),
            shape,
            &device,
            2,
            10,
            |_| {},
        )?;
        let prepared = Inference::new(net.clone(), &device);
        let latency = measure(&prepared, shape, &device, 2, 10, |_| {})?;
        let y = net.forward(x.clone()).flatten();
        let fast = prepared.forward(x.clone()).flatten();
        anyhow::ensure!(
            relative_max_diff(fast, y.clone()) < 1e-4,
            "prepared inference differs from the graph"
        );
        let change = previous
            .replace(y.clone())
            .map_or(0.0, |p| relative_max_diff(y, p));
        let base = *baseline_ms.get_or_insert(plain.median_ms);
        println!(
            "{:<24} {:>12} {:>10} {:>9.2} ms {:>9.2} ms {:>10.2e}   ({:.2}× vs original as built)",
            name,
            thousands(summary.total_params as u64),
            fasterai::core::summary::si(summary.total_macs as f64),
            plain.median_ms,
            latency.median_ms,
            change,
            base / latency.median_ms
        );
        Ok(())
    };

    step("vgg16_bn", &model.net)?;
    let mut sparse = model.clone();
    let mut sparsifier = Sparsifier::new(
        &sparse.net,
        &sparse.input_shape,
        SparsifyConfig::new(Granularity::Filter),
    )?;
    sparsifier.prune(&mut sparse.net, 0.4)?;
    step("+ sparsify 40 % filters", &sparse.net)?;
    let (pruned, prune_report) = prune_zeroed(&sparse)?;
    step("+ prune", &pruned.net)?;
    let (folded, report) = fold_batch_norms(&pruned.net)?;
    step("+ batch-norm folding", &folded)?;
    let start = std::time::Instant::now();
    let (factorized, fc_report) = factorize_linears(
        &folded,
        &LinearSvdConfig::new(LinearRank::PercentRemoved(0.5)),
        None,
    )?;
    let fc_seconds = start.elapsed().as_secs_f64();
    step("+ FC SVD (50 % removed)", &factorized)?;
    println!(
        "\n{prune_report}\n\n{report}\n\n{fc_report}\n(FC factorisation took {fc_seconds:.1} s)"
    );

    let onnx = std::env::args()
        .nth(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vgg16_bn_compressed.onnx"));
    let compressed = Model {
        name: "vgg16_bn_compressed".into(),
        input_shape: input.clone(),
        net: factorized,
        quantized: Default::default(),
        text: None,
    };
    let bytes = export_file(&compressed, &onnx, true)?;
    let back = import_file(&onnx, &ImportOptions::default(), &device)?;
    let change = relative_max_diff(
        back.net.forward(x.clone()).flatten(),
        compressed.net.forward(x).flatten(),
    );
    println!(
        "\nONNX export: {} ({:.1} MB, was {:.1} MB of float32 weights before compression); \
         read back, output change {change:.1e}",
        onnx.display(),
        bytes as f64 / 1e6,
        model.num_params() as f64 * 4.0 / 1e6
    );
    Ok(())
}
