//! Choosing the layers to decompose and measuring what a replacement changes.

use std::collections::HashMap;

use fasterai_core::graph::{Activation, Graph, Layer};

use crate::error::{DecomposeError, Result};

/// The paths to work on: `requested` (each must exist and be a `kind`), or every `kind` leaf.
pub(crate) fn select_layers(
    net: &Graph,
    requested: &[String],
    kind: &'static str,
) -> Result<Vec<String>> {
    if requested.is_empty() {
        let all: Vec<String> = net
            .leaves()
            .into_iter()
            .filter(|(_, l)| l.kind() == kind)
            .map(|(p, _)| p)
            .collect();
        if all.is_empty() {
            return Err(DecomposeError::NothingToDo(format!(
                "the model has no {kind} layer to decompose (`fasterai inspect MODEL` lists its layers)"
            )));
        }
        return Ok(all);
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
    net: &Graph,
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
pub(crate) fn relative_output_error(old: &Layer, new: &Graph, x: &Activation) -> f64 {
    let reference = old.forward_one(x.clone()).flatten();
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

/// Puts `chain` (nodes `0`, `1`, …) where node `path` was: its nodes become `path.0`, `path.1`, …
pub(crate) fn install_chain(out: &mut Graph, path: &str, chain: Graph) -> Result<()> {
    let pieces = chain.nodes.into_iter().map(|n| (n.name, n.layer)).collect();
    Ok(out.replace_with_chain(path, pieces)?)
}
