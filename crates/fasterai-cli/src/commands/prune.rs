//! `fasterai prune MODEL -o OUT`: remove zeroed filters for real.

use anyhow::Result;
use fasterai::prune::prune_zeroed;
use fasterai::sparsify::{Criterion, Granularity, Sparsifier, SparsifyConfig};

use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Remove zeroed filters (and the batch-norm entries and input channels that go with them),
/// losslessly; with --ratio, first zero that fraction of each conv's filters by --criterion
/// (structured pruning in one step). Prints the per-layer table.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Zero this fraction of every conv's filters first, in [0, 1).
    #[arg(long)]
    ratio: Option<f64>,
    /// Filter importance for --ratio.
    #[arg(long, default_value = "l1", requires = "ratio")]
    criterion: Criterion,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    args.out.check(&[std::path::Path::new(&args.model.model)])?;
    let device = args.device.device()?;
    let mut model = args.model.load(None, &device)?;
    if let Some(ratio) = args.ratio {
        let mut config = SparsifyConfig::new(Granularity::Filter);
        config.criterion = args.criterion;
        Sparsifier::new(&model.net, config)?.prune(&mut model.net, ratio)?;
    }
    let (mut pruned, report) = prune_zeroed(&model)?;
    pruned.name = format!("{}+pruned", model.name);
    args.out.save(&pruned)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}\nsaved {}", args.out.output.display());
    }
    Ok(())
}
