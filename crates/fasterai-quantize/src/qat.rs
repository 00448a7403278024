//! Quantization-aware training: the model trains through its quantizers. Activations pass the
//! `FakeQuantize` nodes [`prepare_qat`] inserts (straight-through gradient); weights are
//! fake-quantized by [`QatCallback`] around every optimiser step: the forward pass and the
//! gradient see the quantized weight, the update lands on a float shadow copy, which is
//! quantized again (the straight-through estimator, done through the loop's hooks).

use burn::tensor::Tensor;
use fasterai_core::graph::Graph;
use fasterai_core::io::Arrays;
use fasterai_core::model::Model;
use fasterai_core::quant::WeightGrid;
use fasterai_train::{Callback, CallbackState, TrainError, TrainState};

use crate::Result;
use crate::ptq::{QuantReport, QuantizeConfig, quantize, quantize_weights};

/// Calibrates activation grids on `batches` as post-training quantization does, and returns
/// the model with its `FakeQuantize` nodes but float weights (the callback quantizes them while
/// training), the callback, and the PTQ report (the starting point QAT improves on).
pub fn prepare_qat(
    model: &Model,
    batches: &[Tensor<4>],
    config: &QuantizeConfig,
) -> Result<(Model, QatCallback, QuantReport)> {
    let (quantized, report) = quantize(model, batches, config)?;
    let mut prepared = quantized.clone();
    let targets: Vec<String> = quantized.quantized.keys().cloned().collect();
    for path in &targets {
        prepared.net.replace(path, model.net.layer(path)?.clone())?;
    }
    prepared.quantized.clear();
    prepared.name = model.name.clone();
    let callback = QatCallback::new(targets, config.weight_grid());
    Ok((prepared, callback, report))
}

/// Fake-quantizes weights around every optimiser step (see the module docs). Between steps,
/// and so in validation and in the kept model, the weights are on their grids; finish with
/// [`QatCallback::finish`].
#[derive(Debug, Clone)]
pub struct QatCallback {
    targets: Vec<String>,
    grid: WeightGrid,
    /// Float weights that take the updates (PyTorch layout), once training started.
    shadow: Vec<Vec<f32>>,
    /// The weights the current step started from.
    start: Vec<Vec<f32>>,
    /// Output channels of each weight (the rows its scales cover).
    rows: Vec<usize>,
}

impl QatCallback {
    /// Quantizes the weights of `targets` on `grid` while training.
    pub fn new(targets: Vec<String>, grid: WeightGrid) -> Self {
        QatCallback {
            targets,
            grid,
            shadow: Vec::new(),
            start: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// The layers it quantizes.
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// The trained model with its weights recorded as integers (scales from the weights,
    /// which are on their grids already: the codes do not change).
    pub fn finish(&self, model: &Model) -> Result<Model> {
        let mut out = model.clone();
        out.quantized.clear();
        quantize_weights(&mut out, &self.targets, self.grid)?;
        out.name = format!("{}+int{}-qat", model.name, self.grid.bits);
        Ok(out)
    }

    fn set_quantized(&self, net: &mut Graph) {
        let weights = self.targets.iter().zip(&self.shadow).zip(&self.rows);
        for ((path, shadow), &rows) in weights {
            let layer = net.get_mut(path).expect("checked in before_fit");
            let scales = self.grid.scales(shadow, rows);
            let q = WeightGrid::dequantize(&self.grid.codes(shadow, &scales), &scales);
            layer.set_torch_weight(q);
        }
    }

    /// The targets' weights (PyTorch layout); records their output channels.
    fn weights(&mut self, net: &Graph) -> Vec<Vec<f32>> {
        let (rows, weights) = self
            .targets
            .iter()
            .map(|p| {
                let layer = net.get(p).and_then(|l| l.torch_weight());
                let (shape, values) = layer.expect("a weight");
                (shape[0], values)
            })
            .unzip();
        self.rows = rows;
        weights
    }
}

impl Callback for QatCallback {
    fn before_fit(
        &mut self,
        net: &Graph,
        _input_shape: &[usize],
        _config: &fasterai_train::TrainConfig,
    ) -> fasterai_train::Result<()> {
        self.grid
            .validate()
            .map_err(|e| TrainError::Config(format!("QAT: {e}")))?;
        for path in &self.targets {
            if net.layer(path)?.torch_weight().is_none() {
                return Err(TrainError::Config(format!(
                    "QAT: `{path}` has no weight to quantize"
                )));
            }
        }
        Ok(())
    }

    fn before_batch(&mut self, net: &mut Graph, _state: &TrainState) {
        if self.shadow.is_empty() {
            self.shadow = self.weights(net);
            self.set_quantized(net);
        }
        self.start = self.weights(net);
    }

    fn after_step(&mut self, net: &mut Graph, _state: &TrainState) {
        // The optimiser's update of the quantized weight, added to the float one.
        let now = self.weights(net);
        for ((shadow, start), now) in self.shadow.iter_mut().zip(&self.start).zip(now) {
            for ((s, a), b) in shadow.iter_mut().zip(start).zip(now) {
                *s += b - a;
            }
        }
        self.set_quantized(net);
    }

    fn state(&self) -> CallbackState {
        let arrays: Arrays = self
            .targets
            .iter()
            .zip(&self.shadow)
            .map(|(p, s)| (format!("shadow/{p}"), (vec![s.len()], s.clone())))
            .collect();
        CallbackState {
            values: serde_json::json!({ "started": !self.shadow.is_empty() }),
            arrays,
        }
    }

    fn restore(&mut self, mut state: CallbackState) -> fasterai_train::Result<()> {
        if !state.values["started"].as_bool().unwrap_or(false) {
            return Ok(());
        }
        self.shadow = self
            .targets
            .iter()
            .map(|p| {
                state
                    .arrays
                    .remove(&format!("shadow/{p}"))
                    .map(|(_, v)| v)
                    .ok_or_else(|| TrainError::Config(format!("QAT state misses `{p}`")))
            })
            .collect::<fasterai_train::Result<_>>()?;
        Ok(())
    }
}
