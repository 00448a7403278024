//! `fasterai import`: an ONNX file, a Hugging Face checkpoint folder, or a torchvision
//! checkpoint for a built-in architecture, into a model file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fasterai::core::io::import_pytorch_weights;
use fasterai::core::summary::thousands;
use fasterai::models::hf::import_folder;
use fasterai::onnx::{ImportOptions, import_file};

use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs, parse_shape};

/// Convert an ONNX model (`model.onnx`: any CNN exported from PyTorch), a Hugging Face
/// language-model folder (`config.json` and `model.safetensors` or its shards; GPT-2 and
/// Llama-shaped models, in f32, f16 or bf16) or a torchvision-layout checkpoint
/// (`ARCH --weights vgg16_bn.pth`) into a fasterai model file that carries its own
/// architecture.
///
///   fasterai import resnet18.onnx -o resnet18.safetensors
///   fasterai import ./gpt2 -o gpt2.safetensors
///   fasterai import vgg16_bn --num-classes 10 --weights vgg16_bn.pth -o vgg16_bn.safetensors
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    arch: ModelArgs,
    /// The checkpoint to read into the built-in ARCH (`.pth`/`.pt`, or `.safetensors` with
    /// PyTorch keys).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Key of the state dict inside the checkpoint, if nested (e.g. `state_dict`).
    #[arg(long)]
    key: Option<String>,
    /// Per-sample input shape of an ONNX model whose file leaves it symbolic (e.g. 3x224x224).
    #[arg(long, value_parser = parse_shape)]
    input_shape: Option<[usize; 3]>,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    let source = Path::new(&args.arch.model);
    if source.is_dir() {
        if args.weights.is_some() || args.key.is_some() || args.input_shape.is_some() {
            bail!(
                "a Hugging Face folder carries its weights and shapes; drop --weights/--key/--input-shape"
            );
        }
        args.out.check(&[source])?;
        let model = import_folder(source, &args.device.device()?)
            .with_context(|| format!("importing {}", source.display()))?;
        args.out.save(&model)?;
        let text = model
            .text
            .as_ref()
            .expect("imported language models carry their origin");
        let tokenizer = if text.tokenizer.is_some() {
            "with its tokenizer"
        } else {
            "no tokenizer.json"
        };
        println!(
            "imported {} ({}, {} parameters, context {} tokens, {tokenizer}) → {}",
            source.display(),
            text.family,
            thousands(model.num_params() as u64),
            model.input_shape[0],
            args.out.output.display()
        );
        return Ok(());
    }
    if is_onnx(source) {
        if args.weights.is_some() || args.key.is_some() {
            bail!("an ONNX file carries its weights; drop --weights/--key");
        }
        args.out.check(&[source])?;
        let options = ImportOptions {
            input_shape: args.input_shape.map(|s| s.to_vec()),
            name: None,
        };
        let model = import_file(source, &options, &args.device.device()?)
            .with_context(|| format!("importing {}", source.display()))?;
        args.out.save(&model)?;
        println!(
            "imported {} ({} nodes, {} parameters, input {:?}) → {}",
            source.display(),
            model.net.nodes.len(),
            thousands(model.num_params() as u64),
            model.input_shape,
            args.out.output.display()
        );
        return Ok(());
    }
    let Some(weights) = &args.weights else {
        bail!("give --weights FILE to import a checkpoint into a built-in ARCH, or an .onnx file");
    };
    if args.input_shape.is_some() {
        bail!("--input-shape applies to ONNX files");
    }
    if args.arch.builtin(None)?.is_none() {
        bail!("ARCH must be a built-in architecture such as vgg16_bn, or an .onnx file");
    }
    args.out.check(&[weights])?;
    let mut model = args.arch.load(None, &args.device.device()?)?;
    let applied = import_pytorch_weights(&mut model.net, weights, args.key.as_deref())
        .with_context(|| format!("importing {} as {}", weights.display(), model.name))?;
    args.out.save(&model)?;
    println!(
        "imported {applied} tensors from {} into {} ({} parameters) → {}",
        weights.display(),
        model.name,
        thousands(model.num_params() as u64),
        args.out.output.display()
    );
    // Checkpoints carry no checksum of ours; the saved model does from here on.
    println!(
        "the weights were read unverified (a checkpoint carries no checksum); {} carries one",
        args.out.output.display()
    );
    Ok(())
}

/// Whether `path` names an ONNX file (by extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}
