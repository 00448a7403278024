//! [`Sparsifier`]: masks for the chosen layers of a model, computed by a criterion over a
//! granularity (per layer or globally), applied to the weights and kept across training.

use std::collections::BTreeMap;

use rayon::prelude::*;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor, TensorData};
use fasterai_core::graph::{Activation, Graph, Layer};
use fasterai_core::io::Arrays;
use fasterai_core::linalg::host_values;
use serde::Serialize;

use crate::criterion::{Criterion, ScoreInputs};
use crate::granularity::Granularity;
use crate::mask::{Groups, global_removals, groups_to_remove, keep_best, n_of_m};
use crate::units::{
    Unit, group_units, layer_units, masked_weight, output_rows, set_masked_weight, zero_channels,
};
use crate::{Result, SparsifyError};

/// One target for every layer, or one threshold across them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Context {
    /// Each layer reaches the target.
    Local,
    /// One threshold over the scores of all selected layers.
    Global,
}

/// What to sparsify, and how.
#[derive(Debug, Clone, Serialize)]
pub struct SparsifyConfig {
    /// Groups scored and removed together.
    pub granularity: Granularity,
    /// Local or global.
    pub context: Context,
    /// Importance of each weight.
    pub criterion: Criterion,
    /// Layers by path (`Conv2d`, `Linear`, or an attention for `head`); empty means every
    /// `Conv2d`, or on a transformer every `Linear` (and with the transformer granularities,
    /// every group of their kind).
    pub layers: Vec<String>,
    /// Per-layer targets overriding the global one (local context only).
    pub per_layer: BTreeMap<String, f64>,
    /// Keep a multiple of this many groups per layer (1: no rounding).
    pub round_to: usize,
    /// N:M semi-structured sparsity instead of a target (`Some((2, 4))`).
    pub n_of_m: Option<(usize, usize)>,
    /// Seed of the random criterion.
    pub seed: u64,
}

impl SparsifyConfig {
    /// `granularity`, local, L1 (`large_final`), every conv.
    pub fn new(granularity: Granularity) -> Self {
        Self {
            granularity,
            context: Context::Local,
            criterion: Criterion::LargeFinal,
            layers: Vec::new(),
            per_layer: BTreeMap::new(),
            round_to: 1,
            n_of_m: None,
            seed: 0,
        }
    }
}

/// Per-layer sparsity after a pruning step.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSparsity {
    /// Layer path.
    pub path: String,
    /// Weight shape (PyTorch layout).
    pub shape: Vec<usize>,
    /// Groups of the granularity in the layer.
    pub groups: usize,
    /// Groups entirely zero.
    pub zero_groups: usize,
    /// Fraction of weights that are zero.
    pub sparsity: f64,
}

/// Masks for a model's selected layers.
#[derive(Debug, Clone)]
pub struct Sparsifier {
    config: SparsifyConfig,
    paths: Vec<String>,
    /// Layers masked as one: every path is in exactly one unit.
    units: Vec<Unit>,
    /// Element masks in PyTorch layout, per path.
    masks: BTreeMap<String, Vec<f32>>,
    initial: BTreeMap<String, Vec<f32>>,
    previous: BTreeMap<String, Vec<f32>>,
    /// Per layer: RMS of each input channel on the calibration batch (Wanda).
    input_norms: BTreeMap<String, Vec<f32>>,
    /// Per layer: loss gradient of the weight on the calibration batch (Taylor).
    gradients: BTreeMap<String, Vec<f32>>,
}

/// The weight values of a Conv2d or Linear in PyTorch layout (empty for other layers).
pub fn torch_weights(layer: &Layer) -> Vec<f32> {
    layer.torch_weight().map(|(_, v)| v).unwrap_or_default()
}

impl Sparsifier {
    /// Checks the layers and granularity against `net` (which takes inputs of `input_shape`,
    /// without the batch) and records the initial weights.
    ///
    /// With [`Granularity::Filter`], masks act on channel groups (see
    /// [`Coupling`]): the convs whose outputs a residual `Add` or a gate joins lose the same
    /// filters, and the batch norms and depthwise convs on the way lose those channels too, so
    /// `fasterai_prune::prune_zeroed` removes them without changing the outputs. Coupled
    /// producers are added to the selected layers; depthwise convs leave them (they follow
    /// their group). A group that cannot be pruned (read by a grouped conv, or the model
    /// output) falls back to per-layer masks.
    ///
    /// With [`Granularity::Head`], [`Granularity::MlpUnit`] and [`Granularity::Embed`], masks
    /// act on a transformer's groups of that kind: a masked head's q, k and v rows, their
    /// biases and its `out_proj` columns are zero; a masked MLP unit's first-Linear row and
    /// bias; a masked embedding channel's every writer (patch conv, MLP outputs, attention
    /// `out_proj`), token and LayerNorm entry. `fasterai_prune::prune_zeroed` then removes them
    /// (heads and MLP units exactly; embedding channels change the LayerNorms' statistics).
    pub fn new(net: &Graph, input_shape: &[usize], config: SparsifyConfig) -> Result<Self> {
        for path in &config.layers {
            net.layer(path)?;
        }
        let (paths, units) = match config.granularity.group_kind() {
            Some(kind) => group_units(net, input_shape, &config, kind)?,
            None => layer_units(net, input_shape, &config)?,
        };
        let mut initial = BTreeMap::new();
        for path in &paths {
            let layer = net.layer(path)?;
            let (shape, values) = masked_weight(layer).ok_or_else(|| SparsifyError::Layer {
                path: path.clone(),
                reason: format!(
                    "a {} has no weight to sparsify (Conv2d and Linear do, and an attention \
                     whose q, k and v heads are equally wide)",
                    layer.kind()
                ),
            })?;
            config.granularity.reduced_dims(shape.len())?;
            initial.insert(path.clone(), values);
        }
        for (path, &s) in &config.per_layer {
            check_sparsity(s)?;
            if !paths.contains(path) {
                return Err(SparsifyError::Layer {
                    path: path.clone(),
                    reason: "has a per-layer target but is not among the sparsified layers".into(),
                });
            }
        }
        if config.round_to == 0 {
            return Err(SparsifyError::Config("round_to must be at least 1".into()));
        }
        if config.context == Context::Global
            && (!config.per_layer.is_empty() || config.round_to != 1)
        {
            return Err(SparsifyError::Config(
                "per-layer targets and round_to apply to the local context; global ranks every \
                 group against one threshold"
                    .into(),
            ));
        }
        Ok(Self {
            previous: BTreeMap::new(),
            initial,
            paths,
            units,
            masks: BTreeMap::new(),
            input_norms: BTreeMap::new(),
            gradients: BTreeMap::new(),
            config,
        })
    }

    /// The sparsified layers' paths.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The masks (PyTorch layout), per layer path.
    pub fn masks(&self) -> &BTreeMap<String, Vec<f32>> {
        &self.masks
    }

    /// What changes while training, for a resumed run: each layer's mask (`mask/PATH`) and the
    /// weights last scored (`previous/PATH`, which movement criteria compare against).
    pub(crate) fn state_arrays(&self) -> Arrays {
        let flat = |prefix: &str, map: &BTreeMap<String, Vec<f32>>| {
            map.iter()
                .map(|(path, v)| (format!("{prefix}/{path}"), (vec![v.len()], v.clone())))
                .collect::<Vec<_>>()
        };
        let mut arrays = Arrays::new();
        arrays.extend(flat("mask", &self.masks));
        arrays.extend(flat("previous", &self.previous));
        arrays
    }

    /// Restores what [`Sparsifier::state_arrays`] saved; every entry must name a sparsified
    /// layer and match its weight count.
    pub(crate) fn restore_arrays(&mut self, arrays: &Arrays) -> Result<()> {
        let (mut masks, mut previous) = (BTreeMap::new(), BTreeMap::new());
        for (name, (_, values)) in arrays {
            let bad =
                |reason: &str| SparsifyError::Config(format!("saved state `{name}`: {reason}"));
            let (kind, path) = name.split_once('/').ok_or_else(|| bad("unknown entry"))?;
            let expected = self
                .initial
                .get(path)
                .ok_or_else(|| bad("not a sparsified layer of this model"))?
                .len();
            if values.len() != expected {
                return Err(bad(&format!(
                    "{} values for {expected} weights",
                    values.len()
                )));
            }
            let target = match kind {
                "mask" => &mut masks,
                "previous" => &mut previous,
                _ => return Err(bad("unknown entry")),
            };
            target.insert(path.to_string(), values.clone());
        }
        self.masks = masks;
        self.previous.extend(previous);
        Ok(())
    }

    /// Computes masks for `sparsity` and applies them to `net`. Call again with a higher
    /// target to prune further (already-pruned weights score lowest and stay pruned).
    pub fn prune(&mut self, net: &mut Graph, sparsity: f64) -> Result<Vec<LayerSparsity>> {
        check_sparsity(sparsity)?;
        let g = self.config.granularity;
        // Layers are read and scored on every core.
        let scored = self
            .paths
            .par_iter()
            .map(|path| {
                let (shape, w) = masked_weight(net.layer(path)?).expect("checked in new");
                let inputs = ScoreInputs {
                    initial: self.initial.get(path).map(Vec::as_slice),
                    // Before the first step, the previous weights are the initial ones.
                    previous: self
                        .previous
                        .get(path)
                        .or(self.initial.get(path))
                        .map(Vec::as_slice),
                    gradient: self.gradients.get(path).map(Vec::as_slice),
                    input_norms: self.input_norms.get(path).map(Vec::as_slice),
                    seed: self.config.seed,
                };
                let mut scores = self.config.criterion.scores(&w, &shape, &inputs)?;
                if let Some(mask) = self.masks.get(path) {
                    scores.iter_mut().zip(mask).for_each(|(s, m)| *s *= m);
                }
                let groups = Groups::new(&shape, g.reduced_dims(shape.len())?);
                Ok((path.clone(), (shape, w, scores, groups)))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        let mut new_masks = BTreeMap::new();
        if let Some((n, m)) = self.config.n_of_m {
            for (path, (shape, _, scores, _)) in &scored {
                let mask = n_of_m(scores, shape, n, m).map_err(|e| SparsifyError::Layer {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                new_masks.insert(path.clone(), mask);
            }
        } else {
            // A unit's score per group: the mean over its producers (coupled filters align).
            let unit_scores: Vec<Vec<f64>> = self
                .units
                .iter()
                .map(|u| {
                    let per_layer: Vec<Vec<f64>> = u
                        .producers
                        .iter()
                        .map(|p| {
                            let (_, _, scores, groups) = &scored[p];
                            groups.mean_scores(scores)
                        })
                        .collect();
                    let n = per_layer.len() as f64;
                    (0..per_layer[0].len())
                        .map(|c| per_layer.iter().map(|s| s[c]).sum::<f64>() / n)
                        .collect()
                })
                .collect();
            let removals: Vec<usize> = match self.config.context {
                Context::Local => self
                    .units
                    .iter()
                    .zip(&unit_scores)
                    .map(|(u, scores)| {
                        let s = u
                            .producers
                            .iter()
                            .find_map(|p| self.config.per_layer.get(p).copied())
                            .unwrap_or(sparsity);
                        groups_to_remove(scores.len(), s, self.config.round_to)
                    })
                    .collect(),
                Context::Global => global_removals(&unit_scores, sparsity),
            };
            for ((u, scores), remove) in self.units.iter().zip(&unit_scores).zip(removals) {
                let keep = keep_best(scores, remove);
                for p in &u.producers {
                    new_masks.insert(p.clone(), scored[p].3.expand(&keep));
                }
            }
        }
        self.masks = new_masks;
        // The weights just read are masked and set: the model is not read again.
        let weights: BTreeMap<_, _> = scored
            .into_iter()
            .map(|(path, (shape, w, _, _))| (path, (shape, w)))
            .collect();
        let report = self.apply_masks(net, &weights)?;
        self.previous = weights.into_iter().map(|(p, (_, w))| (p, w)).collect();
        Ok(report)
    }

    /// Multiplies the weights by their masks. Where a channel's filters are masked in every
    /// producer of its unit, also zeroes their biases and the channel in the batch norms (γ, β)
    /// and depthwise convs it passes through, so it carries exactly zero (and pruning it away
    /// is lossless).
    pub fn apply(&self, net: &mut Graph) -> Result<()> {
        let weights = self
            .masks
            .keys()
            .map(|p| {
                Ok((
                    p.clone(),
                    masked_weight(net.layer(p)?).expect("checked in new"),
                ))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        self.apply_masks(net, &weights).map(|_| ())
    }

    /// [`Sparsifier::apply`] to `weights` (PyTorch shape and values per masked layer, as
    /// read from `net`), returning the sparsity of the masked layers.
    fn apply_masks(
        &self,
        net: &mut Graph,
        weights: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<Vec<LayerSparsity>> {
        let masked: Vec<(&String, Vec<f32>, LayerSparsity)> = self
            .masks
            .par_iter()
            .map(|(path, mask)| {
                let (shape, w) = &weights[path];
                let masked: Vec<f32> = w.iter().zip(mask).map(|(w, m)| w * m).collect();
                let report = self.layer_report(path, shape.clone(), &masked)?;
                Ok((path, masked, report))
            })
            .collect::<Result<_>>()?;
        let mut report = Vec::with_capacity(masked.len());
        for (path, values, layer) in masked {
            set_masked_weight(net.get_mut(path).expect("checked in new"), values);
            report.push(layer);
        }
        for unit in &self.units {
            let mut dead: Option<Vec<bool>> = None;
            for p in &unit.producers {
                let Some(mask) = self.masks.get(p) else {
                    continue;
                };
                let out = output_rows(net.layer(p)?, &weights[p].0);
                let layer_dead = mask
                    .chunks(mask.len() / out)
                    .map(|c| c.iter().all(|&m| m == 0.0));
                dead = Some(match dead {
                    None => layer_dead.collect(),
                    Some(d) => d.iter().zip(layer_dead).map(|(a, b)| *a && b).collect(),
                });
            }
            let Some(dead) = dead.filter(|d| d.iter().any(|&d| d)) else {
                continue;
            };
            for name in unit.producers.iter().chain(&unit.carriers) {
                let layer = net.get_mut(name).expect("from the graph");
                let keep = Tensor::<1>::from_data(
                    TensorData::new(
                        dead.iter()
                            .map(|&d| if d { 0.0f32 } else { 1.0 })
                            .collect::<Vec<_>>(),
                        [dead.len()],
                    ),
                    &layer.devices()[0],
                );
                zero_channels(layer, &keep, unit.carriers.contains(name));
            }
        }
        // In the order of `paths`, as `report` gives it.
        report.sort_by_key(|l| self.paths.iter().position(|p| *p == l.path));
        Ok(report)
    }

    /// Records, for [`Criterion::Wanda`], the RMS of every input channel (or feature) each
    /// sparsified layer receives when `net` runs on `images` (model input).
    pub fn calibrate(&mut self, net: &Graph, images: Tensor<4>) -> Result<()> {
        check_batch(net, &images, None)?;
        let mut norms = BTreeMap::new();
        net.forward_inspect(images, &mut |path, _, input| {
            if !self.paths.iter().any(|p| p == path) {
                return;
            }
            let rms = match input {
                Activation::Spatial(x) => x
                    .clone()
                    .square()
                    .mean_dim(0)
                    .mean_dim(2)
                    .mean_dim(3)
                    .sqrt()
                    .flatten::<1>(0, 3),
                // Every token is a sample of the features (Wanda on a transformer's Linear).
                Activation::Tokens(x) => x
                    .clone()
                    .square()
                    .mean_dim(0)
                    .mean_dim(1)
                    .sqrt()
                    .flatten::<1>(0, 2),
                Activation::Flat(x) => x.clone().square().mean_dim(0).sqrt().flatten::<1>(0, 1),
            };
            norms.insert(path.to_string(), host_values(rms));
        });
        self.input_norms = norms;
        Ok(())
    }

    /// Records, for [`Criterion::Taylor`], the gradient of the cross-entropy of `net` on
    /// (`images`, `targets`) with respect to every sparsified weight.
    pub fn calibrate_gradients(
        &mut self,
        net: &Graph,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
    ) -> Result<()> {
        check_batch(net, &images, Some(&targets))?;
        let device = images.device().autodiff();
        let trainable = net.clone().fork(&device).train();
        let logits = trainable.try_forward(images.autodiff())?.flatten();
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(logits, targets.autodiff());
        let grads = loss.backward();
        for path in &self.paths {
            let grad = match trainable.layer(path)? {
                Layer::Conv2d(c) => c.weight.grad(&grads).map(host_values),
                Layer::Linear(l) => l.weight.grad(&grads).map(|g| host_values(g.transpose())),
                Layer::MultiheadAttention(a) => a.in_proj_weight.grad(&grads).map(host_values),
                _ => None,
            };
            let grad = grad.ok_or_else(|| SparsifyError::Layer {
                path: path.clone(),
                reason: "received no gradient (is it used by the model's output?)".into(),
            })?;
            self.gradients.insert(path.clone(), grad);
        }
        Ok(())
    }

    /// The current weights of the sparsified layers (PyTorch layout), e.g. to rewind to later.
    pub fn snapshot(&self, net: &Graph) -> Result<BTreeMap<String, Vec<f32>>> {
        self.paths
            .iter()
            .map(|p| {
                Ok((
                    p.clone(),
                    masked_weight(net.layer(p)?).expect("checked in new").1,
                ))
            })
            .collect()
    }

    /// The weights at initialisation (when this sparsifier was made).
    pub fn initial_weights(&self) -> &BTreeMap<String, Vec<f32>> {
        &self.initial
    }

    /// Lottery-ticket rewinding: sets the surviving weights to their values in `to` (the
    /// initial weights, or a snapshot), masked.
    pub fn rewind(&self, net: &mut Graph, to: &BTreeMap<String, Vec<f32>>) -> Result<()> {
        for path in &self.paths {
            let Some(reference) = to.get(path) else {
                continue;
            };
            let layer = net.get_mut(path).expect("checked in new");
            let values = match self.masks.get(path) {
                Some(mask) => reference.iter().zip(mask).map(|(w, m)| w * m).collect(),
                None => reference.clone(),
            };
            layer.set_torch_weight(values);
        }
        Ok(())
    }

    /// Sparsity of every selected layer as it is now.
    pub fn report(&self, net: &Graph) -> Result<Vec<LayerSparsity>> {
        self.paths
            .iter()
            .map(|path| {
                let (shape, w) = masked_weight(net.layer(path)?).expect("checked in new");
                self.layer_report(path, shape, &w)
            })
            .collect()
    }

    fn layer_report(&self, path: &str, shape: Vec<usize>, w: &[f32]) -> Result<LayerSparsity> {
        let g = self.config.granularity;
        let groups = Groups::new(&shape, g.reduced_dims(shape.len())?);
        let zero_groups = groups.count() - groups.nonzero(w);
        Ok(LayerSparsity {
            path: path.to_string(),
            groups: groups.count(),
            zero_groups,
            sparsity: w.iter().filter(|&&v| v == 0.0).count() as f64 / w.len() as f64,
            shape,
        })
    }
}

/// A calibration batch must fit the model: its image shape, and class indices below the
/// number of outputs.
fn check_batch(net: &Graph, images: &Tensor<4>, targets: Option<&Tensor<1, Int>>) -> Result<()> {
    let [_, c, h, w] = images.dims();
    let out = net.output_shape(&[c, h, w]).map_err(|e| {
        SparsifyError::Config(format!(
            "the calibration images ({c}×{h}×{w}) do not fit the model: {e}"
        ))
    })?;
    if let Some(targets) = targets {
        let classes: usize = out.iter().product();
        let largest = targets
            .clone()
            .max()
            .into_data()
            .iter::<i64>()
            .next()
            .unwrap_or(0);
        if largest < 0 || largest as usize >= classes {
            return Err(SparsifyError::Config(format!(
                "the calibration labels go up to {largest}, but the model has {classes} outputs"
            )));
        }
    }
    Ok(())
}

fn check_sparsity(s: f64) -> Result<()> {
    if (0.0..1.0).contains(&s) {
        Ok(())
    } else {
        Err(SparsifyError::Config(format!(
            "sparsity {s} must be in [0, 1)"
        )))
    }
}
