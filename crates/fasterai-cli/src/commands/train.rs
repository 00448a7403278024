//! `fasterai train MODEL --data cifar10:DIR --epochs N -o OUT`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fasterai::core::schedule::LrSchedule;
use fasterai::train::learner::{OptimizerKind, TrainConfig};
use fasterai::train::{Callback, fit, resume};

use crate::commands::quantize::QatArgs;
use crate::data_arg::DataArgs;
use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Train a model (a built-in architecture from scratch, or a saved model to fine-tune) and save
/// the best epoch's model. Prints one line per epoch and a progress bar on a terminal.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub hyper: HyperArgs,
    /// Also write the per-epoch history as JSON here.
    #[arg(long, value_name = "FILE")]
    pub history: Option<std::path::PathBuf>,
    #[command(flatten, next_help_heading = "Quantization-aware training")]
    pub qat: QatArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Training hyper-parameters (shared with distill).
#[derive(clap::Args, Debug, Clone)]
pub struct HyperArgs {
    /// Passes over the training data.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    /// Learning-rate policy (warmup-cosine: linear warm-up over --warmup, then cosine to 0).
    #[arg(long, value_enum, default_value = "one-cycle")]
    pub lr_schedule: ScheduleKind,
    /// Fraction of training spent warming up, with --lr-schedule warmup-cosine.
    #[arg(long, default_value_t = 0.1, value_parser = warmup_fraction)]
    pub warmup: f64,
    /// Optimiser: sgd (momentum 0.9), adam, or adamw (decoupled weight decay: transformers).
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimizerArg,
    /// Weight decay (L2 for sgd and adam, decoupled for adamw).
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// No random crop and flip.
    #[arg(long)]
    pub no_augment: bool,
    /// Seed of initial weights, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue an interrupted run (same model, data and settings) after its last complete
    /// epoch, from the state it wrote to OUTPUT.state/ (weights, optimiser, schedule, masks).
    #[arg(long)]
    pub resume: bool,
}

fn warmup_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(w) if (0.0..1.0).contains(&w) => Ok(w),
        _ => Err(format!(
            "`{s}` must be a fraction of training in [0, 1), like 0.1"
        )),
    }
}

/// The folder a training run writes its state to after every epoch: `OUTPUT.state`.
pub fn state_dir(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".state");
    output.with_file_name(name)
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ScheduleKind {
    OneCycle,
    Constant,
    Cosine,
    WarmupCosine,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Adam,
    Adamw,
}

impl HyperArgs {
    /// OUTPUT as a training command may write it: a run being resumed replaces its own
    /// checkpoint. Refuses to start over silently on the state of an interrupted run.
    pub fn output(&self, out: &OutputArgs) -> Result<OutputArgs> {
        let state = state_dir(&out.output);
        let foreign = resume::foreign_files(&state);
        if let Some(file) = foreign.first() {
            bail!(
                "{} holds {} file(s) no training run wrote (e.g. {}); a run keeps its state \
                 there, so move them away or choose another output",
                state.display(),
                foreign.len(),
                file.display()
            );
        }
        let left = resume::is_run_state(&state);
        if left && !self.resume && !out.force {
            bail!(
                "an interrupted run left its state in {}: add --resume to continue it, or \
                 --force to start over",
                state.display()
            );
        }
        Ok(OutputArgs {
            force: out.force || (self.resume && left),
            ..out.clone()
        })
    }

    pub fn config(&self) -> TrainConfig {
        let mut config = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            schedule: match self.lr_schedule {
                ScheduleKind::OneCycle => LrSchedule::one_cycle(),
                ScheduleKind::Constant => LrSchedule::Constant,
                ScheduleKind::Cosine => LrSchedule::Cosine,
                ScheduleKind::WarmupCosine => LrSchedule::WarmupCosine {
                    warmup: self.warmup,
                },
            },
            optimizer: match self.optimizer {
                OptimizerArg::Sgd => OptimizerKind::Sgd {
                    momentum: 0.9,
                    weight_decay: self.weight_decay,
                },
                OptimizerArg::Adam => OptimizerKind::Adam {
                    weight_decay: self.weight_decay,
                },
                OptimizerArg::Adamw => OptimizerKind::AdamW {
                    weight_decay: self.weight_decay,
                },
            },
            seed: self.seed,
            ..TrainConfig::default()
        };
        if self.no_augment {
            config.augment.pad = 0;
            config.augment.flip = false;
        }
        config
    }
}

/// Shared by train and distill: trains `model` with `callbacks` (and `qat`'s), saves the
/// best model (int8 with `qat`) to `out` and the history to `history_file`.
#[allow(clippy::too_many_arguments)]
pub fn train_and_save(
    keep_best: bool,
    model: fasterai::core::model::Model,
    mut qat: Option<fasterai::quantize::QatCallback>,
    data: &fasterai::train::data::Splits,
    hyper: &HyperArgs,
    out: &OutputArgs,
    history_file: Option<&std::path::Path>,
    callbacks: &mut [&mut dyn Callback],
    device: &fasterai::prelude::Device,
) -> Result<()> {
    if model.is_quantized() && qat.is_none() {
        bail!(
            "{} has integer weights, which plain training would move off their grid: train it \
             with --qat, or train the float model and quantize it afterwards",
            model.name
        );
    }
    // OUTPUT is written whenever the kept model changes, so a run that dies loses at most the
    // epochs since (OUTPUT was checked before training: never an input, --force to replace).
    let state = state_dir(&out.output);
    if !hyper.resume && state.exists() {
        // Starting over (--force): the old state must not mix with this run's. Only what a
        // run wrote is removed.
        resume::clear_state(&state)
            .with_context(|| format!("removing the old run state {}", state.display()))?;
    }
    let config = TrainConfig {
        keep_best,
        checkpoint: Some(out.output.clone()),
        state_dir: Some(state.clone()),
        resume: hyper.resume,
        ..hyper.config()
    };
    device.seed(hyper.seed);
    eprintln!(
        "training {} ({} parameters) on {} images, validating on {}",
        model.name,
        fasterai::core::summary::thousands(
            fasterai::core::summary::count_parameters(&model.net) as u64
        ),
        data.train.len(),
        data.valid.len()
    );
    let finisher = qat.clone();
    // QAT first: its weight update must be taken before sparsify masks re-zero weights.
    let mut all: Vec<&mut dyn Callback> = Vec::new();
    if let Some(q) = qat.as_mut() {
        all.push(q);
    }
    for c in callbacks.iter_mut() {
        all.push(*c);
    }
    let (best, history) = fit(
        &model,
        &data.train,
        &data.valid,
        &data.normalize,
        &config,
        &mut all,
        device,
    )?;
    let best = match finisher {
        Some(q) => q.finish(&best)?,
        None => best,
    };
    // The checkpoints already wrote OUTPUT: replace it with the kept model.
    fasterai::core::io::save_model(&best, &out.output, true)?;
    if let Some(path) = history_file {
        crate::files::write_atomic(path, serde_json::to_string_pretty(&history)?.as_bytes())?;
    }
    // The run is complete: its resume state is no longer needed.
    if let Err(e) = resume::clear_state(&state) {
        eprintln!("warning: could not remove {}: {e}", state.display());
    }
    println!(
        "{} validation accuracy {:.2} % (epoch {}), {:.0} s; saved {}",
        if config.keep_best { "best" } else { "final" },
        100.0 * history.kept.0,
        history.kept.1 + 1,
        history.seconds,
        out.output.display()
    );
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let out = args.hyper.output(&args.out)?;
    out.check(&[std::path::Path::new(&args.model.model)])?;
    out.check_also(
        args.history.as_deref(),
        &[std::path::Path::new(&args.model.model)],
    )?;
    let device = args.device.device()?;
    let data = args.data.load()?;
    let mut model_args = args.model.clone();
    if model_args.num_classes.is_none() && model_args.builtin(None)?.is_some() {
        model_args.num_classes = Some(data.train.classes().len());
    }
    device.seed(args.hyper.seed);
    let model = model_args.load(Some(data.train.shape()), &device)?;
    if args.qat.qat && model_args.builtin(None)?.is_some() {
        bail!("--qat fine-tunes a trained model: give a model file, not a built-in architecture");
    }
    let (model, qat) = args.qat.prepare(model, &data, &device)?;
    train_and_save(
        true,
        model,
        qat,
        &data,
        &args.hyper,
        &out,
        args.history.as_deref(),
        &mut [],
        &device,
    )
}
