//! Post-training quantization: weights to their grids, activation grids from a calibration
//! set, the error of every layer measured, layers left in float where asked or where the error
//! is too high.

use std::collections::BTreeMap;
use std::fmt;

use burn::tensor::Tensor;
use fasterai_core::graph::{Activation, Layer};
use fasterai_core::linalg::host_values;
use fasterai_core::model::Model;
use fasterai_core::quant::{ActivationGrid, WeightGrid, WeightQuant};
use serde::Serialize;

use crate::calibrate::{Calibration, Observer};
use crate::{QuantizeError, Result};

/// Name of the quantizer node inserted in front of layer `path`.
pub fn quantizer_name(path: &str) -> String {
    format!("{path}.input_quantizer")
}

/// Settings of [`quantize`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeConfig {
    /// Bits of weight codes (default 8).
    pub weight_bits: u8,
    /// Bits of activation codes; `None` quantizes weights only (default 8).
    pub activation_bits: Option<u8>,
    /// One weight scale per output channel (default) or one per tensor.
    pub per_channel: bool,
    /// How activation ranges are chosen (default `percentile:99.99`).
    pub calibration: Calibration,
    /// Layers left in float: node paths or prefixes (`classifier` covers `classifier.6`).
    pub skip: Vec<String>,
    /// Layers whose relative output error on the calibration set exceeds this stay in float.
    pub max_error: Option<f64>,
}

impl Default for QuantizeConfig {
    fn default() -> Self {
        QuantizeConfig {
            weight_bits: 8,
            activation_bits: Some(8),
            per_channel: true,
            calibration: Calibration::Percentile(99.99),
            skip: Vec::new(),
            max_error: None,
        }
    }
}

impl QuantizeConfig {
    /// With per-channel (true) or per-tensor weight scales.
    pub fn with_per_channel(mut self, per_channel: bool) -> Self {
        self.per_channel = per_channel;
        self
    }

    /// With this calibration method.
    pub fn with_calibration(mut self, calibration: Calibration) -> Self {
        self.calibration = calibration;
        self
    }

    /// With weight and activation bit widths (`None`: weights only).
    pub fn with_bits(mut self, weights: u8, activations: Option<u8>) -> Self {
        self.weight_bits = weights;
        self.activation_bits = activations;
        self
    }

    /// Leaving these layers (paths or prefixes) in float.
    pub fn with_skip(mut self, skip: Vec<String>) -> Self {
        self.skip = skip;
        self
    }

    /// Leaving in float the layers whose relative output error exceeds `max`.
    pub fn with_max_error(mut self, max: Option<f64>) -> Self {
        self.max_error = max;
        self
    }

    /// The weight grid.
    pub fn weight_grid(&self) -> WeightGrid {
        WeightGrid {
            bits: self.weight_bits,
            per_channel: self.per_channel,
        }
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        let bits = |b: u8| {
            WeightGrid {
                bits: b,
                per_channel: true,
            }
            .validate()
            .map_err(QuantizeError::Config)
        };
        bits(self.weight_bits)?;
        if let Some(b) = self.activation_bits {
            bits(b)?;
        }
        self.calibration.validate()?;
        if let Some(m) = self.max_error
            && !(m.is_finite() && m > 0.0)
        {
            return Err(QuantizeError::Config(format!(
                "the maximum error {m} must be positive"
            )));
        }
        Ok(())
    }

    /// The Conv2d and Linear nodes to quantize: all of them but the skipped ones. A skip entry
    /// that names nothing is an error.
    pub fn targets(&self, model: &Model) -> Result<Vec<String>> {
        let covers = |skip: &str, name: &str| {
            name == skip || name.strip_prefix(skip).is_some_and(|r| r.starts_with('.'))
        };
        for skip in &self.skip {
            if !model.net.nodes.iter().any(|n| covers(skip, &n.name)) {
                return Err(model.net.unknown_path(skip).into());
            }
        }
        Ok(model
            .net
            .nodes
            .iter()
            .filter(|n| matches!(n.layer, Layer::Conv2d(_) | Layer::Linear(_)))
            .filter(|n| !self.skip.iter().any(|s| covers(s, &n.name)))
            .map(|n| n.name.clone())
            .collect())
    }
}

/// One layer's quantization.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Node path.
    pub path: String,
    /// `Conv2d` or `Linear`.
    pub kind: &'static str,
    /// Whether it was quantized.
    pub quantized: bool,
    /// Why not, when it was not.
    pub note: Option<String>,
    /// Weights in the layer.
    pub weights: usize,
    /// Largest `|w - ŵ| / scale` over the weight: at most 0.5 (half a step).
    pub weight_error_steps: f32,
    /// Largest `|w - ŵ|`.
    pub weight_max_error: f32,
    /// The analytic bound on it: half the largest scale.
    pub weight_error_bound: f32,
    /// The input's grid (none: weights only).
    pub input: Option<ActivationGrid>,
    /// The range observed at the input over the calibration set.
    pub observed: Option<(f32, f32)>,
    /// `‖y_q - y‖ / ‖y‖` over the calibration set, where `y` is the float layer on its float
    /// input and `y_q` the quantized layer on its quantized input.
    pub output_error: f64,
}

/// What [`quantize`] did, layer by layer.
#[derive(Debug, Clone, Serialize)]
pub struct QuantReport {
    /// Calibration method.
    pub calibration: String,
    /// Weight bits, activation bits, per channel.
    pub weight_bits: u8,
    /// Activation bits (`None`: weights only).
    pub activation_bits: Option<u8>,
    /// One scale per output channel.
    pub per_channel: bool,
    /// Calibration images.
    pub calibration_images: usize,
    /// Every Conv2d and Linear.
    pub layers: Vec<LayerReport>,
}

impl QuantReport {
    /// Bytes of the quantized layers' weights in float32 and as codes plus scales.
    pub fn weight_bytes(&self, model: &Model) -> (usize, usize) {
        let mut float = 0;
        let mut int = 0;
        for l in self.layers.iter().filter(|l| l.quantized) {
            float += 4 * l.weights;
            int += l.weights + 4 * model.quantized.get(&l.path).map_or(0, |q| q.scales.len());
        }
        (float, int)
    }
}

impl fmt::Display for QuantReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let acts = self
            .activation_bits
            .map_or("float".to_string(), |b| format!("int{b}"));
        writeln!(
            f,
            "weights int{} ({}), activations {acts} ({}, {} images)",
            self.weight_bits,
            if self.per_channel {
                "per channel"
            } else {
                "per tensor"
            },
            self.calibration,
            self.calibration_images
        )?;
        writeln!(
            f,
            "{:<28} {:<7} {:>9} {:>11} {:>23} {:>10}  note",
            "layer", "type", "weights", "w err/step", "input range", "out error"
        )?;
        for l in &self.layers {
            let range = l
                .input
                .map(|g| {
                    let (lo, hi) = ActivationGrid::code_range(g.bits);
                    let at = |q: i32| (q - g.zero_point) as f32 * g.scale;
                    format!("[{:.3}, {:.3}]", at(lo), at(hi))
                })
                .unwrap_or_else(|| "float".into());
            writeln!(
                f,
                "{:<28} {:<7} {:>9} {:>11.3} {:>23} {:>9.3}%  {}",
                l.path,
                l.kind,
                l.weights,
                l.weight_error_steps,
                range,
                100.0 * l.output_error,
                l.note.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

/// Puts the weights of `paths` on `grid` (scales from each weight's own range) and records them
/// in `model.quantized`. Returns, per layer, the largest error in steps and in value.
pub fn quantize_weights(
    model: &mut Model,
    paths: &[String],
    grid: WeightGrid,
) -> Result<Vec<(f32, f32)>> {
    grid.validate().map_err(QuantizeError::Config)?;
    let mut errors = Vec::with_capacity(paths.len());
    for path in paths {
        let layer = model
            .net
            .get_mut(path)
            .ok_or_else(|| QuantizeError::Config(format!("no layer `{path}` to quantize")))?;
        let Some((shape, values)) = layer.torch_weight() else {
            return Err(QuantizeError::Config(format!(
                "`{path}` is a {}, which has no weight to quantize",
                layer.kind()
            )));
        };
        let scales = grid.scales(&values, shape[0]);
        let dequantized = WeightGrid::dequantize(&grid.codes(&values, &scales), &scales);
        let row = values.len() / scales.len();
        let (mut steps, mut max) = (0f32, 0f32);
        for (i, (w, q)) in values.iter().zip(&dequantized).enumerate() {
            let e = (w - q).abs();
            max = max.max(e);
            steps = steps.max(e / scales[i / row]);
        }
        layer.set_torch_weight(dequantized);
        model
            .quantized
            .insert(path.clone(), WeightQuant { grid, scales });
        errors.push((steps, max));
    }
    Ok(errors)
}

/// Checks that `model` is float and `batches` fit it.
pub(crate) fn check_inputs(model: &Model, batches: &[Tensor<4>]) -> Result<()> {
    if model.is_quantized() {
        let what = model
            .quantized
            .keys()
            .next()
            .map(|p| format!("`{p}` has integer weights"))
            .unwrap_or_else(|| "it has FakeQuantize nodes".into());
        return Err(QuantizeError::AlreadyQuantized(what));
    }
    if batches.is_empty() {
        return Err(QuantizeError::Calibration(
            "no batches: give at least one batch of images the model takes".into(),
        ));
    }
    for b in batches {
        let dims = b.dims();
        if dims[1..] != model.input_shape[..] {
            return Err(QuantizeError::Calibration(format!(
                "images of shape {:?}, the model takes {:?}",
                &dims[1..],
                model.input_shape
            )));
        }
    }
    Ok(())
}

/// Observes the input of every target over the batches: range, then (when the method needs
/// it) the histogram.
pub(crate) fn observe(
    model: &Model,
    batches: &[Tensor<4>],
    targets: &[String],
    calibration: Calibration,
) -> BTreeMap<String, Observer> {
    let mut observers: BTreeMap<String, Observer> = targets
        .iter()
        .map(|t| (t.clone(), Observer::new()))
        .collect();
    let passes: &[bool] = if calibration.needs_histogram() {
        &[false, true]
    } else {
        &[false]
    };
    for &histogram in passes {
        for batch in batches {
            model.net.forward_inspect(
                batch.clone(),
                &mut |name: &str, _: &Layer, x: &Activation| {
                    if let Some(o) = observers.get_mut(name) {
                        let values = host_values(x.clone().flatten());
                        if histogram {
                            o.observe_histogram(&values);
                        } else {
                            o.observe_range(&values);
                        }
                    }
                },
            );
        }
    }
    observers
}

/// Post-training quantization of `model`'s Conv2d and Linear layers (all but the skipped
/// ones), calibrated on `batches` (normalised images as the model takes them). Returns the
/// quantized model, which computes with the dequantized weights and `FakeQuantize` nodes on
/// the layers' inputs, and the per-layer report.
pub fn quantize(
    model: &Model,
    batches: &[Tensor<4>],
    config: &QuantizeConfig,
) -> Result<(Model, QuantReport)> {
    config.validate()?;
    check_inputs(model, batches)?;
    let targets = config.targets(model)?;
    let model = model.clone();
    let observers = match config.activation_bits {
        Some(_) => observe(&model, batches, &targets, config.calibration),
        None => BTreeMap::new(),
    };
    let grids: BTreeMap<String, ActivationGrid> = match config.activation_bits {
        Some(bits) => observers
            .iter()
            .map(|(p, o)| (p.clone(), o.grid(config.calibration, bits)))
            .collect(),
        None => BTreeMap::new(),
    };
    let mut quantized = model.clone();
    let weight_errors = quantize_weights(&mut quantized, &targets, config.weight_grid())?;
    for (path, grid) in &grids {
        quantized
            .net
            .insert_before(path, &quantizer_name(path), Layer::FakeQuantize(*grid))?;
    }
    let output_errors = layer_errors(&model, &quantized, batches, &targets);

    let mut layers = Vec::with_capacity(targets.len());
    for (k, path) in targets.iter().enumerate() {
        let layer = model.net.layer(path)?;
        let error = output_errors[k];
        let mut report = LayerReport {
            path: path.clone(),
            kind: layer.kind(),
            quantized: true,
            note: None,
            weights: layer.torch_weight().map_or(0, |(_, v)| v.len()),
            weight_error_steps: weight_errors[k].0,
            weight_max_error: weight_errors[k].1,
            weight_error_bound: quantized.quantized[path]
                .scales
                .iter()
                .fold(0f32, |m, s| m.max(s / 2.0)),
            input: grids.get(path).copied(),
            observed: observers.get(path).map(|o| (o.min, o.max)),
            output_error: error,
        };
        if let Some(max) = config.max_error
            && error > max
        {
            // Back to float: the original weight, no quantizer.
            quantized.net.replace(path, layer.clone())?;
            quantized.quantized.remove(path);
            if grids.contains_key(path) {
                quantized.net.remove(&quantizer_name(path))?;
            }
            report.quantized = false;
            report.input = None;
            report.note = Some(format!(
                "kept in float: error {:.2} % > {:.2} %",
                100.0 * error,
                100.0 * max
            ));
        }
        layers.push(report);
    }
    for skip in model
        .net
        .nodes
        .iter()
        .filter(|n| matches!(n.layer, Layer::Conv2d(_) | Layer::Linear(_)))
        .filter(|n| !targets.contains(&n.name))
    {
        layers.push(LayerReport {
            path: skip.name.clone(),
            kind: skip.layer.kind(),
            quantized: false,
            note: Some("kept in float: skipped".into()),
            weights: skip.layer.torch_weight().map_or(0, |(_, v)| v.len()),
            weight_error_steps: 0.0,
            weight_max_error: 0.0,
            weight_error_bound: 0.0,
            input: None,
            observed: None,
            output_error: 0.0,
        });
    }
    quantized.name = format!("{}+int{}", model.name, config.weight_bits);
    let report = QuantReport {
        calibration: config.calibration.to_string(),
        weight_bits: config.weight_bits,
        activation_bits: config.activation_bits,
        per_channel: config.per_channel,
        calibration_images: batches.iter().map(|b| b.dims()[0]).sum(),
        layers,
    };
    Ok((quantized, report))
}

/// Per target, `‖y_q - y‖ / ‖y‖` over the batches: each layer alone, on the float model's
/// input to it (quantized by its own grid in the quantized model).
fn layer_errors(
    float: &Model,
    quantized: &Model,
    batches: &[Tensor<4>],
    targets: &[String],
) -> Vec<f64> {
    let mut sums = vec![(0f64, 0f64); targets.len()];
    for batch in batches {
        float.net.forward_inspect(
            batch.clone(),
            &mut |name: &str, layer: &Layer, x: &Activation| {
                let Some(k) = targets.iter().position(|t| t == name) else {
                    return;
                };
                let y = layer.forward_one(x.clone()).flatten();
                let input = match quantized.net.get(&quantizer_name(name)) {
                    Some(q) => q.forward_one(x.clone()),
                    None => x.clone(),
                };
                let q_layer = quantized.net.get(name).expect("same nodes");
                let yq = q_layer.forward_one(input).flatten();
                let diff: f32 = (yq - y.clone()).powi_scalar(2).sum().into_scalar();
                let norm: f32 = y.powi_scalar(2).sum().into_scalar();
                sums[k].0 += diff as f64;
                sums[k].1 += norm as f64;
            },
        );
    }
    sums.into_iter()
        .map(|(d, n)| if n > 0.0 { (d / n).sqrt() } else { d.sqrt() })
        .collect()
}
