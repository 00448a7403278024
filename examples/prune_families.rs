//! Group pruning on the branched families, timed: for each model, ratio, context and criterion,
//! one JSON line with parameters and MACs before and after, the time to derive the channel
//! groups from the graph, and the time of the whole `prune_groups` call (which derives them
//! again, scores and removes). `scripts/torch_pruning_compare.py`
//! runs this and Torch-Pruning side by side.
//!
//! ```text
//! cargo run --release -p fasterai --example prune_families [-- resnet18,mobilenet_v2]
//! cargo run --release -p fasterai --example prune_families -- vit_b_16
//! ```
//!
//! Models have 1000 classes and 3x224x224 inputs, random weights and non-trivial batch-norm
//! statistics; the classifier output is never pruned. A vision transformer is pruned by kind
//! instead (local, L2): half of the heads, a quarter of the MLP units, of the head dimensions,
//! of the embedding width, and half of the heads and MLP units together (`--ratio 0.5`).

use std::time::Instant;

use fasterai::core::graph::coupling::{Coupling, GroupKind};
use fasterai::core::testing::randomize_batch_norms;
use fasterai::models::Builtin;
use fasterai::prelude::*;
use fasterai::prune::{GroupCriterion, GroupPruneConfig, PruneContext, prune_groups};

fn main() -> anyhow::Result<()> {
    let names = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "resnet18,resnet50,mobilenet_v2,mobilenet_v3_small".to_string());
    let device = parse_device("flex")?;
    device.seed(0);
    for name in names.split(',') {
        let mut model = name.parse::<Builtin>()?.init(&device)?;
        if name.starts_with("vit") {
            transformer(name, &model)?;
            continue;
        }
        randomize_batch_norms(&mut model.net, &device);
        for ratio in [0.3, 0.5] {
            for context in [PruneContext::Local, PruneContext::Global] {
                for criterion in [GroupCriterion::L1, GroupCriterion::L2] {
                    let config = GroupPruneConfig {
                        context,
                        criterion,
                        ..GroupPruneConfig::new(ratio)
                    };
                    let mut line = timed(&model, &config)?;
                    line["model"] = name.into();
                    line["ratio"] = ratio.into();
                    line["context"] = format!("{context:?}").to_lowercase().into();
                    line["criterion"] = format!("{criterion:?}").to_lowercase().into();
                    println!("{line}");
                }
            }
        }
    }
    Ok(())
}

/// The transformer cases: one JSON line per kind (and `heads+mlp`).
fn transformer(name: &str, model: &Model) -> anyhow::Result<()> {
    let cases = [
        ("heads", 0.5, vec![GroupKind::Head]),
        ("mlp", 0.25, vec![GroupKind::MlpUnit]),
        (
            "head_dims",
            0.25,
            vec![GroupKind::QueryKeyDim, GroupKind::ValueDim],
        ),
        ("embed", 0.25, vec![GroupKind::Embed]),
        ("heads+mlp", 0.5, vec![GroupKind::Head, GroupKind::MlpUnit]),
    ];
    for (case, ratio, kinds) in cases {
        let mut config = GroupPruneConfig::new(0.0);
        config.kinds.extend(kinds.iter().map(|&k| (k, ratio)));
        let mut line = timed(model, &config)?;
        line["model"] = name.into();
        line["case"] = case.into();
        line["ratio"] = ratio.into();
        println!("{line}");
    }
    Ok(())
}

/// Groups derived, then `prune_groups` run, each timed: counts before and after and seconds,
/// as JSON.
fn timed(model: &Model, config: &GroupPruneConfig) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let groups = Coupling::new(&model.net, &model.input_shape)?;
    let group_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (_, report) = prune_groups(model, config)?;
    let prune_s = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "groups": groups.groups.len(),
        "params_before": report.params_before,
        "params_after": report.params_after,
        "macs_before": report.macs_before,
        "macs_after": report.macs_after,
        "group_s": group_s,
        "prune_s": prune_s,
    }))
}
