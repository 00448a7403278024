//! `fasterai inspect MODEL`: the layer table and totals, or the pruning groups.

use anyhow::{Context, Result};
use fasterai::core::graph::coupling::Coupling;
use fasterai::core::model::Model;
use fasterai::core::summary::Summary;

use crate::model_arg::{ModelArgs, parse_shape};

/// Print every layer (path, type, output shape, parameters, MACs) and the totals, or with
/// `--groups` the groups that pruning removes together (channels; in a transformer also
/// heads, head dimensions, MLP units and the embedding width).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Input shape CxHxW [default: 3x224x224, 3x32x32 for `_small` and CIFAR ResNets, a
    /// file's own].
    #[arg(long, value_parser = parse_shape)]
    input: Option<[usize; 3]>,
    /// Print the coupling groups: kind, size, members (what is pruned together), and what
    /// locks a group.
    #[arg(long)]
    groups: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let device = fasterai::core::device::parse_device("flex")?;
    // A built-in architecture's weights are lazy: describing it allocates nothing.
    let path = std::path::Path::new(&args.model.model);
    let model: Model = match args.model.builtin(args.input)? {
        Some(builtin) => builtin.init(&device)?,
        // A model file's architecture alone: its weights are not read.
        None if args.input.is_none() && path.extension().is_some_and(|e| e == "safetensors") => {
            fasterai::core::io::load_architecture(path, &device)
                .with_context(|| format!("reading {}", path.display()))?
        }
        None => args.model.load(args.input, &device)?,
    };
    if args.groups {
        let coupling = Coupling::new(&model.net, &model.input_shape)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&coupling.groups)?);
        } else {
            print!("{coupling}");
        }
        return Ok(());
    }
    let summary = Summary::new(&model.name, &model.net, &model.input_shape)?;
    // A model file is read whole once, to check its checksum.
    let is_model_file = path.is_file() && path.extension().is_some_and(|e| e == "safetensors");
    let integrity = is_model_file
        .then(|| fasterai::core::io::verify_file(path))
        .transpose()
        .with_context(|| format!("checking {}", path.display()))?;
    if args.json {
        let mut value = serde_json::to_value(&summary)?;
        if let (Some(i), Some(map)) = (integrity, value.as_object_mut()) {
            map.insert("integrity".into(), i.as_str().into());
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{summary}");
        if let Some(integrity) = integrity {
            println!("checksum: {integrity}");
        }
        if is_model_file {
            let grids = fasterai::core::io::quantized_layers(path)?;
            if let Some(grid) = grids.values().next() {
                let quantizers = model
                    .net
                    .nodes
                    .iter()
                    .filter(|n| n.layer.kind() == "FakeQuantize")
                    .count();
                println!(
                    "int{} weights ({}) in {} layers, stored as integer codes; {quantizers} \
                     activation quantizers",
                    grid.bits,
                    if grid.per_channel {
                        "one scale per output channel"
                    } else {
                        "one scale per tensor"
                    },
                    grids.len()
                );
            }
        }
    }
    Ok(())
}
