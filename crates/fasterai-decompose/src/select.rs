//! Choosing the layers to decompose and measuring what a replacement changes.

use std::collections::HashMap;

use fasterai_core::graph::{Activation, Layer, Sequential};

use crate::error::{DecomposeError, Result};

/// The paths to work on: `requested` (each must exist and be a `kind`), or every `kind` leaf.
pub(crate) fn select_layers(
    net: &Sequential,
    requested: &[String],
    kind: &'static str,
) -> Result<Vec<String>> {
    if requested.is_empty() {
        return Ok(net
            .leaves()
            .into_iter()
            .filter(|(_, l)| l.kind() == kind)
            .map(|(p, _)| p)
            .collect());
    }
    requested
        .iter()
        .map(|path| {
            let layer = net.layer(path)?;
            if layer.kind() != kind {
                return Err(DecomposeError::WrongLayerType {
                    path: path.clone(),
                    kind: layer.kind(),
                    expected: kind,
                });
            }
            Ok(path.clone())
        })
        .collect()
}

/// The activations each of `paths` receives when the original model runs on `probe`.
pub(crate) fn capture_inputs(
    net: &Sequential,
    paths: &[String],
    probe: Option<Activation>,
) -> HashMap<String, Activation> {
    let mut seen = HashMap::new();
    if let Some(x) = probe {
        net.forward_inspect(x, &mut |path, _, input| {
            if paths.iter().any(|p| p == path) {
                seen.insert(path.to_string(), input.clone());
            }
        });
    }
    seen
}

/// `‖new(x) − old(x)‖_F / ‖old(x)‖_F`.
pub(crate) fn relative_output_error(old: &Layer, new: &Layer, x: &Activation) -> f64 {
    let reference = old.forward(x.clone()).flatten();
    let approx = new.forward(x.clone()).flatten();
    let num: f32 = (approx - reference.clone())
        .square()
        .sum()
        .sqrt()
        .into_scalar();
    let den: f32 = reference.square().sum().sqrt().into_scalar();
    if den > 0.0 {
        (num / den) as f64
    } else {
        num as f64
    }
}
