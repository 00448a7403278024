//! `fasterai sparsify MODEL --sparsity 0.4 --granularity filter -o OUT`: one-shot masks, or
//! with `--schedule agp --data ... --epochs N`, sparsifying while fine-tuning.

use anyhow::Result;
use fasterai::sparsify::sparsifier::Context;
use fasterai::sparsify::{
    Criterion, Granularity, Lottery, Schedule, ScheduleKind, Sparsifier, SparsifyCallback,
    SparsifyConfig,
};

use crate::commands::train::{HyperArgs, train_and_save};
use crate::data_arg::{DataArgs, calibration_batch};
use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Zero the least important weight groups and save the model; `fasterai prune` then removes
/// zeroed filters (heads, MLP units, embedding channels) for real. Without --schedule: one shot, printing the per-layer sparsity
/// table. With --schedule and --data: while fine-tuning, the target rising along the schedule
/// and the masks re-applied after every step.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Fraction of groups to zero, in [0, 1).
    #[arg(long)]
    sparsity: f64,
    /// Weight groups: weight, filter, kernel, channel, … (fasterai's names); on transformers
    /// also head, mlp_unit and embed (whole heads, MLP units, embedding channels).
    #[arg(long, default_value = "filter")]
    granularity: Granularity,
    /// local (each layer to the target) or global (one threshold).
    #[arg(long, value_enum, default_value = "local")]
    context: ContextArg,
    /// Importance: l1, l2, random, large_init, movement, … (fasterai's names).
    #[arg(long, default_value = "l1")]
    criterion: Criterion,
    /// Only these layers (comma-separated paths) [default: every Conv2d; on a transformer every
    /// Linear, and with head, mlp_unit or embed every group of that kind].
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Per-layer targets overriding --sparsity (local context), e.g. features.0=0.1,features.3=0.5.
    #[arg(long, value_delimiter = ',', value_name = "PATH=S,...")]
    per_layer: Vec<String>,
    /// Lottery ticket while sparsifying on a schedule: `reset` (surviving weights back to their
    /// initial values after each pruning step) or `rewind:E` (to their values after epoch E).
    #[arg(long, requires = "schedule")]
    lottery: Option<String>,
    /// Keep a multiple of N groups per layer.
    #[arg(long, default_value_t = 1)]
    round_to: usize,
    /// N:M semi-structured sparsity instead of --sparsity's target, e.g. 2:4.
    #[arg(long, value_name = "N:M")]
    n_of_m: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Sparsify while fine-tuning on --data, along this schedule.
    #[arg(long, value_enum, requires = "data")]
    schedule: Option<ScheduleArg>,
    /// Steps of the iterative schedule.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Fraction of training at which the schedule starts [default: the schedule's own].
    #[arg(long)]
    start_pct: Option<f64>,
    /// Fraction of training at which the schedule reaches the target.
    #[arg(long, default_value_t = 1.0)]
    end_pct: f64,
    /// Training data for --schedule (and the calibration batch of --criterion wanda|taylor): cifar10:DIR, fashion-mnist:DIR, mnist:DIR, folder:DIR, synthetic[:N].
    #[arg(long, value_name = "KIND:DIR")]
    data: Option<String>,
    /// CIFAR-10 files to train on.
    #[arg(long, value_delimiter = ',')]
    train_files: Vec<String>,
    /// CIFAR-10 files to validate on.
    #[arg(long, value_delimiter = ',')]
    valid_files: Vec<String>,
    #[command(flatten)]
    hyper: HyperArgs,
    /// Also write the per-epoch history as JSON here.
    #[arg(long, value_name = "FILE")]
    history: Option<std::path::PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScheduleArg {
    OneShot,
    Iterative,
    Agp,
    OneCycle,
    Cos,
    Lin,
    Dsd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ContextArg {
    Local,
    Global,
}

pub fn run(args: Args) -> Result<()> {
    if args.hyper.resume && args.schedule.is_none() {
        anyhow::bail!("--resume continues sparsifying while training: it needs --schedule");
    }
    let out = args.hyper.output(&args.out)?;
    out.check(&[std::path::Path::new(&args.model.model)])?;
    out.check_also(
        args.history.as_deref(),
        &[std::path::Path::new(&args.model.model)],
    )?;
    let device = args.device.device()?;
    // A built-in architecture starts from --seed's weights, as in `train`.
    device.seed(args.hyper.seed);
    let mut model = args.model.load(None, &device)?;
    crate::model_arg::require_float(&model, "sparsify")?;
    let mut config = SparsifyConfig::new(args.granularity);
    config.context = match args.context {
        ContextArg::Local => Context::Local,
        ContextArg::Global => Context::Global,
    };
    config.criterion = args.criterion;
    config.layers = args.layers.clone();
    config.round_to = args.round_to;
    for entry in &args.per_layer {
        let (path, target) = entry
            .split_once('=')
            .and_then(|(p, s)| Some((p.to_string(), s.parse::<f64>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("--per-layer takes PATH=SPARSITY, got `{entry}`"))?;
        config.per_layer.insert(path, target);
    }
    let lottery = match args.lottery.as_deref() {
        None => None,
        Some("reset") => Some(Lottery::ResetToInit),
        Some(r) => match r.strip_prefix("rewind:").and_then(|e| e.parse().ok()) {
            Some(epoch) => Some(Lottery::RewindToEpoch(epoch)),
            None => anyhow::bail!("--lottery takes `reset` or `rewind:EPOCH`, got `{r}`"),
        },
    };
    config.n_of_m = match &args.n_of_m {
        None => None,
        Some(s) => {
            let parsed = s
                .split_once(':')
                .and_then(|(n, m)| Some((n.parse().ok()?, m.parse().ok()?)));
            Some(parsed.ok_or_else(|| anyhow::anyhow!("--n-of-m takes N:M, like 2:4; got `{s}`"))?)
        }
    };
    if let Some(kind) = args.schedule {
        let kind = match kind {
            ScheduleArg::OneShot => ScheduleKind::OneShot,
            ScheduleArg::Iterative => ScheduleKind::Iterative { steps: args.steps },
            ScheduleArg::Agp => ScheduleKind::Agp,
            ScheduleArg::OneCycle => ScheduleKind::OneCycle,
            ScheduleArg::Cos => ScheduleKind::Cos,
            ScheduleArg::Lin => ScheduleKind::Lin,
            ScheduleArg::Dsd => ScheduleKind::Dsd,
        };
        let mut schedule = Schedule::new(kind);
        schedule = schedule.window(args.start_pct.unwrap_or(schedule.start_pct), args.end_pct);
        let data = DataArgs {
            data: args
                .data
                .clone()
                .expect("clap requires --data with --schedule"),
            train_files: args.train_files.clone(),
            valid_files: args.valid_files.clone(),
            limit: None,
        }
        .load()?;
        let mut callback = SparsifyCallback::new(config, args.sparsity, schedule);
        if let Some(lottery) = lottery {
            callback = callback.with_lottery(lottery);
        }
        model.name = format!("{}+sparse", model.name);
        return train_and_save(
            false,
            model,
            None,
            &data,
            &args.hyper,
            &out,
            args.history.as_deref(),
            &mut [&mut callback],
            &device,
        );
    }
    let criterion = config.criterion;
    let mut sparsifier = Sparsifier::new(&model.net, &model.input_shape, config)?;
    if matches!(criterion, Criterion::Wanda | Criterion::Taylor) {
        // A calibration batch: the first 128 training images.
        let Some(spec) = args.data.clone() else {
            anyhow::bail!(
                "criterion {} needs a calibration batch: pass --data",
                criterion.name()
            );
        };
        let batch = calibration_batch(&spec, &args.train_files, 128, &device)?;
        if criterion == Criterion::Wanda {
            sparsifier.calibrate(&model.net, batch.images)?;
        } else {
            sparsifier.calibrate_gradients(&model.net, batch.images, batch.targets)?;
        }
    }
    let report = sparsifier.prune(&mut model.net, args.sparsity)?;
    model.name = format!("{}+sparse", model.name);
    args.out.save(&model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{:<16} {:>20} {:>8} {:>12} {:>9}",
        "layer", "shape", "groups", "zero groups", "sparsity"
    );
    for l in &report {
        println!(
            "{:<16} {:>20} {:>8} {:>12} {:>8.1} %",
            l.path,
            format!("{:?}", l.shape),
            l.groups,
            l.zero_groups,
            100.0 * l.sparsity
        );
    }
    println!("saved {}", args.out.output.display());
    Ok(())
}
