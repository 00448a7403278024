//! `fasterai predict MODEL --input X.npy --output Y.npy`: run a model on a NumPy array (images,
//! or token ids for a language model).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fasterai::burn::tensor::{Device, Tensor, TensorData};
use fasterai::core::graph::Activation;

use crate::files::{read_npy, read_npy_ids, refuse_overwrite, write_npy};
use crate::model_arg::{DeviceArgs, InferenceArgs, ModelArgs};

/// Run MODEL in evaluation mode on an NCHW float32 `.npy` array (a language model: int64 or
/// int32 token ids `[batch, tokens]`) and write its outputs (logits `[batch, tokens,
/// vocabulary]`) as `.npy`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Input images, float32, shape [N, C, H, W] (or [C, H, W] for one image); token ids
    /// [N, T] (or [T]) for a language model.
    #[arg(long = "input", value_name = "X.npy")]
    images: PathBuf,
    /// Where to write the outputs (float32, [N, ...]).
    #[arg(short, long, value_name = "Y.npy")]
    output: PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    inference: InferenceArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: Args) -> Result<()> {
    args.inference.init_threads()?;
    // Neither input, --force or not.
    let model_path = Path::new(&args.model.model);
    refuse_overwrite(&args.output, &[&args.images, model_path], args.force)?;
    let device = args.device.device()?;
    if crate::text::is_language_model(&args.model)? {
        return predict_tokens(args, &device);
    }
    let array = read_npy(&args.images)?;
    let shape: [usize; 4] = match array.shape[..] {
        [n, c, h, w] => [n, c, h, w],
        [c, h, w] => [1, c, h, w],
        _ => bail!(
            "{} has shape {:?}; expected [N, C, H, W] or [C, H, W]",
            args.images.display(),
            array.shape
        ),
    };
    if shape.contains(&0) {
        bail!(
            "{} is empty (shape {:?})",
            args.images.display(),
            array.shape
        );
    }
    let model = args
        .model
        .load(Some([shape[1], shape[2], shape[3]]), &device)?;
    let x = Tensor::<4>::from_data(TensorData::new(array.data, shape), &device);
    let net = args.inference.prepare(model.net, &device)?;
    let y = net.try_forward(x)?;
    finish(&args, y, model_path)
}

/// Logits for token ids: `[N, T]` ids → `[N, T, vocabulary]`.
fn predict_tokens(args: Args, device: &Device) -> Result<()> {
    let model_path = Path::new(&args.model.model);
    let array = read_npy_ids(&args.images)?;
    let [n, t] = match array.shape[..] {
        [n, t] => [n, t],
        [t] => [1, t],
        _ => bail!(
            "{} has shape {:?}; token ids are [batch, tokens] or [tokens]",
            args.images.display(),
            array.shape
        ),
    };
    let model = args.model.load(None, device)?;
    crate::text::check_ids(&model, &array.data, t)
        .with_context(|| format!("reading {}", args.images.display()))?;
    let ids = Tensor::<2>::from_data(TensorData::new(array.data, [n, t]), device);
    let y = model.net.try_forward(ids)?;
    finish(&args, y, model_path)
}

/// Writes the outputs.
fn finish(args: &Args, y: Activation, model_path: &Path) -> Result<()> {
    let out_shape = y.dims();
    let values = y.flatten().into_data();
    let values = values
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading outputs: {e:?}"))?;
    write_npy(
        &args.output,
        &out_shape,
        &values,
        &[&args.images, model_path],
        args.force,
    )?;
    println!(
        "{} → {} {:?}",
        args.images.display(),
        args.output.display(),
        out_shape
    );
    Ok(())
}
