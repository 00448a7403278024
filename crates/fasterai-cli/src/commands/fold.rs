//! `fasterai fold MODEL -o OUT`: batch-norm folding.

use anyhow::Result;
use fasterai::fold::fold_batch_norms;

use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Fold every BatchNorm2d that directly follows a Conv2d into it (lossless at inference) and
/// save the smaller model.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let input = std::path::Path::new(&args.model.model);
    args.out.check(&[input])?;
    let mut model = args.model.load(None, &args.device.device()?)?;
    crate::model_arg::require_float(&model, "fold")?;
    let (net, report) = fold_batch_norms(&model.net)?;
    model.net = net;
    model.name = format!("{}+folded", model.name);
    args.out.save(&model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}\nsaved {}", args.out.output.display());
    }
    Ok(())
}
