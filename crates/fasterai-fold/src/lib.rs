//! # fasterai-fold
//!
//! Batch-norm folding. At inference a `BatchNorm2d` is an affine map per channel with fixed
//! (running) statistics, so when it directly follows a `Conv2d` it can be merged into the
//! convolution:
//!
//! ```text
//! s  = γ / √(running_var + ε)
//! W' = W · s      (per output channel)
//! b' = (b − running_mean) · s + β      (b = 0 for a conv without bias)
//! ```
//!
//! which is exact up to float rounding, removes the batch norm's parameters and saves one pass
//! over the activations. [`fold_batch_norms`] does this for every such pair in a model graph
//! (when the batch norm is the conv's only reader), and reports what it folded and what it left (with the reason).
//!
//! ```no_run
//! use fasterai_core::prelude::*;
//! use fasterai_fold::fold_batch_norms;
//!
//! let model = load_model("vgg16_bn.safetensors".as_ref(), &parse_device("flex")?)?;
//! let (_folded, report) = fold_batch_norms(&model.net)?;
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The folded model is for inference or fine-tuning without batch statistics: training it again
//! in train mode no longer normalises per batch.
#![doc(test(attr(deny(warnings))))]

use std::fmt;

use burn::module::Param;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use fasterai_core::graph::{Graph, Layer};
use fasterai_core::summary::{count_parameters, thousands};
use serde::Serialize;

/// Errors from folding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FoldError {
    /// The batch norm's size differs from the convolution's output channels.
    #[error(
        "cannot fold `{bn}` ({bn_features} features) into `{conv}` ({conv_out} output channels)"
    )]
    ChannelMismatch {
        /// Convolution path.
        conv: String,
        /// Batch-norm path.
        bn: String,
        /// Convolution output channels.
        conv_out: usize,
        /// Batch-norm features.
        bn_features: usize,
    },
    /// The batch norm's statistics give a non-finite scale (negative or NaN variance, …), or
    /// the convolution's weights are not finite.
    #[error("`{0}` has non-finite weights, parameters or statistics; the model is damaged")]
    NonFinite(String),
    /// Graph error.
    #[error(transparent)]
    Core(#[from] fasterai_core::CoreError),
}

/// One folded pair.
#[derive(Debug, Clone, Serialize)]
pub struct Folded {
    /// Path of the convolution that absorbed the batch norm.
    pub conv: String,
    /// Path of the removed batch norm.
    pub bn: String,
}

/// A batch norm that was left in place, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Unfolded {
    /// Path of the batch norm.
    pub bn: String,
    /// Why it could not be folded.
    pub reason: String,
}

/// What [`fold_batch_norms`] did.
#[derive(Debug, Clone, Serialize)]
pub struct FoldReport {
    /// Folded pairs.
    pub folded: Vec<Folded>,
    /// Batch norms left in place.
    pub left: Vec<Unfolded>,
    /// Parameters before.
    pub params_before: usize,
    /// Parameters after.
    pub params_after: usize,
}

/// Folds every `BatchNorm2d` that reads a `Conv2d` whose only reader it is into that conv.
/// Returns the new graph (the input is untouched) and a report. Nodes keep their names, so
/// paths stay stable (`features.0` stays `features.0`; `features.1` disappears, its readers
/// read `features.0`). A batch norm after anything else, or after a conv whose output also
/// goes elsewhere (a residual shortcut), stays, with the reason.
pub fn fold_batch_norms(net: &Graph) -> Result<(Graph, FoldReport), FoldError> {
    let mut report = FoldReport {
        folded: Vec::new(),
        left: Vec::new(),
        params_before: count_parameters(net),
        params_after: 0,
    };
    let mut out = net.clone();
    for node in &net.nodes {
        let Layer::BatchNorm2d(bn) = &node.layer else {
            continue;
        };
        let source = &node.inputs[0];
        let readers = out.readers(source).len();
        let reason = match out.get(source) {
            Some(Layer::Conv2d(_)) if readers == 1 => None,
            Some(Layer::Conv2d(_)) => Some(format!(
                "`{source}` (Conv2d) also feeds {} other node(s)",
                readers - 1
            )),
            Some(other) => Some(format!(
                "follows `{source}` ({}), not a Conv2d",
                other.kind()
            )),
            None => Some("reads the model input".to_string()),
        };
        if let Some(reason) = reason {
            report.left.push(Unfolded {
                bn: node.name.clone(),
                reason,
            });
            continue;
        }
        let Some(Layer::Conv2d(conv)) = out.get(source) else {
            unreachable!("checked above")
        };
        let folded = fold_pair(conv, bn, source, &node.name)?;
        out.replace(source, Layer::Conv2d(folded))?;
        out.remove(&node.name)?;
        report.folded.push(Folded {
            conv: source.clone(),
            bn: node.name.clone(),
        });
    }
    report.params_after = count_parameters(&out);
    Ok((out, report))
}

/// Merges `bn` into `conv` (evaluation semantics).
pub fn fold_pair(
    conv: &Conv2d,
    bn: &BatchNorm,
    conv_path: &str,
    bn_path: &str,
) -> Result<Conv2d, FoldError> {
    let [c_out, ..] = conv.weight.dims();
    let [features] = bn.gamma.dims();
    if c_out != features {
        return Err(FoldError::ChannelMismatch {
            conv: conv_path.into(),
            bn: bn_path.into(),
            conv_out: c_out,
            bn_features: features,
        });
    }
    let scale: Tensor<1> = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let bias = match &conv.bias {
        Some(b) => b.val(),
        None => scale.zeros_like(),
    };
    let new_bias = (bias - bn.running_mean.value()) * scale.clone() + bn.beta.val();
    let finite: bool = scale.clone().is_finite().all().into_scalar()
        && new_bias.clone().is_finite().all().into_scalar();
    if !finite {
        return Err(FoldError::NonFinite(bn_path.into()));
    }
    let weight = conv.weight.val() * scale.reshape([c_out, 1, 1, 1]);
    if !weight.clone().is_finite().all().into_scalar::<bool>() {
        return Err(FoldError::NonFinite(conv_path.into()));
    }
    Ok(Conv2d {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(new_bias)),
        ..conv.clone()
    })
}

impl fmt::Display for FoldReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "folded {} batch norm(s):", self.folded.len())?;
        for pair in &self.folded {
            writeln!(f, "  {:<16} → {}", pair.bn, pair.conv)?;
        }
        if !self.left.is_empty() {
            writeln!(f, "left {} batch norm(s) in place:", self.left.len())?;
            for bn in &self.left {
                writeln!(f, "  {:<16} {}", bn.bn, bn.reason)?;
            }
        }
        write!(
            f,
            "parameters: {} → {} (−{})",
            thousands(self.params_before as u64),
            thousands(self.params_after as u64),
            thousands((self.params_before - self.params_after) as u64)
        )
    }
}
