//! `fasterai decompose MODEL -o OUT --fc 0.5`: low-rank factorisation.

use std::path::PathBuf;

use anyhow::Result;
use fasterai::burn::tensor::{Distribution, Tensor};
use fasterai::core::graph::Activation;
use fasterai::core::io::save_model;
use fasterai::decompose::linear::{LinearRank, LinearSvdConfig, factorize_linears};

use crate::files::refuse_overwrite;
use crate::model_arg::{DeviceArgs, ModelArgs};

/// Replace Linear layers by two smaller ones from their truncated SVD, print the per-layer
/// table (rank, parameters, weight and output error on a random probe batch) and save.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("fc_rule").required(true).args(["fc", "fc_rank", "fc_energy"])))]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Model file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Fraction of singular values to remove from each Linear, in [0, 1) (seed 004: 0.5).
    #[arg(long)]
    fc: Option<f64>,
    /// Keep exactly K singular values.
    #[arg(long, value_name = "K")]
    fc_rank: Option<usize>,
    /// Keep the fewest singular values holding this fraction of the energy Σσ², in (0, 1].
    #[arg(long, value_name = "E")]
    fc_energy: Option<f64>,
    /// Only these layers (comma-separated paths, e.g. classifier.0,classifier.3) [default: every Linear].
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Images in the random probe batch used to measure output errors (0 to skip).
    #[arg(long, default_value_t = 8)]
    probe: usize,
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
    let rank = match (args.fc, args.fc_rank, args.fc_energy) {
        (Some(p), _, _) => LinearRank::PercentRemoved(p),
        (_, Some(k), _) => LinearRank::Rank(k),
        (_, _, Some(e)) => LinearRank::Energy(e),
        _ => unreachable!("clap requires one rule"),
    };
    let device = args.device.device()?;
    let mut model = args.model.load(None, &device)?;
    let probe = (args.probe > 0).then(|| {
        let mut shape = vec![args.probe];
        shape.extend(&model.input_shape);
        let shape: [usize; 4] = shape.try_into().expect("image models have CxHxW inputs");
        Activation::Spatial(Tensor::<4>::random(
            shape,
            Distribution::Normal(0.0, 1.0),
            &device,
        ))
    });
    let config = LinearSvdConfig::new(rank).with_layers(args.layers.clone());
    let (net, report) = factorize_linears(&model.net, &config, probe)?;
    model.net = net;
    model.name = format!("{}+fc-svd", model.name);
    save_model(&model, &args.output, args.force)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}\nsaved {}", args.output.display());
    }
    Ok(())
}
