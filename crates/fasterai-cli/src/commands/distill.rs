//! `fasterai distill --teacher FILE --student MODEL --data ... --loss soft-target -o OUT`.

use anyhow::{Context, Result, bail};
use fasterai::core::io::load_model;
use fasterai::distill::{Distiller, KdLoss, KdWeight};

use crate::commands::quantize::QatArgs;
use crate::commands::train::{HyperArgs, train_and_save};
use crate::data_arg::DataArgs;
use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Train a student against a frozen teacher with a distillation loss mixed into the task loss:
/// (1 − w)·cross-entropy + w·kd. Feature losses take student:teacher layer pairs.
#[derive(clap::Args)]
pub struct Args {
    /// The trained teacher (a fasterai model file).
    #[arg(long)]
    teacher: std::path::PathBuf,
    /// The student: a built-in architecture (trained from scratch) or a model file.
    #[arg(long)]
    student: String,
    /// Channel multiplier of a built-in student.
    #[arg(long)]
    width: Option<f64>,
    #[command(flatten)]
    data: DataArgs,
    /// Distillation loss.
    #[arg(long, value_enum, default_value = "soft-target")]
    loss: LossArg,
    /// Softmax temperature (soft-target, dkd).
    #[arg(long, default_value_t = 4.0)]
    temperature: f64,
    /// Weight w of the distillation loss, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    weight: f64,
    /// Anneal the weight (cosine) from --weight to this value over training.
    #[arg(long, value_name = "W")]
    weight_end: Option<f64>,
    /// Student:teacher layer pairs for feature losses, e.g. features.12:features.19.
    #[arg(long, value_delimiter = ',', value_name = "S:T,...")]
    pairs: Vec<String>,
    /// DKD's target-class weight.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// DKD's non-target weight.
    #[arg(long, default_value_t = 8.0)]
    beta: f64,
    /// Margin of activation boundaries.
    #[arg(long, default_value_t = 1.0)]
    margin: f64,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    hyper: HyperArgs,
    /// Also write the per-epoch history as JSON here.
    #[arg(long, value_name = "FILE")]
    history: Option<std::path::PathBuf>,
    #[command(flatten, next_help_heading = "Quantization-aware training")]
    qat: QatArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LossArg {
    SoftTarget,
    Mse,
    Mutual,
    Dkd,
    Attention,
    Fitnet,
    Similarity,
    Boundaries,
}

impl Args {
    fn loss(&self) -> Result<KdLoss> {
        let pairs = self
            .pairs
            .iter()
            .map(|p| match p.split_once(':') {
                Some((s, t)) => Ok((s.to_string(), t.to_string())),
                None => bail!("--pairs takes STUDENT_PATH:TEACHER_PATH, got `{p}`"),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(match self.loss {
            LossArg::SoftTarget => KdLoss::SoftTarget {
                temperature: self.temperature,
            },
            LossArg::Mse => KdLoss::LogitMse,
            LossArg::Mutual => KdLoss::MutualKl,
            LossArg::Dkd => KdLoss::Decoupled {
                alpha: self.alpha,
                beta: self.beta,
                temperature: self.temperature,
            },
            LossArg::Attention => KdLoss::Attention { pairs, p: 2.0 },
            LossArg::Fitnet => KdLoss::FitNet { pairs },
            LossArg::Similarity => KdLoss::Similarity { pairs },
            LossArg::Boundaries => KdLoss::ActivationBoundaries {
                pairs,
                margin: self.margin,
            },
        })
    }
}

pub fn run(args: Args) -> Result<()> {
    let out = args.hyper.output(&args.out)?;
    out.check(&[&args.teacher, std::path::Path::new(&args.student)])?;
    out.check_also(
        args.history.as_deref(),
        &[&args.teacher, std::path::Path::new(&args.student)],
    )?;
    let loss = args.loss()?;
    let device = args.device.device()?;
    let teacher = load_model(&args.teacher, &device)
        .with_context(|| format!("loading the teacher {}", args.teacher.display()))?;
    let data = args.data.load()?;
    let classes = data.train.classes().len();
    let student_args = ModelArgs {
        model: args.student.clone(),
        num_classes: None,
        width: args.width,
    };
    let student_args = ModelArgs {
        num_classes: student_args.builtin(None)?.map(|_| classes),
        ..student_args
    };
    device.seed(args.hyper.seed);
    let student = student_args.load(Some(data.train.shape()), &device)?;
    if args.qat.qat && student_args.builtin(None)?.is_some() {
        bail!(
            "--qat fine-tunes a trained student: give a model file (often the teacher itself), \
             not a built-in architecture"
        );
    }
    let (student, qat) = args.qat.prepare(student, &data, &device)?;
    let weight = match args.weight_end {
        Some(end) => KdWeight::Cosine {
            start: args.weight,
            end,
        },
        None => KdWeight::Constant(args.weight),
    };
    let mut distiller = Distiller::new(teacher, loss, weight);
    train_and_save(
        true,
        student,
        qat,
        &data,
        &args.hyper,
        &out,
        args.history.as_deref(),
        &mut [&mut distiller],
        &device,
    )
}
