//! `fasterai export MODEL -o model.onnx`: any model as ONNX; `--format hf -o DIR`: a language
//! model as a Hugging Face folder.

use std::path::Path;

use anyhow::{Context, Result, bail};
use fasterai::core::summary::thousands;
use fasterai::models::hf::export_folder;
use fasterai::onnx::{EXPORT_OPSET, export_file};

use crate::commands::import::is_onnx;
use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Write a model (built-in or file, compressed or not) as ONNX (opset 17, dynamic batch; input
/// `input`, output `output`) for onnxruntime, TensorRT or any ONNX runtime; or a language model
/// as a Hugging Face folder (`--format hf -o DIR`: config.json, model.safetensors in f32 and
/// tokenizer.json) that `transformers` loads.
///
///   fasterai export resnet18.safetensors -o resnet18.onnx
///   fasterai export gpt2.safetensors --format hf -o gpt2-out
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// `onnx`, or `hf` for a Hugging Face folder (language models).
    #[arg(long, default_value = "onnx")]
    format: Format,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// What `export` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// An ONNX file.
    Onnx,
    /// A Hugging Face folder.
    Hf,
}

pub fn run(args: Args) -> Result<()> {
    if let Format::Hf = args.format {
        return export_hf(args);
    }
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

/// A language model as a Hugging Face folder.
fn export_hf(args: Args) -> Result<()> {
    let dir = &args.out.output;
    if dir.is_file() {
        bail!("{} is a file; --format hf writes a folder", dir.display());
    }
    let model = args.model.load(None, &args.device.device()?)?;
    export_folder(&model, dir, args.out.force)
        .with_context(|| format!("exporting {} to {}", model.name, dir.display()))?;
    println!(
        "exported {} ({} parameters) as a Hugging Face folder: {}",
        model.name,
        thousands(model.num_params() as u64),
        dir.display()
    );
    Ok(())
}
