//! Which layers are masked together, and what dies with a masked channel: the units of the
//! [`Sparsifier`](crate::Sparsifier), and the weights and per-channel parameters it writes.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use fasterai_core::graph::coupling::{Coupling, GroupKind};
use fasterai_core::graph::{Graph, Layer, leaf};
use fasterai_core::linalg::host_values;

use crate::granularity::Granularity;
use crate::sparsifier::SparsifyConfig;
use crate::{Result, SparsifyError};

/// Layers whose groups are scored and masked together: the producers of one channel group
/// (with the filter granularity: every conv whose outputs a residual `Add` or a gate joins),
/// and the per-channel layers that group passes through, zeroed with a dead channel.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    /// Conv2d / Linear layers whose output channels are masked alike.
    pub(crate) producers: Vec<String>,
    /// Batch norms and depthwise convs whose channels die with the producers'.
    pub(crate) carriers: Vec<String>,
}

/// The weight a layer is masked on, with its shape: a Conv2d's or Linear's in PyTorch layout,
/// or an attention's packed projection seen as `[3, heads, head_dim, embed]` (q, k and v blocks
/// of equal width: `None` once head dimensions were removed unevenly).
pub(crate) fn masked_weight(layer: &Layer) -> Option<(Vec<usize>, Vec<f32>)> {
    match layer {
        Layer::MultiheadAttention(a) => {
            let [rows, e] = a.in_proj_weight.dims();
            let [v, _] = a.out_proj.weight.dims();
            let h = a.num_heads.max(1);
            (rows == 3 * v && v % h == 0)
                .then(|| (vec![3, h, v / h, e], host_values(a.in_proj_weight.val())))
        }
        other => other.torch_weight(),
    }
}

/// Replaces the weight [`masked_weight`] reads, keeping its parameter id.
pub(crate) fn set_masked_weight(layer: &mut Layer, values: Vec<f32>) {
    match layer {
        Layer::MultiheadAttention(a) => {
            let dims = a.in_proj_weight.dims();
            a.in_proj_weight = a.in_proj_weight.clone().map(|old| {
                leaf(Tensor::<2>::from_data(
                    TensorData::new(values, dims),
                    &old.device(),
                ))
            });
        }
        other => {
            other.set_torch_weight(values);
        }
    }
}

/// Output channels a masked weight of `shape` has: its rows (an attention's packed q, k and v
/// rows, `3 · heads · head_dim`), the unit in which a channel dies.
pub(crate) fn output_rows(layer: &Layer, shape: &[usize]) -> usize {
    match layer {
        Layer::MultiheadAttention(_) => shape[..3].iter().product(),
        _ => shape[0],
    }
}

/// Multiplies a layer's per-output-channel parameters by `keep`: biases, batch-norm γ and β,
/// and, for a `carrier` (a depthwise conv), its filters too.
pub(crate) fn zero_channels(layer: &mut Layer, keep: &Tensor<1>, carrier: bool) {
    match layer {
        Layer::Conv2d(c) => {
            if let Some(b) = c.bias.as_mut() {
                scale_param(b, keep);
            }
            if carrier {
                let per_filter = keep.clone().reshape([-1, 1, 1, 1]);
                c.weight = c.weight.clone().map(|t| leaf((t * per_filter).detach()));
            }
        }
        Layer::Linear(l) => {
            if let Some(b) = l.bias.as_mut() {
                scale_param(b, keep);
            }
        }
        Layer::BatchNorm2d(bn) => {
            scale_param(&mut bn.gamma, keep);
            scale_param(&mut bn.beta, keep);
        }
        Layer::LayerNorm(ln) => {
            for p in [ln.gamma.as_mut(), ln.beta.as_mut()].into_iter().flatten() {
                scale_param(p, keep);
            }
        }
        Layer::ClassToken(t) => scale_tokens(&mut t.value, keep),
        Layer::PositionEmbedding(t) => scale_tokens(&mut t.value, keep),
        // Writing an embedding channel (carrier): its out_proj column and bias.
        Layer::MultiheadAttention(a) if carrier => {
            let per_output = keep.clone().reshape([1, -1]);
            let w = &mut a.out_proj.weight;
            *w = w.clone().map(|t| leaf((t * per_output).detach()));
            if let Some(b) = a.out_proj.bias.as_mut() {
                scale_param(b, keep);
            }
        }
        // Dead packed rows: their biases, and the out_proj inputs of dead value rows.
        Layer::MultiheadAttention(a) => {
            if let Some(b) = a.in_proj_bias.as_mut() {
                scale_param(b, keep);
            }
            let v = a.out_proj.weight.dims()[0];
            let per_input = keep.clone().narrow(0, 2 * v, v).reshape([-1, 1]);
            let w = &mut a.out_proj.weight;
            *w = w.clone().map(|t| leaf((t * per_input).detach()));
        }
        _ => {}
    }
}

/// A token parameter `[1, T, D]` times a per-feature `keep`.
fn scale_tokens(param: &mut Param<Tensor<3>>, keep: &Tensor<1>) {
    let keep = keep.clone().reshape([1, 1, -1]);
    *param = param.clone().map(|t| leaf((t * keep).detach()));
}

/// `param · keep`, as a fresh leaf with the same id.
fn scale_param(param: &mut Param<Tensor<1>>, keep: &Tensor<1>) {
    let keep = keep.clone();
    *param = param.clone().map(|t| leaf((t * keep).detach()));
}

/// Layers and units for the per-layer granularities: the chosen layers (by default every
/// Conv2d, or on a transformer every Linear), each its own unit with the batch norms it feeds,
/// except that with `filter` the producers of one coupled channel group form one unit.
pub(crate) fn layer_units(
    net: &Graph,
    input_shape: &[usize],
    config: &SparsifyConfig,
) -> Result<(Vec<String>, Vec<Unit>)> {
    let transformer = net
        .nodes
        .iter()
        .any(|n| !n.layer.spec().op().inner_units().is_empty());
    let mut paths: Vec<String> = if config.layers.is_empty() {
        net.leaves()
            .into_iter()
            .filter(|(_, l)| match l {
                Layer::Linear(_) => transformer,
                Layer::Conv2d(_) => !transformer,
                _ => false,
            })
            .map(|(p, _)| p)
            .collect()
    } else {
        config.layers.clone()
    };
    let mut units = Vec::new();
    if config.granularity == Granularity::Filter {
        let coupling = Coupling::new(net, input_shape)?;
        // Transformer groups have granularities of their own (head, mlp_unit, embed).
        for g in coupling
            .groups
            .iter()
            .filter(|g| g.kind == GroupKind::Channel)
        {
            if g.prunable()
                && !g.consumers.is_empty()
                && g.producers
                    .iter()
                    .chain(&g.carriers)
                    .any(|p| paths.contains(p))
            {
                units.push(Unit {
                    producers: g.producers.clone(),
                    carriers: g.carriers.clone(),
                });
            }
        }
        // A depthwise conv follows its group's mask instead of having its own.
        paths.retain(|p| !units.iter().any(|u| u.carriers.contains(p)));
        for p in units.iter().flat_map(|u| &u.producers) {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
    }
    for path in &paths {
        if !units.iter().any(|u| u.producers.contains(path)) {
            let carriers = net
                .readers(path)
                .into_iter()
                .filter(|&i| matches!(net.nodes[i].layer, Layer::BatchNorm2d(_)))
                .map(|i| net.nodes[i].name.clone())
                .collect();
            units.push(Unit {
                producers: vec![path.clone()],
                carriers,
            });
        }
    }
    Ok((paths, units))
}

/// Layers and units for `head`, `mlp_unit` and `embed`: one unit per coupling group of that
/// kind (those touching `config.layers`, when given). An embedding channel is masked on the
/// layers that write the stream (patch conv, MLP outputs), and dies with its class token,
/// position embedding, LayerNorm entries and attention `out_proj` columns.
pub(crate) fn group_units(
    net: &Graph,
    input_shape: &[usize],
    config: &SparsifyConfig,
    kind: GroupKind,
) -> Result<(Vec<String>, Vec<Unit>)> {
    let coupling = Coupling::new(net, input_shape)?;
    let mut units = Vec::new();
    for g in coupling
        .groups
        .iter()
        .filter(|g| g.kind == kind && g.prunable())
    {
        let members = || g.producers.iter().chain(&g.carriers);
        if !config.layers.is_empty() && !members().any(|m| config.layers.contains(m)) {
            continue;
        }
        let attention = |n: &String| matches!(net.get(n), Some(Layer::MultiheadAttention(_)));
        let (writers, producers): (Vec<String>, Vec<String>) = match kind {
            GroupKind::Embed => g.producers.iter().cloned().partition(attention),
            _ => (Vec::new(), g.producers.clone()),
        };
        units.push(Unit {
            producers,
            carriers: g.carriers.iter().cloned().chain(writers).collect(),
        });
    }
    if units.is_empty() {
        return Err(SparsifyError::Config(format!(
            "granularity `{}` found no {kind} group to mask{}: it applies to transformers",
            config.granularity,
            if config.layers.is_empty() {
                String::new()
            } else {
                " among the given layers".into()
            }
        )));
    }
    let paths = units.iter().flat_map(|u| u.producers.clone()).collect();
    Ok((paths, units))
}
