//! `fasterai fold MODEL -o OUT`: batch-norm folding.

use std::path::PathBuf;

use anyhow::Result;
use fasterai::core::io::save_model;
use fasterai::fold::fold_batch_norms;

use crate::files::refuse_overwrite;
use crate::model_arg::{DeviceArgs, ModelArgs};

/// Fold every BatchNorm2d that directly follows a Conv2d into it (lossless at inference) and
/// save the smaller model.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Model file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let input = std::path::Path::new(&args.model.model);
    refuse_overwrite(&args.output, &[input], args.force)?;
    let mut model = args.model.load(None, &args.device.device()?)?;
    let (net, report) = fold_batch_norms(&model.net)?;
    model.net = net;
    model.name = format!("{}+folded", model.name);
    save_model(&model, &args.output, args.force)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}\nsaved {}", args.output.display());
    }
    Ok(())
}
