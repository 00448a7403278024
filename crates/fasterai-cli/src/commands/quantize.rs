//! `fasterai quantize MODEL --data KIND:DIR -o OUT`: post-training int8, and the options that
//! `train`/`distill --qat` share.

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use fasterai::core::model::Model;
use fasterai::prelude::Device;
use fasterai::quantize::{Calibration, QatCallback, QuantizeConfig, prepare_qat, quantize};
use fasterai::train::data::Splits;
use fasterai::train::evaluate;
use fasterai::train::learner::check_data;
use serde::Serialize;

use crate::data_arg::DataArgs;
use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Quantize a trained model's convolutions and linear layers to int8 (post-training):
/// weights symmetric per output channel (or per tensor), inputs on ranges calibrated on
/// training images. Prints each layer's error and the accuracy before and after; the file
/// stores int8 codes and scales.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    quant: QuantArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

/// How to quantize (shared with `train --qat` and `distill --qat`).
#[derive(clap::Args, Debug, Clone)]
pub struct QuantArgs {
    /// One weight scale per output channel (the default).
    #[arg(long, conflicts_with = "per_tensor")]
    per_channel: bool,
    /// One weight scale per tensor.
    #[arg(long)]
    per_tensor: bool,
    /// Activation ranges: minmax, percentile:P (e.g. percentile:99.9) or mse.
    #[arg(long, default_value = "percentile:99.99", value_name = "METHOD")]
    calibration: String,
    /// Training images to calibrate on.
    #[arg(long, default_value_t = 512, value_name = "N")]
    calibration_images: usize,
    /// Bits of weight codes (2–8).
    #[arg(long, default_value_t = 8)]
    bits: u8,
    /// Bits of activation codes (2–8).
    #[arg(long, default_value_t = 8)]
    activation_bits: u8,
    /// Quantize weights only; activations stay float.
    #[arg(long)]
    weights_only: bool,
    /// Layers (paths or prefixes) to leave in float, e.g. features.0,classifier.6.
    #[arg(long, value_delimiter = ',', value_name = "PATH,...")]
    skip: Vec<String>,
    /// Leave in float every layer whose relative output error exceeds E (e.g. 0.05).
    #[arg(long, value_name = "E")]
    max_error: Option<f64>,
}

impl QuantArgs {
    pub fn config(&self) -> Result<QuantizeConfig> {
        let calibration: Calibration = self.calibration.parse()?;
        let config = QuantizeConfig::default()
            .with_per_channel(!self.per_tensor)
            .with_calibration(calibration)
            .with_bits(
                self.bits,
                (!self.weights_only).then_some(self.activation_bits),
            )
            .with_skip(self.skip.clone())
            .with_max_error(self.max_error);
        config.validate()?;
        if self.calibration_images == 0 {
            bail!("--calibration-images must be at least 1");
        }
        Ok(config)
    }

    /// The first `--calibration-images` training images, normalised, in batches.
    pub fn batches(&self, model: &Model, data: &Splits, device: &Device) -> Result<Vec<Tensor<4>>> {
        check_data(model, &data.train, &data.valid)?;
        let set = data.train.take(self.calibration_images);
        Ok(set
            .batches(64, &data.normalize, device)
            .map(|b| b.images)
            .collect())
    }
}

#[derive(Serialize)]
struct Summary<'a> {
    report: &'a fasterai::quantize::QuantReport,
    float_accuracy: f64,
    quantized_accuracy: f64,
    input_bytes: u64,
    output_bytes: u64,
}

pub fn run(args: Args) -> Result<()> {
    let input = std::path::Path::new(&args.model.model);
    args.out.check(&[input])?;
    let config = args.quant.config()?;
    let device = args.device.device()?;
    let data = args.data.load()?;
    device.seed(0); // a built-in architecture's weights: the same on every run
    let model = args.model.load(Some(data.train.shape()), &device)?;
    let batches = args.quant.batches(&model, &data, &device)?;
    let (quantized, report) = quantize(&model, &batches, &config)?;
    let accuracy = |m: &Model| -> Result<f64> {
        Ok(evaluate(&m.net, &data.valid, &data.normalize, 256, &device)?.accuracy)
    };
    let (before, after) = (accuracy(&model)?, accuracy(&quantized)?);
    args.out.save(&quantized)?;
    let summary = Summary {
        report: &report,
        float_accuracy: before,
        quantized_accuracy: after,
        input_bytes: std::fs::metadata(input).map(|m| m.len()).unwrap_or(0),
        output_bytes: std::fs::metadata(&args.out.output)?.len(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{report}");
        println!(
            "accuracy {:.2} % → {:.2} % ({:+.2} points) on {} validation images",
            100.0 * before,
            100.0 * after,
            100.0 * (after - before),
            data.valid.len()
        );
        if summary.input_bytes > 0 {
            println!(
                "file {:.2} MB → {:.2} MB ({:.2}× smaller)",
                summary.input_bytes as f64 / 1e6,
                summary.output_bytes as f64 / 1e6,
                summary.input_bytes as f64 / summary.output_bytes as f64
            );
        }
        println!("saved {}", args.out.output.display());
    }
    Ok(())
}

/// `--qat` for `train` and `distill`.
#[derive(clap::Args, Debug, Clone)]
pub struct QatArgs {
    /// Quantization-aware training: calibrate int8 quantizers on the (trained, float) model,
    /// train through them, and save the int8 model.
    #[arg(long)]
    pub qat: bool,
    #[command(flatten)]
    pub quant: QuantArgs,
}

impl QatArgs {
    /// With `--qat`: the model with its quantizers and the callback that trains on the grid.
    pub fn prepare(
        &self,
        model: Model,
        data: &Splits,
        device: &Device,
    ) -> Result<(Model, Option<QatCallback>)> {
        if !self.qat {
            return Ok((model, None));
        }
        let config = self.quant.config()?;
        let batches = self.quant.batches(&model, data, device)?;
        let (prepared, callback, _) = prepare_qat(&model, &batches, &config)?;
        // Its weights on their grids: the post-training model QAT starts from.
        let start = callback.finish(&prepared)?;
        let ptq = evaluate(&start.net, &data.valid, &data.normalize, 256, device)?;
        eprintln!(
            "QAT: {} layers on int{} weights and int{} inputs; post-training accuracy before \
             QAT {:.2} %",
            callback.targets().len(),
            config.weight_bits,
            config.activation_bits.map_or("-".into(), |b| b.to_string()),
            100.0 * ptq.accuracy
        );
        Ok((prepared, Some(callback)))
    }
}
