//! `fasterai bench MODEL`: inference latency.

use anyhow::Result;
use fasterai::core::latency::{Latency, measure};
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
}

#[derive(Serialize)]
struct Report {
    model: String,
    device: String,
    params: usize,
    /// Nodes folded into the convolution before them.
    fused_nodes: usize,
    /// Convolutions computed by Winograd F(4×4, 3×3).
    winograd_convs: usize,
    /// Nodes with weights the prepared engine runs as built (Burn's ops), by kind.
    as_built: Vec<(&'static str, usize)>,
    #[serde(flatten)]
    latency: Latency,
    images_per_second: f64,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.device.device()?;
    let model = args.model.load(args.input, &device)?;
    let [c, h, w] = model.input_shape[..] else {
        anyhow::bail!("bench needs an image model (input CxHxW)")
    };
    let bar = ProgressBar::new((args.warmup + args.runs) as u64).with_style(
        ProgressStyle::with_template("timing {bar:30} {pos}/{len} runs ({elapsed})")
            .expect("valid template"),
    );
    let net = args.inference.prepare(model.net.clone(), &device);
    let latency = measure(
        &net,
        [args.batch, c, h, w],
        &device,
        args.warmup,
        args.runs,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let report = Report {
        model: model.name.clone(),
        device: args.device.device.clone(),
        params: model.num_params(),
        fused_nodes: net.fused_nodes(),
        winograd_convs: net.winograd_convs(),
        as_built: net.as_built(),
        images_per_second: latency.images_per_second(),
        latency,
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
        if report.fused_nodes + report.winograd_convs > 0 {
            println!(
                "  prepared: {} nodes fused into their convolution, {} convolutions by Winograd (--plain: as built)",
                report.fused_nodes, report.winograd_convs
            );
        }
        if !report.as_built.is_empty() {
            let kinds: Vec<String> = report
                .as_built
                .iter()
                .map(|(kind, n)| format!("{kind} ×{n}"))
                .collect();
            println!(
                "  as built (Burn's ops, no CPU kernel of fasterai's yet): {}",
                kinds.join(", ")
            );
        }
    }
    Ok(())
}
