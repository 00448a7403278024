//! `fasterai eval MODEL_FILE --data ...`: accuracy, loss and per-class accuracy.

use anyhow::Result;
use fasterai::train::evaluate_with;
use fasterai::train::learner::check_data;

use crate::data_arg::DataArgs;
use crate::model_arg::{DeviceArgs, InferenceArgs, ModelArgs};

/// Evaluate a model on the validation split of the data.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Images per batch.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
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
