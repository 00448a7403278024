//! `fasterai eval MODEL_FILE --data ...`: accuracy, loss and per-class accuracy; perplexity
//! and bits per byte of a language model on `--data text:FILE`.

use anyhow::{Result, bail};
use fasterai::burn::tensor::Device;
use fasterai::models::tokenizer::Tokenizer;
use fasterai::train::TrainError;
use fasterai::train::evaluate_with;
use fasterai::train::learner::check_data;
use fasterai::train::text::{TextSource, perplexity, read_text};

use crate::data_arg::DataArgs;
use crate::model_arg::{DeviceArgs, InferenceArgs, ModelArgs};

/// Evaluate a model on the validation split of the data; a language model on a text
/// (`--data text:FILE`, or `text:DIR` for its valid.txt): perplexity per token by the sliding-
/// window method, bits per byte, and their uncertainty.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Images per batch (windows per batch for text).
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Text: tokens per window [default: the model's context].
    #[arg(long)]
    window: Option<usize>,
    /// Text: tokens between window starts [default: half the window].
    #[arg(long)]
    stride: Option<usize>,
    /// Text: evaluate only the first N bytes of the file (quick runs).
    #[arg(long, value_name = "N")]
    max_bytes: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    inference: InferenceArgs,
}

pub fn run(args: Args) -> Result<()> {
    args.inference.init_threads()?;
    let device = args.device.device()?;
    if let Some(source) = TextSource::parse(&args.data.data) {
        return eval_text(&args, &source?, &device);
    }
    let data = args.data.load()?;
    let model = args.model.load(Some(data.valid.shape()), &device)?;
    check_data(&model, &data.valid, &data.valid)?;
    let net = args.inference.prepare(model.net, &device)?;
    let report = evaluate_with(
        |x| net.try_forward(x),
        &data.valid,
        &data.normalize,
        args.batch_size,
        &device,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// Perplexity of a language model on a text.
fn eval_text(args: &Args, source: &TextSource, device: &Device) -> Result<()> {
    let model = args.model.load(None, device)?;
    let Some(text_model) = &model.text else {
        bail!(
            "{} is not a language model; text data evaluates language models",
            model.name
        );
    };
    let tokenizer = Tokenizer::of(text_model)?;
    let path = source.evaluation_file();
    let mut text = read_text(&path)?;
    if let Some(n) = args.max_bytes {
        let mut cut = n.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let ids = tokenizer.encode(&text)?;
    let as_float: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
    let context = model.input_shape[0];
    let window = args.window.unwrap_or(context).min(ids.len());
    let stride = args.stride.unwrap_or(window.div_ceil(2));
    crate::text::check_ids(&model, &as_float, window)?;
    let first = tokenizer.decode(&ids[..1.min(ids.len())])?.len();
    let bytes = text.len().saturating_sub(first);
    let bar = crate::text::progress(ids.len().saturating_sub(1) as u64, "tokens", args.json);
    let net = &model.net;
    let forward = |x| {
        net.try_forward(x)
            .map_err(TrainError::from)
            .map(|y| y.into_tokens().expect("a decoder writes tokens"))
    };
    // Windows per batch: logits of at most 2²⁸ values (1 GiB).
    let vocabulary = crate::text::vocabulary(&model).unwrap_or(1);
    let batch = args
        .batch_size
        .min((1 << 28) / (window * vocabulary).max(1))
        .max(1);
    let report = perplexity(
        forward,
        &ids,
        bytes,
        window,
        stride,
        batch,
        device,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["file"] = path.display().to_string().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{} on {}", model.name, path.display());
        print!("{report}");
    }
    Ok(())
}
