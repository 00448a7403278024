//! Structured pruning by group importance: each coupled layer scores the group's units
//! (channels, heads, head dimensions), the scores are reduced over the group, and the weakest
//! units of each group (local) or of all groups of that kind (global) are removed.

use std::collections::BTreeMap;
use std::str::FromStr;

use fasterai_core::graph::coupling::{Coupling, Group, GroupKind};
use fasterai_core::graph::{Activation, Layer};
use fasterai_core::model::Model;
use serde::Serialize;

use crate::scores::group_importance;
use crate::{PruneError, PruneReport, Result, remove_channels};

/// Per-member importance of a unit: the sum of `|w|^p` over its weights, or for heads what
/// they write on calibration data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GroupCriterion {
    /// `Σ|w|`.
    L1,
    /// `Σw²`.
    L2,
    /// Heads: the root mean square, over the tokens of a calibration batch, of the norm of
    /// what each head adds to its attention's output ([`calibrate_heads`]). Other units: L2.
    Output,
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

/// Whether each group loses `ratio` of its units, or one threshold applies to all groups of a
/// kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PruneContext {
    /// Per group.
    Local,
    /// Across the groups of each kind: channels with channels, heads with heads (scores
    /// normalised per group first when `normalize` is set).
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
parse_enum!(GroupCriterion, "criterion", "l1" => GroupCriterion::L1, "l2" => GroupCriterion::L2, "output" => GroupCriterion::Output);
parse_enum!(Reduction, "reduction", "mean" => Reduction::Mean, "sum" => Reduction::Sum, "max" => Reduction::Max);
parse_enum!(PruneContext, "context", "local" => PruneContext::Local, "global" => PruneContext::Global);

/// How [`prune_groups`] chooses what to remove.
#[derive(Debug, Clone, Serialize)]
pub struct GroupPruneConfig {
    /// Fraction of units to remove, in `[0, 1)`, from the kinds pruned by default: channels,
    /// and in a transformer its heads and MLP units.
    pub ratio: f64,
    /// Fractions for particular kinds, in place of `ratio`. The embedding width and head
    /// dimensions are pruned only when named here.
    pub kinds: BTreeMap<GroupKind, f64>,
    /// Member importance.
    pub criterion: GroupCriterion,
    /// Combination over a group's members.
    pub reduction: Reduction,
    /// Divide each group's scores by their mean (makes global ranking fair across layers).
    pub normalize: bool,
    /// Local or global.
    pub context: PruneContext,
    /// Keep a multiple of this many units per group (heads for heads, channels otherwise).
    pub round_to: usize,
    /// Nodes whose output channels stay (Torch-Pruning's `ignored_layers`): a group made by
    /// any of them is left whole.
    pub ignored: Vec<String>,
    /// Per attention, its heads' output norms on a calibration batch ([`calibrate_heads`]):
    /// what [`GroupCriterion::Output`] ranks heads by.
    #[serde(skip)]
    pub head_outputs: BTreeMap<String, Vec<f32>>,
}

impl GroupPruneConfig {
    /// `ratio`, L2, mean, normalised, local, no rounding (Torch-Pruning's defaults).
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio,
            kinds: BTreeMap::new(),
            criterion: GroupCriterion::L2,
            reduction: Reduction::Mean,
            normalize: true,
            context: PruneContext::Local,
            round_to: 1,
            ignored: Vec::new(),
            head_outputs: BTreeMap::new(),
        }
    }

    /// With `ratio` for the groups of `kind`.
    pub fn with_kind(mut self, kind: GroupKind, ratio: f64) -> Self {
        self.kinds.insert(kind, ratio);
        self
    }

    /// The fraction removed from groups of `kind`.
    pub fn ratio_of(&self, kind: GroupKind) -> f64 {
        let default = if self.follows_ratio(kind) {
            self.ratio
        } else {
            0.0
        };
        self.kinds.get(&kind).copied().unwrap_or(default)
    }

    /// Whether groups of `kind` lose `ratio` of their units: channels, heads and MLP units
    /// that `kinds` does not name.
    fn follows_ratio(&self, kind: GroupKind) -> bool {
        matches!(
            kind,
            GroupKind::Channel | GroupKind::MlpUnit | GroupKind::Head
        ) && !self.kinds.contains_key(&kind)
    }

    fn check(&self) -> Result<()> {
        let ratios = std::iter::once(("ratio".to_string(), self.ratio)).chain(
            self.kinds
                .iter()
                .map(|(k, r)| (format!("the {k} ratio"), *r)),
        );
        for (what, r) in ratios {
            if !(0.0..1.0).contains(&r) {
                return Err(PruneError::Config(format!(
                    "{what} {r} must be in [0, 1): 1 would leave every group empty"
                )));
            }
        }
        if self.round_to == 0 {
            return Err(PruneError::Config("round_to must be at least 1".into()));
        }
        if self.criterion == GroupCriterion::Output && self.head_outputs.is_empty() {
            return Err(PruneError::Config(
                "the output criterion ranks heads by what they write on calibration data: \
                 calibrate first (the CLI's --data)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Each attention's [head output norms](fasterai_core::graph::ops::attention::MultiheadAttention::head_output_norms)
/// when `model` runs on `images`, for [`GroupCriterion::Output`].
pub fn calibrate_heads(
    model: &Model,
    images: burn::tensor::Tensor<4>,
) -> Result<BTreeMap<String, Vec<f32>>> {
    let [_, c, h, w] = images.dims();
    model.net.output_shape(&[c, h, w])?;
    let mut norms = BTreeMap::new();
    model
        .net
        .forward_inspect(images, &mut |path, layer, input| {
            if let (Layer::MultiheadAttention(a), Activation::Tokens(x)) = (layer, input) {
                norms.insert(path.to_string(), a.head_output_norms(x.clone()));
            }
        });
    Ok(norms)
}

/// How many of `n` channels to keep after removing `remove`, rounded up to a multiple of
/// `round_to` and never below one.
fn kept(n: usize, remove: usize, round_to: usize) -> usize {
    let keep = (n - remove.min(n)).max(1);
    keep.div_ceil(round_to).saturating_mul(round_to).min(n)
}

/// Removes [`ratio_of`](GroupPruneConfig::ratio_of) its kind of the units of every prunable
/// group (local), or the weakest of all units of each kind (global), by group importance.
/// The model input and output keep their channels; no group is emptied, and a global ranking
/// that would remove every head of an attention is an error.
pub fn prune_groups(model: &Model, config: &GroupPruneConfig) -> Result<(Model, PruneReport)> {
    config.check()?;
    let (coupling, scores) = score_groups(model, config, false)?;
    let keep = keep_masks(&coupling, &scores, config)?;
    remove_channels(model, &coupling, &keep, Vec::new())
}

/// The coupling groups and, for each prunable one that loses units, its units' importance
/// (`None`: left whole). Independent of the ratio; with `ratio_varies` (a search over it), the
/// kinds that follow `ratio` are scored even where it is 0.
fn score_groups(
    model: &Model,
    config: &GroupPruneConfig,
    ratio_varies: bool,
) -> Result<(Coupling, Vec<Option<Vec<f32>>>)> {
    for name in &config.ignored {
        model.net.layer(name)?;
    }
    let coupling = Coupling::new(&model.net, &model.input_shape)?;
    for (&kind, &ratio) in &config.kinds {
        if ratio > 0.0
            && !coupling
                .groups
                .iter()
                .any(|g| g.kind == kind && g.prunable())
        {
            return Err(PruneError::Config(format!(
                "a {kind} ratio was given, but `{}` has no prunable {kind} group (see \
                 `fasterai inspect MODEL --groups`)",
                model.name
            )));
        }
    }
    let ignored = |g: &Group| g.producers.iter().any(|p| config.ignored.contains(p));
    let scores = coupling
        .groups
        .iter()
        .map(|g| {
            let read = !g.consumers.is_empty() || g.kind.is_inner();
            let loses =
                config.ratio_of(g.kind) > 0.0 || (ratio_varies && config.follows_ratio(g.kind));
            (g.prunable() && read && !ignored(g) && loses)
                .then(|| group_importance(&model.net, g, config))
        })
        .collect();
    Ok((coupling, scores))
}

/// Which units of each group stay, local or global.
fn keep_masks(
    coupling: &Coupling,
    scores: &[Option<Vec<f32>>],
    config: &GroupPruneConfig,
) -> Result<Vec<Vec<bool>>> {
    let groups = &coupling.groups;
    // Units to remove per group.
    let mut removals = vec![0usize; scores.len()];
    match config.context {
        PruneContext::Local => {
            for ((r, s), g) in removals.iter_mut().zip(scores).zip(groups) {
                if let Some(s) = s {
                    *r = (config.ratio_of(g.kind) * s.len() as f64).floor() as usize;
                }
            }
        }
        PruneContext::Global => {
            let mut by_kind: BTreeMap<GroupKind, Vec<(f32, usize)>> = BTreeMap::new();
            for (g, s) in scores.iter().enumerate() {
                if let Some(s) = s {
                    let all = by_kind.entry(groups[g].kind).or_default();
                    all.extend(s.iter().map(|&v| (v, g)));
                }
            }
            for (kind, mut all) in by_kind {
                let total = (config.ratio_of(kind) * all.len() as f64).floor() as usize;
                all.sort_by(|a, b| a.0.total_cmp(&b.0));
                for &(_, g) in &all[..total] {
                    removals[g] += 1;
                }
            }
        }
    }
    scores
        .iter()
        .zip(&removals)
        .zip(groups)
        .map(|((s, &remove), g)| match s {
            None => Ok(vec![true; g.channels]),
            Some(s) => {
                if g.kind == GroupKind::Head && remove >= s.len() {
                    return Err(PruneError::Config(format!(
                        "this would remove all {} heads of `{}`; lower the head ratio or prune \
                         heads per attention (local context)",
                        s.len(),
                        g.producers.join(", ")
                    )));
                }
                let n_keep = kept(s.len(), remove, config.round_to);
                let mut order: Vec<usize> = (0..s.len()).collect();
                order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
                let mut keep = vec![false; s.len()];
                for &c in &order[..n_keep] {
                    keep[c] = true;
                }
                Ok(keep)
            }
        })
        .collect()
}

/// Prunes by group importance (as [`prune_groups`], with `config`'s rule) to at least
/// `speedup`× fewer MACs: the smallest `ratio` that gets there, found by bisection (to 1e-3).
/// `config.ratio` is ignored; the ratios in `config.kinds` stay as they are. An unreachable
/// speedup is an error that says the best one.
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
    config.check()?;
    // Groups and scores do not depend on the ratio: computed once for the whole search.
    let (coupling, scores) = score_groups(model, config, true)?;
    let at = |ratio: f64| -> Result<(Model, PruneReport)> {
        let config = GroupPruneConfig {
            ratio,
            ..config.clone()
        };
        let keep = keep_masks(&coupling, &scores, &config)?;
        remove_channels(model, &coupling, &keep, Vec::new())
    };
    let gain = |r: &PruneReport| r.macs_before as f64 / r.macs_after.max(1) as f64;
    // A ratio that empties an attention's heads counts as going too far.
    let (mut low, mut high) = (0.0, 0.99);
    let (mut best, mut most) = (None, 1.0f64);
    if let Ok(pruned) = at(high) {
        most = gain(&pruned.1);
        if most < speedup {
            return Err(out_of_reach(speedup, most));
        }
        best = Some(pruned);
    }
    while high - low > 1e-3 {
        let mid = (low + high) / 2.0;
        match at(mid) {
            Ok(pruned) if gain(&pruned.1) >= speedup => {
                high = mid;
                best = Some(pruned);
            }
            Ok(pruned) => {
                most = most.max(gain(&pruned.1));
                low = mid;
            }
            Err(PruneError::Config(_)) => high = mid,
            Err(e) => return Err(e),
        }
    }
    best.ok_or_else(|| out_of_reach(speedup, most))
}

fn out_of_reach(speedup: f64, most: f64) -> PruneError {
    PruneError::Config(format!(
        "a {speedup}× speedup is out of reach: the most this pruning reaches is {most:.2}×"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_rounds_up_and_never_empties() {
        assert_eq!(kept(10, 3, 4), 8);
        assert_eq!(kept(10, 10, 1), 1);
        assert_eq!(kept(3, 0, 4), 3);
    }
}
