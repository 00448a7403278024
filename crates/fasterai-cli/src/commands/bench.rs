//! `fasterai bench MODEL`: inference latency (images), or tokens per second (language models,
//! `--tokens`).

use anyhow::Result;
use fasterai::infer::latency::{Latency, measure};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::model_arg::{DeviceArgs, InferenceArgs, ModelArgs, parse_shape};

/// Measure inference latency: warm-up runs, then timed runs, each ending with a device sync.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Input shape CxHxW [default: 3x224x224, 3x32x32 for `_small`, a file's own].
    #[arg(long, value_parser = parse_shape)]
    input: Option<[usize; 3]>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Untimed runs first (caches, autotuning, lazy initialisation).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    #[command(flatten)]
    inference: InferenceArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Then time one more run node by node and print where the time goes, by op kind and the
    /// slowest nodes.
    #[arg(long)]
    profile: bool,
    /// Language models: tokens of the prefill pass [default: 128].
    #[arg(long)]
    tokens: Option<usize>,
    /// Language models: tokens decoded one by one after the prefill.
    #[arg(long, default_value_t = 32)]
    new_tokens: usize,
}

#[derive(Serialize)]
struct Report {
    model: String,
    device: String,
    params: usize,
    /// What the CPU engine runs (empty with `--plain` or off flex).
    engine: fasterai::infer::Report,
    /// Packing the weights (`Inference::new`), before the first call.
    prepare_ms: f64,
    #[serde(flatten)]
    latency: Latency,
    images_per_second: f64,
    /// The process's peak resident memory (model, weights packed, buffers), where the OS says.
    peak_rss_mb: Option<f64>,
    /// With `--profile`: milliseconds per op kind, most first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    profile_by_kind: Vec<(&'static str, f64)>,
    /// With `--profile`: the slowest nodes, `(node, kind, ms)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    profile_slowest: Vec<(String, &'static str, f64)>,
}

/// Peak resident set size of this process in MB (Linux's `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(args: Args) -> Result<()> {
    args.inference.init_threads()?;
    let device = args.device.device()?;
    if crate::text::is_language_model(&args.model)? {
        let model = args.model.load(None, &device)?;
        let tokens = args.tokens.unwrap_or(128);
        return super::bench_tokens::run(
            &model,
            &device,
            &args.device.device,
            args.batch,
            tokens,
            args.new_tokens,
            args.runs.min(5),
            args.json,
            peak_rss_mb,
        );
    }
    anyhow::ensure!(args.tokens.is_none(), "--tokens applies to language models");
    let model = args.model.load(args.input, &device)?;
    let [c, h, w] = model.input_shape[..] else {
        anyhow::bail!("bench needs an image model (input CxHxW)")
    };
    let bar = ProgressBar::new((args.warmup + args.runs) as u64).with_style(
        ProgressStyle::with_template("timing {bar:30} {pos}/{len} runs ({elapsed})")
            .expect("valid template"),
    );
    let start = std::time::Instant::now();
    let net = args.inference.prepare(model.net.clone(), &device)?;
    let prepare_ms = start.elapsed().as_secs_f64() * 1e3;
    let latency = measure(
        &net,
        [args.batch, c, h, w],
        &device,
        args.warmup,
        args.runs,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let (mut by_kind, mut slowest) = (Vec::new(), Vec::new());
    if args.profile {
        let x = burn::tensor::Tensor::<4>::random(
            [args.batch, c, h, w],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        slowest = net.profile(x);
        for (_, kind, ms) in &slowest {
            match by_kind.iter_mut().find(|(k, _)| k == kind) {
                Some((_, total)) => *total += ms,
                None => by_kind.push((*kind, *ms)),
            }
        }
        by_kind.sort_by(|a, b| b.1.total_cmp(&a.1));
        slowest.sort_by(|a, b| b.2.total_cmp(&a.2));
        slowest.truncate(10);
    }
    let report = Report {
        model: model.name.clone(),
        device: args.device.device.clone(),
        params: model.num_params(),
        engine: net.report(),
        prepare_ms,
        images_per_second: latency.images_per_second(),
        latency,
        peak_rss_mb: peak_rss_mb(),
        profile_by_kind: by_kind,
        profile_slowest: slowest,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let l = &report.latency;
        println!(
            "{} on {} · input {}x{}x{}x{} · {} runs\n  median {:.2} ms   mean {:.2} ms   min {:.2} ms   max {:.2} ms   ({:.1} images/s)",
            report.model,
            report.device,
            l.input_shape[0],
            c,
            h,
            w,
            l.runs,
            l.median_ms,
            l.mean_ms,
            l.min_ms,
            l.max_ms,
            report.images_per_second
        );
        println!(
            "  first call {:.2} ms (after {:.1} ms packing weights){}",
            l.first_ms,
            report.prepare_ms,
            report
                .peak_rss_mb
                .map_or(String::new(), |mb| format!("   peak memory {mb:.0} MB"))
        );
        let e = &report.engine;
        if e.runs_as_built {
            println!(
                "  prepared graph measured slower than as built on this CPU for this shape: runs as built"
            );
        } else if !e.conv_paths.is_empty() {
            let paths: Vec<String> = e
                .conv_paths
                .iter()
                .map(|(p, n)| format!("{} ×{n}", p.name()))
                .collect();
            let gates = match e.gates {
                0 => String::new(),
                n => format!("{n} squeeze-excitation gates in one step each; "),
            };
            println!(
                "  prepared: convolutions by {}; {gates}{} nodes fused into the kernel before them; loops in {} (--plain: as built)",
                paths.join(", "),
                e.fused_nodes,
                e.isa.map_or("-", |isa| isa.name())
            );
        }
        if !e.as_built.is_empty() {
            let kinds: Vec<String> = e
                .as_built
                .iter()
                .map(|(kind, n)| format!("{kind} ×{n}"))
                .collect();
            println!(
                "  as built (Burn's ops, no CPU kernel of fasterai's yet): {}",
                kinds.join(", ")
            );
        }
        if !report.profile_by_kind.is_empty() {
            let total: f64 = report.profile_by_kind.iter().map(|(_, ms)| ms).sum();
            println!("  profile (one run, {total:.2} ms node by node):");
            for (kind, ms) in &report.profile_by_kind {
                println!(
                    "    {kind:<20} {ms:>9.3} ms  {:>5.1} %",
                    100.0 * ms / total.max(1e-9)
                );
            }
            println!("  slowest nodes:");
            for (node, kind, ms) in &report.profile_slowest {
                println!("    {node:<32} {kind:<18} {ms:>9.3} ms");
            }
        }
    }
    Ok(())
}
