//! The per-layer report every decomposition returns.

use std::fmt;

use fasterai_core::summary::thousands;
use serde::Serialize;

/// What happened to one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Dotted path of the original layer.
    pub path: String,
    /// What replaced it (`Linear→2×Linear`, `CP`, …), or why it was left.
    pub action: String,
    /// Shape of the original weight (PyTorch layout).
    pub weight_shape: Vec<usize>,
    /// Rank used (0 when skipped).
    pub rank: usize,
    /// Parameters before.
    pub params_before: usize,
    /// Parameters after (equal to before when skipped).
    pub params_after: usize,
    /// `‖W − Ŵ‖_F / ‖W‖_F` (0 when skipped).
    pub weight_error: f64,
    /// `‖y − ŷ‖_F / ‖y‖_F` of the layer's output on the probe batch, if one was given.
    pub output_error: Option<f64>,
    /// `true` when the layer was replaced.
    pub decomposed: bool,
}

/// The report of a whole-model decomposition.
#[derive(Debug, Clone, Serialize)]
pub struct DecomposeReport {
    /// One row per selected layer.
    pub layers: Vec<LayerReport>,
    /// Model parameters before.
    pub params_before: usize,
    /// Model parameters after.
    pub params_after: usize,
}

impl fmt::Display for DecomposeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<22} {:>14} {:>6} {:>13} {:>13} {:>9} {:>9}",
            "layer", "action", "weight", "rank", "params", "after", "W err", "y err"
        )?;
        for r in &self.layers {
            let shape = r
                .weight_shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("×");
            let y = r
                .output_error
                .map(|e| format!("{e:.4}"))
                .unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "{:<16} {:<22} {:>14} {:>6} {:>13} {:>13} {:>9.4} {:>9}",
                r.path,
                r.action,
                shape,
                if r.decomposed {
                    r.rank.to_string()
                } else {
                    "-".into()
                },
                thousands(r.params_before as u64),
                thousands(r.params_after as u64),
                r.weight_error,
                y
            )?;
        }
        let saved = self.params_before as i64 - self.params_after as i64;
        write!(
            f,
            "model parameters: {} → {} ({}{})",
            thousands(self.params_before as u64),
            thousands(self.params_after as u64),
            if saved >= 0 { "−" } else { "+" },
            thousands(saved.unsigned_abs())
        )
    }
}
