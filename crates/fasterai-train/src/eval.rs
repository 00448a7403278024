//! Accuracy and loss of a model on a labelled set, overall and per class.

use std::fmt;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Tensor};
use fasterai_core::graph::{Activation, Graph};
use serde::{Deserialize, Serialize};

use crate::data::{ImageSet, Normalize};
use crate::{Result, TrainError};

/// The result of [`evaluate`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Per class: name, images, fraction correct.
    pub per_class: Vec<(String, usize, f64)>,
}

/// Runs `net` (evaluation mode: use a plain, non-autodiff device) over `set` in batches.
pub fn evaluate(
    net: &Graph,
    set: &ImageSet,
    normalize: &Normalize,
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport> {
    evaluate_with(|x| net.try_forward(x), set, normalize, batch_size, device)
}

/// [`evaluate`] with `forward` computing each batch's outputs (a graph prepared for inference,
/// `fasterai_infer::Inference::try_forward`).
pub fn evaluate_with(
    mut forward: impl FnMut(Tensor<4>) -> fasterai_core::Result<Activation>,
    set: &ImageSet,
    normalize: &Normalize,
    batch_size: usize,
    device: &Device,
) -> Result<EvalReport> {
    let classes = set.classes().len();
    let cross_entropy = CrossEntropyLossConfig::new().init(device);
    let (mut loss_sum, mut correct) = (0.0f64, vec![0usize; classes]);
    for batch in set.batches(batch_size, normalize, device) {
        let n = batch.labels.len();
        let logits = forward(batch.images)?.flatten();
        let [_, outputs] = logits.dims();
        if outputs != classes {
            return Err(TrainError::Config(format!(
                "the model outputs {outputs} scores but the data has {classes} classes"
            )));
        }
        let loss: f32 = cross_entropy
            .forward(logits.clone(), batch.targets)
            .into_scalar();
        loss_sum += loss as f64 * n as f64;
        let predicted = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("int64 after convert");
        for (&p, &l) in predicted.iter().zip(&batch.labels) {
            if p == l as i64 {
                correct[l as usize] += 1;
            }
        }
    }
    let counts = set.class_counts();
    let total: usize = correct.iter().sum();
    Ok(EvalReport {
        images: set.len(),
        loss: loss_sum / set.len().max(1) as f64,
        accuracy: total as f64 / set.len().max(1) as f64,
        per_class: set
            .classes()
            .iter()
            .zip(counts.iter().zip(&correct))
            .map(|(name, (&n, &c))| (name.clone(), n, c as f64 / n.max(1) as f64))
            .collect(),
    })
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} images  accuracy {:.2} %  loss {:.4}",
            self.images,
            100.0 * self.accuracy,
            self.loss
        )?;
        writeln!(f, "{:<14} {:>7} {:>9}", "class", "images", "accuracy")?;
        for (name, n, acc) in &self.per_class {
            writeln!(f, "{name:<14} {n:>7} {:>8.2} %", 100.0 * acc)?;
        }
        Ok(())
    }
}
