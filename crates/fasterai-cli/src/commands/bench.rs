//! `fasterai bench MODEL`: inference latency.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fasterai::burn::tensor::{Distribution, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::model_arg::{DeviceArgs, ModelArgs, parse_shape};

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
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Latency statistics of one benchmark.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub device: String,
    pub input_shape: Vec<usize>,
    pub batch: usize,
    pub runs: usize,
    pub params: usize,
    pub median_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub images_per_second: f64,
}

pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let device = args.device.device()?;
    let model = args.model.load(args.input, &device)?;
    let mut shape = vec![args.batch];
    shape.extend(&model.input_shape);
    model.net.output_shape(&model.input_shape).context("the model cannot take its input shape")?;
    let input = Tensor::<4>::random([shape[0], shape[1], shape[2], shape[3]], Distribution::Normal(0.0, 1.0), &device);

    let bar = ProgressBar::new((args.warmup + args.runs) as u64).with_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({elapsed})").expect("valid template"),
    );
    let forward = || -> Result<Duration> {
        let start = Instant::now();
        let out = model.net.forward(input.clone());
        device.sync().map_err(|e| anyhow::anyhow!("device error: {e:?}"))?;
        let elapsed = start.elapsed();
        drop(out);
        Ok(elapsed)
    };
    bar.set_message("warm-up");
    for _ in 0..args.warmup {
        forward()?;
        bar.inc(1);
    }
    bar.set_message("timing");
    let mut times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        times.push(forward()?.as_secs_f64() * 1e3);
        bar.inc(1);
    }
    bar.finish_and_clear();

    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let report = BenchReport {
        model: model.name.clone(),
        device: args.device.device.clone(),
        input_shape: model.input_shape.clone(),
        batch: args.batch,
        runs: args.runs,
        params: model.num_params(),
        median_ms: median,
        mean_ms: mean,
        min_ms: times[0],
        max_ms: times[times.len() - 1],
        images_per_second: args.batch as f64 / (median / 1e3),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let shape: Vec<String> = report.input_shape.iter().map(usize::to_string).collect();
        println!(
            "{} on {} · batch {} × {} · {} runs\n  median {:.2} ms   mean {:.2} ms   min {:.2} ms   max {:.2} ms   ({:.1} images/s)",
            report.model,
            report.device,
            report.batch,
            shape.join("x"),
            report.runs,
            report.median_ms,
            report.mean_ms,
            report.min_ms,
            report.max_ms,
            report.images_per_second
        );
    }
    Ok(())
}
