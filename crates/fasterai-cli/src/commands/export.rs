//! `fasterai export MODEL -o model.onnx`: any model as ONNX.

use std::path::Path;

use anyhow::{Context, Result, bail};
use fasterai::core::summary::thousands;
use fasterai::onnx::{EXPORT_OPSET, export_file};

use crate::commands::import::is_onnx;
use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Write a model (built-in or file, compressed or not) as ONNX (opset 17, dynamic batch; input
/// `input`, output `output`) for onnxruntime, TensorRT or any ONNX runtime.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    if !is_onnx(&args.out.output) {
        bail!(
            "the output {} should end in .onnx",
            args.out.output.display()
        );
    }
    args.out.check(&[Path::new(&args.model.model)])?;
    let model = args.model.load(None, &args.device.device()?)?;
    let bytes = export_file(&model, &args.out.output, args.out.force)
        .with_context(|| format!("exporting {}", model.name))?;
    println!(
        "exported {} ({} parameters, input {:?}) as ONNX opset {EXPORT_OPSET}: {} ({:.1} MB)",
        model.name,
        thousands(model.num_params() as u64),
        model.input_shape,
        args.out.output.display(),
        bytes as f64 / 1e6
    );
    Ok(())
}
