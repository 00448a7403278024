//! # fasterai-prune
//!
//! Physically removes channels from any model graph, with the channels that must go with
//! them found by [`Coupling`] (no tracing): a residual stage is one group, a depthwise conv
//! and a squeeze-excitation gate follow the channels they carry, `Concat` maps slices, a
//! `Flatten` spreads a channel over `H·W` columns of the next `Linear`. In a transformer the
//! same analysis finds attention heads, query/key and value head dimensions, MLP units and
//! the embedding width (the whole residual stream), each pruned by its own ratio. The model
//! input and output channels never change.
//!
//! - [`prune_zeroed`]: removes every channel, head and head dimension that provably adds
//!   zero to all its readers, losslessly (outputs agree to float rounding); and embedding
//!   channels that the residual stream carries as zero, with a note, since removing one
//!   changes what every LayerNorm computes. Zeros come from
//!   [`fasterai-sparsify`](https://docs.rs/fasterai-sparsify) or anywhere else. A zero filter
//!   whose batch norm turns it into a non-zero constant (`β − μγ/√(σ²+ε)`, e.g. in
//!   Conv → ReLU → BN) is kept: removing it would change the outputs.
//! - [`prune_groups`]: structured pruning by group importance (a criterion per member, reduced
//!   over the group's coupled layers, optionally normalised; heads also by what they write on
//!   calibration data, [`calibrate_heads`]), local or global within each kind, with
//!   `round_to`; [`prune_to_speedup`] finds the ratio that reaches a MACs target.
//!
//! ```no_run
//! use fasterai_core::prelude::*;
//! use fasterai_prune::prune_zeroed;
//!
//! let device = parse_device("flex")?;
//! let model = load_model("sparse.safetensors".as_ref(), &device)?;
//! let (smaller, report) = prune_zeroed(&model)?;
//! println!("{report}");
//! save_model(&smaller, "pruned.safetensors".as_ref(), false)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings))))]

mod importance;
mod scores;

use std::fmt;

use fasterai_core::graph::Layer;
use fasterai_core::graph::coupling::{Coupling, GroupKind};
use fasterai_core::model::Model;
use fasterai_core::summary::{count_parameters, si, thousands};
use serde::Serialize;

pub use importance::{
    GroupCriterion, GroupPruneConfig, PruneContext, Reduction, calibrate_heads, prune_groups,
    prune_to_speedup,
};

/// Everything that can go wrong while pruning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PruneError {
    /// A configuration value is out of range.
    #[error("invalid pruning configuration: {0}")]
    Config(String),
    /// Graph error.
    #[error(transparent)]
    Core(#[from] fasterai_core::CoreError),
}

/// Result alias for [`PruneError`].
pub type Result<T, E = PruneError> = std::result::Result<T, E>;

/// One layer's change.
#[derive(Debug, Clone, Serialize)]
pub struct PrunedLayer {
    /// Path.
    pub path: String,
    /// Type.
    pub kind: &'static str,
    /// Weight shape before (PyTorch layout; BatchNorm: `[features]`).
    pub before: Vec<usize>,
    /// Weight shape after.
    pub after: Vec<usize>,
    /// Parameters before.
    pub params_before: usize,
    /// Parameters after.
    pub params_after: usize,
}

/// One group's change.
#[derive(Debug, Clone, Serialize)]
pub struct PrunedGroup {
    /// Group id (in the coupling analysis of the model before).
    pub id: usize,
    /// What its units are.
    pub kind: GroupKind,
    /// Its first producer (for heads and head dimensions, the attention).
    pub node: String,
    /// Units removed.
    pub removed: usize,
    /// Units before.
    pub of: usize,
}

/// What a pruning call did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Every layer whose shape changed.
    pub layers: Vec<PrunedLayer>,
    /// Groups that lost units.
    pub groups: Vec<PrunedGroup>,
    /// Things the user should know (a group kept one zero channel so it stays non-empty).
    pub notes: Vec<String>,
    /// Model parameters before.
    pub params_before: usize,
    /// Model parameters after.
    pub params_after: usize,
    /// Multiply-accumulates per sample before.
    pub macs_before: u64,
    /// Multiply-accumulates per sample after.
    pub macs_after: u64,
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .layers
            .iter()
            .map(|l| l.path.len())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(
            f,
            "{:<width$} {:<12} {:>20} {:>20} {:>13} {:>13}",
            "layer", "type", "shape before", "shape after", "params before", "params after"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<width$} {:<12} {:>20} {:>20} {:>13} {:>13}",
                l.path,
                l.kind,
                format!("{:?}", l.before),
                format!("{:?}", l.after),
                thousands(l.params_before as u64),
                thousands(l.params_after as u64)
            )?;
        }
        let mut removed: std::collections::BTreeMap<GroupKind, (usize, usize, usize)> =
            Default::default();
        for g in &self.groups {
            let r = removed.entry(g.kind).or_default();
            *r = (r.0 + g.removed, r.1 + g.of, r.2 + 1);
        }
        for (kind, (removed, of, n)) in removed {
            let (_, units) = kind.unit();
            let groups = if n == 1 { "group" } else { "groups" };
            writeln!(
                f,
                "removed {} of {} {units} ({kind}, {n} {groups})",
                thousands(removed as u64),
                thousands(of as u64)
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        writeln!(
            f,
            "MACs: {} → {} ({:.2}× fewer)",
            si(self.macs_before as f64),
            si(self.macs_after as f64),
            self.macs_before as f64 / self.macs_after.max(1) as f64
        )?;
        write!(
            f,
            "total: {} → {} parameters ({:.1} % removed)",
            thousands(self.params_before as u64),
            thousands(self.params_after as u64),
            100.0 * (1.0 - self.params_after as f64 / self.params_before.max(1) as f64)
        )
    }
}

/// Weight shape in PyTorch's layout (BatchNorm: `[features]`), or empty.
fn torch_shape(layer: &Layer) -> Vec<usize> {
    match layer {
        Layer::Conv2d(c) => c.weight.dims().to_vec(),
        Layer::BatchNorm2d(bn) => bn.gamma.dims().to_vec(),
        Layer::MultiheadAttention(a) => a.in_proj_weight.dims().to_vec(),
        Layer::Linear(l) => {
            let [i, o] = l.weight.dims();
            vec![o, i]
        }
        _ => Vec::new(),
    }
}

/// Removes the units where `keep[group][c]` is false and reports what changed.
pub fn remove_channels(
    model: &Model,
    coupling: &Coupling,
    keep: &[Vec<bool>],
    mut notes: Vec<String>,
) -> Result<(Model, PruneReport)> {
    let mut net = model.net.clone();
    coupling.remove_channels(&mut net, keep)?;
    let mut layers = Vec::new();
    for (old, new) in model.net.nodes.iter().zip(&net.nodes) {
        let (before, after) = (count_parameters(&old.layer), count_parameters(&new.layer));
        if before != after {
            layers.push(PrunedLayer {
                path: old.name.clone(),
                kind: old.layer.kind(),
                before: torch_shape(&old.layer),
                after: torch_shape(&new.layer),
                params_before: before,
                params_after: after,
            });
        }
    }
    let pruned = Model::new(model.name.clone(), model.input_shape.clone(), net)?;
    let groups: Vec<PrunedGroup> = coupling
        .groups
        .iter()
        .zip(keep)
        .filter_map(|(g, k)| {
            let removed = k.iter().filter(|k| !**k).count();
            (removed > 0).then(|| PrunedGroup {
                id: g.id,
                kind: g.kind,
                node: g.producers.first().cloned().unwrap_or_default(),
                removed,
                of: g.channels,
            })
        })
        .collect();
    if groups.iter().any(|g| g.kind == GroupKind::Embed) {
        notes.push(
            "embedding channels were removed: this is never exact, since every LayerNorm now \
             takes its mean and variance over fewer channels; fine-tune afterwards"
                .into(),
        );
    }
    let report = PruneReport {
        layers,
        groups,
        notes,
        params_before: count_parameters(&model.net),
        params_after: count_parameters(&pruned.net),
        macs_before: model.macs()?,
        macs_after: pruned.macs()?,
    };
    Ok((pruned, report))
}

/// Removes every channel, head and head dimension that adds exactly zero to all its readers
/// (see the crate docs). Outputs are unchanged up to float rounding, unless embedding channels
/// went too (the report then says so). A group whose channels are all zero keeps one
/// (zero) channel, so no layer is left empty; the report says so.
pub fn prune_zeroed(model: &Model) -> Result<(Model, PruneReport)> {
    let coupling = Coupling::new(&model.net, &model.input_shape)?;
    let zero = coupling.zero_channels(&model.net, &model.input_shape)?;
    let mut notes = Vec::new();
    let keep: Vec<Vec<bool>> = zero
        .iter()
        .zip(&coupling.groups)
        .map(|(z, g)| {
            let zeros = z.iter().filter(|z| **z).count();
            if let (Some(why), true) = (&g.locked, zeros > 0) {
                notes.push(format!(
                    "{zeros} zero channel(s) made by {} stay: the group is locked ({why})",
                    g.producers.join(", ")
                ));
                return vec![true; g.channels];
            }
            let mut keep: Vec<bool> = z.iter().map(|z| !z).collect();
            if !keep.is_empty() && keep.iter().all(|k| !k) {
                keep[0] = true;
                notes.push(format!(
                    "all {} channels of the group made by {} are zero: one is kept so the \
                     layers stay valid (the layer is dead; consider removing it)",
                    g.channels,
                    g.producers.join(", ")
                ));
            }
            keep
        })
        .collect();
    remove_channels(model, &coupling, &keep, notes)
}
