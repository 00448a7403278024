//! # fasterai-prune
//!
//! Physically removes zeroed structure from sequential (VGG-like) models, losslessly: a conv
//! filter whose channel is exactly zero after its batch norm goes, with that BatchNorm entry
//! and the next conv's input channel; through pooling and `Flatten` into the first `Linear`
//! (a channel owns `H·W` input columns there); a `Linear` output that is exactly zero goes with
//! the next `Linear`'s column. The model's output layer keeps its size.
//!
//! Zeros come from [`fasterai-sparsify`](https://docs.rs/fasterai-sparsify) (filter
//! granularity zeroes the filter, its bias and the following batch norm's γ and β), or from
//! anywhere else: a channel is removed only when its output is exactly zero for every input.
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

use std::fmt;

use burn::module::{Param, RunningState};
use burn::tensor::{Int, Tensor, TensorData};
use fasterai_core::graph::Layer;
use fasterai_core::linalg::host_values;
use fasterai_core::model::Model;
use fasterai_core::summary::{count_parameters, thousands};
use serde::Serialize;

/// Everything that can go wrong while pruning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PruneError {
    /// A layer the pruner cannot carry removed channels through.
    #[error("cannot prune through `{path}` ({kind}): {reason}")]
    Unsupported {
        /// Its path.
        path: String,
        /// Its type.
        kind: &'static str,
        /// Why.
        reason: String,
    },
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

/// What [`prune_zeroed`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Every layer whose shape changed.
    pub layers: Vec<PrunedLayer>,
    /// Model parameters before.
    pub params_before: usize,
    /// Model parameters after.
    pub params_after: usize,
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<12} {:>20} {:>20} {:>13} {:>13}",
            "layer", "type", "shape before", "shape after", "params before", "params after"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<16} {:<12} {:>20} {:>20} {:>13} {:>13}",
                l.path,
                l.kind,
                format!("{:?}", l.before),
                format!("{:?}", l.after),
                thousands(l.params_before as u64),
                thousands(l.params_after as u64)
            )?;
        }
        write!(
            f,
            "total: {} → {} parameters ({:.1} % removed)",
            thousands(self.params_before as u64),
            thousands(self.params_after as u64),
            100.0 * (1.0 - self.params_after as f64 / self.params_before.max(1) as f64)
        )
    }
}

fn select<const D: usize>(t: Tensor<D>, dim: usize, keep: &[bool]) -> Tensor<D> {
    let idx: Vec<i64> = keep
        .iter()
        .enumerate()
        .filter(|(_, k)| **k)
        .map(|(i, _)| i as i64)
        .collect();
    let device = t.device();
    let n = idx.len();
    t.select(
        dim,
        Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device),
    )
}

/// Channels whose output is exactly zero: weights (rows of `w`, `per` values each) and bias
/// zero, and — when a batch norm follows — zero after it too.
fn dead_outputs(w: &[f32], per: usize, bias: Option<Vec<f32>>, bn: Option<&Layer>) -> Vec<bool> {
    let n = w.len() / per;
    let bias = bias.unwrap_or_else(|| vec![0.0; n]);
    // What the batch norm makes of a zero input: β − μ·γ/√(σ² + ε).
    let after_bn: Vec<f32> = match bn {
        Some(Layer::BatchNorm2d(bn)) => {
            let (g, b) = (host_values(bn.gamma.val()), host_values(bn.beta.val()));
            let (m, v) = (
                host_values(bn.running_mean.value()),
                host_values(bn.running_var.value()),
            );
            (0..n)
                .map(|c| b[c] - m[c] * g[c] / (v[c] + bn.epsilon as f32).sqrt())
                .collect()
        }
        _ => vec![0.0; n],
    };
    (0..n)
        .map(|c| {
            w[c * per..(c + 1) * per].iter().all(|&x| x == 0.0)
                && bias[c] == 0.0
                && after_bn[c] == 0.0
        })
        .collect()
}

/// Removes every channel and feature that is exactly zero (see the crate docs). Outputs are
/// unchanged up to float rounding; the returned report lists each layer that shrank.
pub fn prune_zeroed(model: &Model) -> Result<(Model, PruneReport)> {
    let mut net = model.net.clone();
    let leaves: Vec<(String, Layer)> = model
        .net
        .leaves()
        .into_iter()
        .map(|(p, l)| (p, l.clone()))
        .collect();
    let last_weighted = leaves
        .iter()
        .rposition(|(_, l)| matches!(l, Layer::Conv2d(_) | Layer::Linear(_)));
    let mut rows = Vec::new();
    // Which channels (or features) of the current activation survive; `None`: all.
    let mut alive: Option<Vec<bool>> = None;
    let mut shape = model.input_shape.clone();
    for (i, (path, layer)) in leaves.iter().enumerate() {
        let next = leaves.get(i + 1).map(|(_, l)| l);
        let params_before = count_parameters(layer);
        let out_shape = layer.spec().output_shape(path, &shape)?.0;
        let mut changed = layer.clone();
        let mut before = Vec::new();
        match &mut changed {
            Layer::Conv2d(conv) => {
                before = conv.weight.dims().to_vec();
                if conv.groups != 1 {
                    if alive.as_ref().is_some_and(|a| a.iter().any(|k| !k)) {
                        return Err(PruneError::Unsupported {
                            path: path.clone(),
                            kind: "Conv2d",
                            reason: format!(
                                "grouped convolution (groups = {}) after removed channels; leave the layer \
                                 before it out of the sparsified layers",
                                conv.groups
                            ),
                        });
                    }
                    alive = None;
                } else {
                    if let Some(keep) = &alive {
                        conv.weight = Param::from_tensor(select(conv.weight.val(), 1, keep));
                    }
                    let dead = if Some(i) == last_weighted {
                        vec![false; before[0]]
                    } else {
                        let w = host_values(conv.weight.val());
                        let per = w.len() / before[0];
                        dead_outputs(
                            &w,
                            per,
                            conv.bias.as_ref().map(|b| host_values(b.val())),
                            next,
                        )
                    };
                    let keep: Vec<bool> = dead.iter().map(|d| !d).collect();
                    conv.weight = Param::from_tensor(select(conv.weight.val(), 0, &keep));
                    if let Some(b) = &conv.bias {
                        conv.bias = Some(Param::from_tensor(select(b.val(), 0, &keep)));
                    }
                    alive = Some(keep);
                }
            }
            Layer::BatchNorm2d(bn) => {
                before = bn.gamma.dims().to_vec();
                if let Some(keep) = &alive {
                    bn.gamma = Param::from_tensor(select(bn.gamma.val(), 0, keep));
                    bn.beta = Param::from_tensor(select(bn.beta.val(), 0, keep));
                    bn.running_mean = RunningState::new(select(bn.running_mean.value(), 0, keep));
                    bn.running_var = RunningState::new(select(bn.running_var.value(), 0, keep));
                }
            }
            Layer::Flatten => {
                // A channel owns H·W consecutive features.
                if let (Some(keep), [_, h, w]) = (&alive, shape.as_slice()) {
                    alive = Some(
                        keep.iter()
                            .flat_map(|&k| std::iter::repeat_n(k, h * w))
                            .collect(),
                    );
                }
            }
            Layer::Linear(linear) => {
                let [inp, out] = linear.weight.dims();
                before = vec![out, inp];
                if let Some(keep) = &alive {
                    if keep.len() != inp {
                        return Err(PruneError::Unsupported {
                            path: path.clone(),
                            kind: "Linear",
                            reason: format!(
                                "expects {inp} inputs but {} features arrive",
                                keep.len()
                            ),
                        });
                    }
                    linear.weight = Param::from_tensor(select(linear.weight.val(), 0, keep));
                }
                let keep: Vec<bool> = if Some(i) == last_weighted {
                    vec![true; out]
                } else {
                    let w = host_values(linear.weight.val().transpose());
                    let per = w.len() / out;
                    dead_outputs(
                        &w,
                        per,
                        linear.bias.as_ref().map(|b| host_values(b.val())),
                        None,
                    )
                    .iter()
                    .map(|d| !d)
                    .collect()
                };
                linear.weight = Param::from_tensor(select(linear.weight.val(), 1, &keep));
                if let Some(b) = &linear.bias {
                    linear.bias = Some(Param::from_tensor(select(b.val(), 0, &keep)));
                }
                alive = Some(keep);
            }
            // Channel-wise (or element-wise) layers carry the surviving channels through.
            Layer::Relu | Layer::MaxPool2d(_) | Layer::AdaptiveAvgPool2d(_) | Layer::Dropout(_) => {
            }
            other => {
                if alive.as_ref().is_some_and(|a| a.iter().any(|k| !k)) {
                    return Err(PruneError::Unsupported {
                        path: path.clone(),
                        kind: other.kind(),
                        reason:
                            "the pruner does not know how channels flow through this layer; leave \
                                 the layer before it out of the sparsified layers"
                                .into(),
                    });
                }
            }
        }
        let params_after = count_parameters(&changed);
        if params_after != params_before {
            let after = match &changed {
                Layer::Conv2d(c) => c.weight.dims().to_vec(),
                Layer::BatchNorm2d(bn) => bn.gamma.dims().to_vec(),
                Layer::Linear(l) => {
                    let [i, o] = l.weight.dims();
                    vec![o, i]
                }
                _ => Vec::new(),
            };
            rows.push(PrunedLayer {
                path: path.clone(),
                kind: changed.kind(),
                before,
                after,
                params_before,
                params_after,
            });
            net.replace(path, changed)?;
        }
        // Shapes follow the original model: `alive` indexes its channels and features.
        shape = out_shape;
    }
    let pruned = Model::new(model.name.clone(), model.input_shape.clone(), net)?;
    let report = PruneReport {
        layers: rows,
        params_before: count_parameters(&model.net),
        params_after: count_parameters(&pruned.net),
    };
    Ok((pruned, report))
}
