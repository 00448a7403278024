//! `fasterai decompose MODEL -o OUT --fc 0.5`: low-rank factorisation.

use anyhow::Result;
use fasterai::burn::tensor::{Distribution, Tensor};
use fasterai::core::graph::Activation;
use fasterai::decompose::conv::{ConvConfig, ConvMethod, ConvRank, decompose_convs};
use fasterai::decompose::linear::{LinearRank, LinearSvdConfig, factorize_linears};

use crate::model_arg::{DeviceArgs, ModelArgs, OutputArgs};

/// Factorise layers: Linear layers into two smaller ones by truncated SVD (--fc…), Conv2d layers
/// by Tucker-2, CP or spatial SVD (--conv tucker|cp|svd --rank …). Prints the per-layer table (rank,
/// parameters, weight and output error on a random probe batch) and saves.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("fc_rule").args(["fc", "fc_rank", "fc_energy"])))]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["fc", "fc_rank", "fc_energy", "conv"])))]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Fraction of singular values to remove from each Linear, in [0, 1) (seed 004: 0.5).
    #[arg(long)]
    fc: Option<f64>,
    /// Keep exactly K singular values.
    #[arg(long, value_name = "K")]
    fc_rank: Option<usize>,
    /// Keep the fewest singular values holding this fraction of the energy Σσ², in (0, 1].
    #[arg(long, value_name = "E")]
    fc_energy: Option<f64>,
    /// Decompose Conv2d layers: `tucker` (1×1, core, 1×1), `cp` (1×1, k×1 and 1×k depthwise,
    /// 1×1) or `svd` (spatial SVD: k×1, 1×k).
    #[arg(long, value_enum)]
    conv: Option<ConvKind>,
    /// Conv ranks: a number, `evbmf` (rounded up to a multiple of 8), or with --rank-ratio.
    #[arg(long, default_value = "evbmf", requires = "conv")]
    rank: String,
    /// Conv ranks as a fraction of the channels, in (0, 1] (overrides --rank).
    #[arg(long, requires = "conv")]
    rank_ratio: Option<f64>,
    /// Most HOOI (tucker) or ALS (cp) iterations.
    #[arg(long, default_value_t = 100, requires = "conv")]
    max_iter: usize,
    /// Only these layers (comma-separated paths, e.g. classifier.0,features.0) [default: every layer of the kind].
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Images in the random probe batch used to measure output errors (0 to skip).
    #[arg(long, default_value_t = 8)]
    probe: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ConvKind {
    Tucker,
    Cp,
    Svd,
}

impl ConvKind {
    fn method(self) -> ConvMethod {
        match self {
            ConvKind::Tucker => ConvMethod::Tucker2,
            ConvKind::Cp => ConvMethod::Cp,
            ConvKind::Svd => ConvMethod::SpatialSvd,
        }
    }
}

use clap::ValueEnum;

pub fn run(args: Args) -> Result<()> {
    let input = std::path::Path::new(&args.model.model);
    args.out.check(&[input])?;
    let fc_rank = match (args.fc, args.fc_rank, args.fc_energy) {
        (Some(p), _, _) => Some(LinearRank::PercentRemoved(p)),
        (_, Some(k), _) => Some(LinearRank::Rank(k)),
        (_, _, Some(e)) => Some(LinearRank::Energy(e)),
        _ => None,
    };
    let conv_config = match (args.conv, args.rank_ratio, args.rank.as_str()) {
        (None, ..) => None,
        (Some(kind), ratio, rank) => {
            let rank = match (ratio, rank) {
                (Some(x), _) => ConvRank::Ratio(x),
                (None, "evbmf") => ConvRank::Evbmf { multiple: 8 },
                (None, r) => ConvRank::Fixed(r.parse().map_err(|_| {
                    anyhow::anyhow!("--rank must be a positive number or `evbmf`, got `{r}`")
                })?),
            };
            Some(ConvConfig {
                max_iter: args.max_iter,
                ..ConvConfig::new(kind.method(), rank)
            })
        }
    };
    let device = args.device.device()?;
    let mut model = args.model.load(None, &device)?;
    crate::model_arg::require_float(&model, "decompose")?;
    // The probe batch follows the model's input: images, or flat feature vectors.
    let probe = (args.probe > 0).then(|| {
        let distribution = Distribution::Normal(0.0, 1.0);
        match model.input_shape[..] {
            [c, h, w] => Activation::Spatial(Tensor::<4>::random(
                [args.probe, c, h, w],
                distribution,
                &device,
            )),
            _ => Activation::Flat(Tensor::<2>::random(
                [args.probe, model.input_shape.iter().product()],
                distribution,
                &device,
            )),
        }
    });
    // A path list names layers of both kinds; each pass takes the ones of its own kind.
    let of_kind = |kind: &str| -> Vec<String> {
        args.layers
            .iter()
            .filter(|p| model.net.get(p).is_none_or(|l| l.kind() == kind))
            .cloned()
            .collect()
    };
    let (conv_layers, linear_layers) = (of_kind("Conv2d"), of_kind("Linear"));
    let mut reports = Vec::new();
    if let Some(config) = conv_config {
        let layers = conv_layers.clone();
        if args.layers.is_empty() || !layers.is_empty() {
            let (net, report) = decompose_convs(&model.net, &config, &layers, probe.clone())?;
            model.net = net;
            let kind = args
                .conv
                .and_then(|k| k.to_possible_value())
                .expect("--conv given");
            model.name = format!("{}+{}", model.name, kind.get_name());
            reports.push(report);
        }
    }
    if let Some(rank) = fc_rank {
        let layers = linear_layers.clone();
        if args.layers.is_empty() || !layers.is_empty() {
            let config = LinearSvdConfig::new(rank).with_layers(layers);
            let (net, report) = factorize_linears(&model.net, &config, probe)?;
            model.net = net;
            model.name = format!("{}+fc-svd", model.name);
            reports.push(report);
        }
    }
    anyhow::ensure!(
        !reports.is_empty(),
        "none of --layers {:?} is a layer the chosen methods decompose",
        args.layers
    );
    args.out.save(&model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            println!("{report}\n");
        }
        println!("saved {}", args.out.output.display());
    }
    Ok(())
}
