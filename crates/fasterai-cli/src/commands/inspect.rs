//! `fasterai inspect MODEL`: the layer table and totals.

use anyhow::Result;
use fasterai::core::summary::Summary;

use crate::model_arg::{ModelArgs, parse_shape};

/// Print every layer (path, type, output shape, parameters, MACs) and the totals.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Input shape CxHxW [default: 3x224x224, 3x32x32 for `_small`, a file's own].
    #[arg(long, value_parser = parse_shape)]
    input: Option<[usize; 3]>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let summary = match args.model.builtin(args.input)? {
        // A built-in architecture needs no weights to be described.
        Some(config) => Summary::new(&config.name(), &config_graph(&config)?, &config.input_shape)?,
        None => args
            .model
            .load(args.input, &fasterai::core::device::parse_device("flex")?)?
            .summary()?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(())
}

/// The graph of a built-in model with lazily initialised (never materialised) weights.
fn config_graph(config: &fasterai::models::VggConfig) -> Result<fasterai::core::graph::Graph> {
    Ok(config
        .init(&fasterai::core::device::parse_device("flex")?)?
        .net)
}
