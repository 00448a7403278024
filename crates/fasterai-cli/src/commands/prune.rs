//! `fasterai prune MODEL -o OUT`: remove channels for real, by zeros or by importance.

use anyhow::Result;
use fasterai::core::graph::coupling::GroupKind;
use fasterai::prune::{
    GroupCriterion, GroupPruneConfig, PruneContext, Reduction, calibrate_heads, prune_groups,
    prune_to_speedup, prune_zeroed,
};

use crate::data_arg::calibration_batch;
use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Remove channels physically, with everything coupled to them (batch norms, the next convs,
/// a whole residual stage, depthwise convs and gates; in a transformer, heads with their q, k,
/// v and out_proj slices). Without --ratio: the channels, heads and head dims that are
/// exactly zero (after `sparsify`), losslessly. With --ratio: that fraction of each group (or
/// of all groups of a kind, --context global), weakest first by group importance; on a
/// transformer --ratio prunes heads and MLP units, and --heads, --head-dims, --mlp and --embed
/// set each kind apart. With --speedup: as few as give that MACs reduction. Prints the
/// per-layer table, parameters and MACs.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("by_importance")
    .args(["ratio", "speedup", "heads", "head_dims", "mlp", "embed"])
    .multiple(true))]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Remove this fraction of channels, in [0, 1), by importance.
    #[arg(long)]
    ratio: Option<f64>,
    /// Instead of --ratio: remove the fewest channels that give this many times fewer MACs
    /// (2 halves them).
    #[arg(long, conflicts_with = "ratio")]
    speedup: Option<f64>,
    /// Transformers: remove this fraction of each attention's heads (all their q, k, v rows
    /// and out_proj columns).
    #[arg(long)]
    heads: Option<f64>,
    /// Transformers: remove this fraction of each head's query/key and value dimensions (the
    /// same ones in every head of an attention; the softmax scale is kept).
    #[arg(long)]
    head_dims: Option<f64>,
    /// Transformers: remove this fraction of each MLP's hidden units.
    #[arg(long)]
    mlp: Option<f64>,
    /// Transformers: remove this fraction of the embedding width (the whole residual stream;
    /// never exact, since LayerNorms then normalise over fewer channels).
    #[arg(long)]
    embed: Option<f64>,
    /// Per-layer importance of a unit: l1 (Σ|w|), l2 (Σw²), or output (heads by the norm of
    /// what each writes on the first 128 images of --data; other units l2).
    #[arg(long, default_value = "l2", requires = "by_importance")]
    criterion: GroupCriterion,
    /// Calibration images for --criterion output: cifar10:DIR, fashion-mnist:DIR, mnist:DIR,
    /// folder:DIR, synthetic[:N].
    #[arg(long, value_name = "KIND:DIR")]
    data: Option<String>,
    /// CIFAR-10 files the calibration images come from.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    train_files: Vec<String>,
    /// How a group's layers combine their scores: mean, sum or max.
    #[arg(long, default_value = "mean", requires = "by_importance")]
    reduction: Reduction,
    /// local (each group loses --ratio) or global (the weakest --ratio of all channels).
    #[arg(long, default_value = "local", requires = "by_importance")]
    context: PruneContext,
    /// Do not divide each group's scores by their mean before a global ranking.
    #[arg(long, requires = "by_importance")]
    no_normalize: bool,
    /// Keep a multiple of this many channels in every group.
    #[arg(long, default_value_t = 1, requires = "by_importance")]
    round_to: usize,
    /// Never remove the output channels of these layers (comma-separated or repeated).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LAYER,...",
        requires = "by_importance"
    )]
    ignore: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    args.out.check(&[std::path::Path::new(&args.model.model)])?;
    let device = args.device.device()?;
    let model = args.model.load(None, &device)?;
    crate::model_arg::require_float(&model, "prune")?;
    let mut config = GroupPruneConfig {
        criterion: args.criterion,
        reduction: args.reduction,
        normalize: !args.no_normalize,
        context: args.context,
        round_to: args.round_to,
        ignored: args.ignore,
        ..GroupPruneConfig::new(args.ratio.unwrap_or(0.0))
    };
    let kinds = [
        (args.heads, &[GroupKind::Head][..]),
        (
            args.head_dims,
            &[GroupKind::QueryKeyDim, GroupKind::ValueDim],
        ),
        (args.mlp, &[GroupKind::MlpUnit]),
        (args.embed, &[GroupKind::Embed]),
    ];
    let by_kind = kinds.iter().any(|(r, _)| r.is_some());
    for (ratio, kinds) in kinds {
        if let Some(ratio) = ratio {
            config.kinds.extend(kinds.iter().map(|&k| (k, ratio)));
        }
    }
    if args.criterion == GroupCriterion::Output {
        let Some(data) = &args.data else {
            anyhow::bail!(
                "--criterion output ranks heads by what they write on calibration images: pass \
                 --data"
            );
        };
        let batch = calibration_batch(data, &args.train_files, 128, &device)?;
        config.head_outputs = calibrate_heads(&model, batch.images)?;
    }
    let (mut pruned, report) = match args.speedup {
        Some(speedup) => prune_to_speedup(&model, &config, speedup)?,
        None if args.ratio.is_some() || by_kind => prune_groups(&model, &config)?,
        None => prune_zeroed(&model)?,
    };
    pruned.name = format!("{}+pruned", model.name);
    args.out.save(&pruned)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}\nsaved {}", args.out.output.display());
    }
    Ok(())
}
