//! Weight-magnitude scores of a group's units: one score vector per member (a layer's rows,
//! columns or per-channel parameters), reduced over the group's members.

use fasterai_core::graph::coupling::{Group, GroupKind};
use fasterai_core::graph::{Graph, Layer};
use fasterai_core::linalg::host_values;

use crate::importance::{GroupCriterion, GroupPruneConfig, Reduction};

/// `Σ|w|^p` of each of the channels laid along `dim` of a tensor of `shape` (row-major), over
/// `range` of that dim, `spread` consecutive entries per channel.
pub(crate) fn channel_scores(
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
                    GroupCriterion::L2 | GroupCriterion::Output => w * w,
                })
                .sum::<f32>();
        }
    }
    scores
}

/// A layer's weight as `(values, shape)` with outputs along `out_dim` and inputs along
/// `in_dim`: what producers and consumers of channels are scored on.
struct Weight {
    values: Vec<f32>,
    shape: Vec<usize>,
    out_dim: usize,
    in_dim: usize,
}

/// The weight whose rows a channel group's producer makes (`output`) or whose columns a
/// consumer reads.
fn weight(layer: &Layer, output: bool) -> Option<Weight> {
    let w = |values, shape: &[usize], out_dim, in_dim| Weight {
        values,
        shape: shape.to_vec(),
        out_dim,
        in_dim,
    };
    match layer {
        Layer::Conv2d(conv) => Some(w(host_values(conv.weight.val()), &conv.weight.dims(), 0, 1)),
        // Burn's layout is [in, out].
        Layer::Linear(l) => Some(w(host_values(l.weight.val()), &l.weight.dims(), 1, 0)),
        // An attention writes through out_proj and reads through the packed in_proj.
        Layer::MultiheadAttention(a) if output => {
            let o = &a.out_proj.weight;
            Some(w(host_values(o.val()), &o.dims(), 1, 0))
        }
        Layer::MultiheadAttention(a) => {
            let i = &a.in_proj_weight;
            Some(w(host_values(i.val()), &i.dims(), 0, 1))
        }
        _ => None,
    }
}

/// Each member's scores for the group's units.
fn member_scores(graph: &Graph, group: &Group, p: GroupCriterion) -> Vec<Vec<f32>> {
    if group.kind.is_inner() {
        return group
            .producers
            .first()
            .and_then(|name| graph.get(name))
            .map_or_else(Vec::new, |layer| inner_scores(layer, group.kind, p));
    }
    let c = group.channels;
    let mut all = Vec::new();
    for name in &group.producers {
        if let Some(w) = graph.get(name).and_then(|l| weight(l, true)) {
            all.push(channel_scores(&w.values, &w.shape, w.out_dim, 0..c, 1, p));
        }
    }
    for r in &group.consumers {
        if let Some(w) = graph.get(&r.node).and_then(|l| weight(l, false)) {
            let range = r.offset..r.offset + c * r.spread;
            all.push(channel_scores(
                &w.values, &w.shape, w.in_dim, range, r.spread, p,
            ));
        }
    }
    for name in &group.carriers {
        let scale = match graph.get(name) {
            Some(Layer::BatchNorm2d(bn)) => Some(host_values(bn.gamma.val())),
            Some(Layer::LayerNorm(ln)) => ln.gamma.as_ref().map(|g| host_values(g.val())),
            Some(Layer::Conv2d(conv)) => {
                let w = host_values(conv.weight.val());
                all.push(channel_scores(&w, &conv.weight.dims(), 0, 0..c, 1, p));
                None
            }
            _ => None,
        };
        if let Some(g) = scale {
            all.push(channel_scores(&g, &[g.len()], 0, 0..c, 1, p));
        }
    }
    all
}

/// An attention's member scores for its heads or head dimensions: one vector per block of
/// the packed projection it touches (q, k, v rows) and one for the `out_proj` columns.
fn inner_scores(layer: &Layer, kind: GroupKind, p: GroupCriterion) -> Vec<Vec<f32>> {
    let Layer::MultiheadAttention(a) = layer else {
        return Vec::new();
    };
    let [rows, e] = a.in_proj_weight.dims();
    let [v, out] = a.out_proj.weight.dims();
    let qk = (rows - v) / 2;
    let h = a.num_heads.max(1);
    // Per feature: the score of each packed row, and of each out_proj input row (Burn [in, out]).
    let row = channel_scores(
        &host_values(a.in_proj_weight.val()),
        &[rows, e],
        0,
        0..rows,
        1,
        p,
    );
    let col = channel_scores(
        &host_values(a.out_proj.weight.val()),
        &[v, out],
        0,
        0..v,
        1,
        p,
    );
    // Feature f of a block of `width` (all heads) is head f / (width / h) at index f % (width / h).
    let by = |scores: &[f32], head: bool| -> Vec<f32> {
        let per = scores.len() / h;
        let n = if head { h } else { per };
        let mut out = vec![0.0; n];
        for (f, s) in scores.iter().enumerate() {
            out[if head { f / per } else { f % per }] += s;
        }
        out
    };
    let (q, k, value) = (&row[..qk], &row[qk..2 * qk], &row[2 * qk..]);
    match kind {
        GroupKind::Head => vec![by(q, true), by(k, true), by(value, true), by(&col, true)],
        GroupKind::QueryKeyDim => vec![by(q, false), by(k, false)],
        GroupKind::ValueDim => vec![by(value, false), by(&col, false)],
        _ => Vec::new(),
    }
}

/// The group's importance per unit.
pub fn group_importance(graph: &Graph, group: &Group, config: &GroupPruneConfig) -> Vec<f32> {
    let measured = (config.criterion == GroupCriterion::Output && group.kind == GroupKind::Head)
        .then(|| {
            group
                .producers
                .first()
                .and_then(|p| config.head_outputs.get(p))
        })
        .flatten()
        .filter(|norms| norms.len() == group.channels);
    let members = match measured {
        Some(norms) => vec![norms.clone()],
        None => member_scores(graph, group, config.criterion),
    };
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
    }
}
