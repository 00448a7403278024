//! `fasterai import ARCH --weights FILE -o OUT`: a torchvision checkpoint into a model file.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use fasterai::core::io::import_pytorch_weights;

use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Convert a torchvision-layout checkpoint (`.pth`/`.pt` state dict, or `.safetensors` with
/// PyTorch keys) into a fasterai model file that carries its own architecture.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    arch: ModelArgs,
    /// The checkpoint to read.
    #[arg(long)]
    weights: PathBuf,
    /// Key of the state dict inside the checkpoint, if nested (e.g. `state_dict`).
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    if args.arch.builtin(None)?.is_none() {
        bail!("ARCH must be a built-in architecture such as vgg16_bn, not a file");
    }
    args.out.check(&[&args.weights])?;
    let mut model = args.arch.load(None, &args.device.device()?)?;
    let applied = import_pytorch_weights(&mut model.net, &args.weights, args.key.as_deref())
        .with_context(|| format!("importing {} as {}", args.weights.display(), model.name))?;
    args.out.save(&model)?;
    println!(
        "imported {applied} tensors from {} into {} ({} parameters) → {}",
        args.weights.display(),
        model.name,
        fasterai::core::summary::thousands(model.num_params() as u64),
        args.out.output.display()
    );
    Ok(())
}
