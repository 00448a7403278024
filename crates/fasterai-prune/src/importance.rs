//! Structured pruning by group importance: each coupled layer scores the group's channels,
//! the scores are reduced over the group, and the weakest channels of each group (local) or
//! of the whole model (global) are removed.

use std::str::FromStr;

use fasterai_core::graph::coupling::{Coupling, Group};
use fasterai_core::graph::{Graph, Layer};
use fasterai_core::linalg::host_values;
use fasterai_core::model::Model;
use serde::Serialize;

use crate::{PruneError, PruneReport, Result, remove_channels};

/// Per-member importance of a channel: the sum of `|w|^p` over its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GroupCriterion {
    /// `Σ|w|`.
    L1,
    /// `Σw²`.
    L2,
}

/// How member scores combine into the group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reduction {
    /// Mean over members.
    Mean,
    /// Sum over members.
    Sum,
    /// Largest member score.
    Max,
}

/// Whether each group loses `ratio` of its channels, or one threshold applies to all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PruneContext {
    /// Per group.
    Local,
    /// Across groups (scores normalised per group first when `normalize` is set).
    Global,
}

macro_rules! parse_enum {
    ($t:ty, $what:literal, $($name:literal => $v:expr),*) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name => Ok($v),)*
                    _ => Err(format!(concat!("unknown ", $what, " `{}`; expected one of {}"), s, [$($name),*].join(", "))),
                }
            }
        }
    };
}
parse_enum!(GroupCriterion, "criterion", "l1" => GroupCriterion::L1, "l2" => GroupCriterion::L2);
parse_enum!(Reduction, "reduction", "mean" => Reduction::Mean, "sum" => Reduction::Sum, "max" => Reduction::Max);
parse_enum!(PruneContext, "context", "local" => PruneContext::Local, "global" => PruneContext::Global);

/// How [`prune_groups`] chooses what to remove.
#[derive(Debug, Clone, Serialize)]
pub struct GroupPruneConfig {
    /// Fraction of channels to remove, in `[0, 1)`.
    pub ratio: f64,
    /// Member importance.
    pub criterion: GroupCriterion,
    /// Combination over a group's members.
    pub reduction: Reduction,
    /// Divide each group's scores by their mean (makes global ranking fair across layers).
    pub normalize: bool,
    /// Local or global.
    pub context: PruneContext,
    /// Keep a multiple of this many channels per group.
    pub round_to: usize,
    /// Nodes whose output channels stay (Torch-Pruning's `ignored_layers`): a group made by
    /// any of them is left whole.
    pub ignored: Vec<String>,
}

impl GroupPruneConfig {
    /// `ratio`, L2, mean, normalised, local, no rounding (Torch-Pruning's defaults).
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio,
            criterion: GroupCriterion::L2,
            reduction: Reduction::Mean,
            normalize: true,
            context: PruneContext::Local,
            round_to: 1,
            ignored: Vec::new(),
        }
    }
}

/// `Σ|w|^p` of each of `n` channels laid along `dim` of a tensor of `shape` (row-major).
fn channel_scores(
    values: &[f32],
    shape: &[usize],
    dim: usize,
    range: std::ops::Range<usize>,
    spread: usize,
    p: GroupCriterion,
) -> Vec<f32> {
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let len = shape[dim];
    let n = (range.end - range.start) / spread;
    let mut scores = vec![0.0f32; n];
    for o in 0..outer {
        for d in range.clone() {
            let c = (d - range.start) / spread;
            let start = (o * len + d) * inner;
            scores[c] += values[start..start + inner]
                .iter()
                .map(|w| match p {
                    GroupCriterion::L1 => w.abs(),
                    GroupCriterion::L2 => w * w,
                })
                .sum::<f32>();
        }
    }
    scores
}

/// Each member's scores for the group's channels.
fn member_scores(graph: &Graph, group: &Group, p: GroupCriterion) -> Vec<Vec<f32>> {
    let c = group.channels;
    let weight = |name: &str| -> Option<(Vec<f32>, Vec<usize>, bool)> {
        match graph.get(name)? {
            Layer::Conv2d(conv) => Some((
                host_values(conv.weight.val()),
                conv.weight.dims().to_vec(),
                false,
            )),
            // Burn's layout is [in, out].
            Layer::Linear(l) => Some((host_values(l.weight.val()), l.weight.dims().to_vec(), true)),
            _ => None,
        }
    };
    let mut all = Vec::new();
    for name in &group.producers {
        if let Some((w, shape, linear)) = weight(name) {
            let dim = if linear { 1 } else { 0 };
            all.push(channel_scores(&w, &shape, dim, 0..c, 1, p));
        }
    }
    for r in &group.consumers {
        if let Some((w, shape, linear)) = weight(&r.node) {
            let dim = if linear { 0 } else { 1 };
            let range = r.offset..r.offset + c * r.spread;
            all.push(channel_scores(&w, &shape, dim, range, r.spread, p));
        }
    }
    for name in &group.carriers {
        match graph.get(name) {
            Some(Layer::BatchNorm2d(bn)) => {
                let g = host_values(bn.gamma.val());
                all.push(channel_scores(&g, &[g.len()], 0, 0..c, 1, p));
            }
            Some(Layer::Conv2d(_)) => {
                if let Some((w, shape, _)) = weight(name) {
                    all.push(channel_scores(&w, &shape, 0, 0..c, 1, p));
                }
            }
            _ => {}
        }
    }
    all
}

/// The group's importance per channel.
pub fn group_importance(graph: &Graph, group: &Group, config: &GroupPruneConfig) -> Vec<f32> {
    let members = member_scores(graph, group, config.criterion);
    let n = members.len().max(1) as f32;
    let mut scores: Vec<f32> = (0..group.channels)
        .map(|c| {
            let it = members.iter().map(|m| m[c]);
            match config.reduction {
                Reduction::Mean => it.sum::<f32>() / n,
                Reduction::Sum => it.sum(),
                Reduction::Max => it.fold(0.0, f32::max),
            }
        })
        .collect();
    if config.normalize {
        let mean = scores.iter().sum::<f32>() / scores.len().max(1) as f32;
        if mean > 0.0 {
            scores.iter_mut().for_each(|s| *s /= mean);
        }
    }
    scores
}

/// How many of `n` channels to keep after removing `remove`, rounded up to a multiple of
/// `round_to` and never below one.
fn kept(n: usize, remove: usize, round_to: usize) -> usize {
    let keep = (n - remove.min(n)).max(1);
    keep.div_ceil(round_to).saturating_mul(round_to).min(n)
}

/// Removes `config.ratio` of the channels of every prunable group (local), or the globally
/// weakest `ratio` of all prunable channels (global), by group importance. The model input
/// and output keep their channels; no group is emptied.
pub fn prune_groups(model: &Model, config: &GroupPruneConfig) -> Result<(Model, PruneReport)> {
    if !(0.0..1.0).contains(&config.ratio) {
        return Err(PruneError::Config(format!(
            "ratio {} must be in [0, 1): 1 would leave every group empty",
            config.ratio
        )));
    }
    let (coupling, scores) = score_groups(model, config)?;
    let keep = keep_masks(&coupling, &scores, config);
    remove_channels(model, &coupling, &keep, Vec::new())
}

/// The coupling groups and, for each prunable one, its channels' importance (`None`: left
/// whole). Independent of the ratio.
fn score_groups(
    model: &Model,
    config: &GroupPruneConfig,
) -> Result<(Coupling, Vec<Option<Vec<f32>>>)> {
    if config.round_to == 0 {
        return Err(PruneError::Config("round_to must be at least 1".into()));
    }
    for name in &config.ignored {
        model.net.layer(name)?;
    }
    let coupling = Coupling::new(&model.net, &model.input_shape)?;
    let ignored = |g: &Group| g.producers.iter().any(|p| config.ignored.contains(p));
    let scores = coupling
        .groups
        .iter()
        .map(|g| {
            (g.prunable() && !g.consumers.is_empty() && !ignored(g))
                .then(|| group_importance(&model.net, g, config))
        })
        .collect();
    Ok((coupling, scores))
}

/// Which channels of each group stay at `config.ratio`, local or global.
fn keep_masks(
    coupling: &Coupling,
    scores: &[Option<Vec<f32>>],
    config: &GroupPruneConfig,
) -> Vec<Vec<bool>> {
    // Channels to remove per group.
    let removals: Vec<usize> = match config.context {
        PruneContext::Local => scores
            .iter()
            .map(|s| {
                s.as_ref()
                    .map_or(0, |s| (config.ratio * s.len() as f64).floor() as usize)
            })
            .collect(),
        PruneContext::Global => {
            let mut all: Vec<(f32, usize)> = scores
                .iter()
                .enumerate()
                .flat_map(|(g, s)| s.iter().flatten().map(move |&v| (v, g)))
                .collect();
            let total = (config.ratio * all.len() as f64).floor() as usize;
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut removals = vec![0; scores.len()];
            for &(_, g) in &all[..total] {
                removals[g] += 1;
            }
            removals
        }
    };
    scores
        .iter()
        .zip(&removals)
        .zip(&coupling.groups)
        .map(|((s, &remove), g)| match s {
            None => vec![true; g.channels],
            Some(s) => {
                let n_keep = kept(s.len(), remove, config.round_to);
                let mut order: Vec<usize> = (0..s.len()).collect();
                order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
                let mut keep = vec![false; s.len()];
                for &c in &order[..n_keep] {
                    keep[c] = true;
                }
                keep
            }
        })
        .collect()
}

/// Prunes by group importance (as [`prune_groups`], with `config`'s rule) to at least
/// `speedup`× fewer MACs: the smallest ratio that gets there, found by bisection (to 1e-3).
/// `config.ratio` is ignored. An unreachable speedup is an error that says the best one.
pub fn prune_to_speedup(
    model: &Model,
    config: &GroupPruneConfig,
    speedup: f64,
) -> Result<(Model, PruneReport)> {
    if !(speedup.is_finite() && speedup >= 1.0) {
        return Err(PruneError::Config(format!(
            "speedup {speedup} must be at least 1 (2 halves the MACs)"
        )));
    }
    // Groups and scores do not depend on the ratio: computed once for the whole search.
    let (coupling, scores) = score_groups(model, config)?;
    let at = |ratio: f64| {
        let config = GroupPruneConfig {
            ratio,
            ..config.clone()
        };
        remove_channels(
            model,
            &coupling,
            &keep_masks(&coupling, &scores, &config),
            Vec::new(),
        )
    };
    let gain = |r: &PruneReport| r.macs_before as f64 / r.macs_after.max(1) as f64;
    let (mut low, mut high) = (0.0, 0.99);
    let mut best = at(high)?;
    if gain(&best.1) < speedup {
        return Err(PruneError::Config(format!(
            "a {speedup}× speedup is out of reach: removing 99 % of the prunable channels gives \
             {:.2}×",
            gain(&best.1)
        )));
    }
    while high - low > 1e-3 {
        let mid = (low + high) / 2.0;
        let pruned = at(mid)?;
        if gain(&pruned.1) >= speedup {
            high = mid;
            best = pruned;
        } else {
            low = mid;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_scores_read_the_right_slices() {
        // A [2 out, 3 in] matrix: rows are outputs, columns inputs.
        let w = [1.0, -2.0, 0.0, 3.0, 0.0, -1.0];
        assert_eq!(
            channel_scores(&w, &[2, 3], 0, 0..2, 1, GroupCriterion::L1),
            vec![3.0, 4.0]
        );
        assert_eq!(
            channel_scores(&w, &[2, 3], 1, 0..3, 1, GroupCriterion::L2),
            vec![10.0, 4.0, 1.0]
        );
        // Inputs 1..3 spread two per channel: one channel, |-2| + |0| + |0| + |-1|.
        assert_eq!(
            channel_scores(&w, &[2, 3], 1, 1..3, 2, GroupCriterion::L1),
            vec![3.0]
        );
        assert_eq!(kept(10, 3, 4), 8);
        assert_eq!(kept(10, 10, 1), 1);
        assert_eq!(kept(3, 0, 4), 3);
    }
}
