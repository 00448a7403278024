//! `Linear` → two `Linear`s by truncated SVD.
//!
//! `W (out×in) ≈ U_k · (Σ_k V_kᵀ)`: the first layer (`in → k`, no bias) holds `Σ_k V_kᵀ`, the
//! second (`k → out`) holds `U_k` and the original bias (zero if there was none). The pair
//! replaces the layer as a nested `Graph`, so `classifier.0` becomes `classifier.0.0` and
//! `classifier.0.1`, as in PyTorch.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;
use fasterai_core::graph::{Activation, Graph, Layer};
use fasterai_core::linalg::{SvdMethod, from_array, rank_for_energy, to_array, truncated_svd_by};
use fasterai_core::summary::count_parameters;

use crate::error::{DecomposeError, Result};
use crate::report::{DecomposeReport, LayerReport};
use crate::select::{capture_inputs, install_chain, relative_output_error, select_layers};

/// How many singular values a factorised `Linear` keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinearRank {
    /// Remove this fraction of the `min(out, in)` singular values (`0 ≤ p < 1`); keeps
    /// `⌊(1 − p)·min(out, in)⌋`. fasterai's rule, but counted on the smaller side.
    PercentRemoved(f64),
    /// Keep exactly this many.
    Rank(usize),
    /// Keep the fewest whose squared sum reaches this fraction of `Σσ²` (`0 < e ≤ 1`).
    Energy(f64),
}

impl LinearRank {
    /// Checks the rule's parameter.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LinearRank::PercentRemoved(p) if !(0.0..1.0).contains(&p) => Err(
                DecomposeError::InvalidRank(format!("percent_removed = {p} must be in [0, 1)")),
            ),
            LinearRank::Rank(0) => Err(DecomposeError::InvalidRank(
                "rank must be at least 1".into(),
            )),
            LinearRank::Energy(e) if !(e > 0.0 && e <= 1.0) => Err(DecomposeError::InvalidRank(
                format!("energy = {e} must be in (0, 1]"),
            )),
            _ => Ok(()),
        }
    }

    /// The rank when it does not depend on the spectrum.
    fn fixed(&self, out: usize, inp: usize) -> Option<usize> {
        let smaller = out.min(inp);
        match *self {
            LinearRank::PercentRemoved(p) => {
                Some((((1.0 - p) * smaller as f64) + 1e-9).floor() as usize)
            }
            LinearRank::Rank(k) => Some(k),
            LinearRank::Energy(_) => None,
        }
    }
}

/// Settings of [`factorize_linears`].
#[derive(Debug, Clone)]
pub struct LinearSvdConfig {
    /// Rank rule.
    pub rank: LinearRank,
    /// Paths of the layers to factorise; empty means every `Linear`.
    pub layers: Vec<String>,
    /// SVD algorithm (LAPACK's full `gesdd` by default).
    pub method: SvdMethod,
}

impl LinearSvdConfig {
    /// Every `Linear`, with `rank`.
    pub fn new(rank: LinearRank) -> Self {
        LinearSvdConfig {
            rank,
            layers: Vec::new(),
            method: SvdMethod::default(),
        }
    }

    /// Only these paths.
    pub fn with_layers(mut self, layers: Vec<String>) -> Self {
        self.layers = layers;
        self
    }
}

/// Factorises the selected `Linear` layers of `net`. A layer whose factorisation would not
/// reduce its parameters (`k·(out + in) ≥ out·in`) is left alone and reported. With a `probe`
/// batch (model input), each layer's relative output error is measured on the activations it
/// sees in the original model.
pub fn factorize_linears(
    net: &Graph,
    config: &LinearSvdConfig,
    probe: Option<Activation>,
) -> Result<(Graph, DecomposeReport)> {
    config.rank.validate()?;
    let paths = select_layers(net, &config.layers, "Linear")?;
    let inputs = capture_inputs(net, &paths, probe);
    let mut out = net.clone();
    let mut layers = Vec::new();
    for path in &paths {
        let Layer::Linear(linear) = net.layer(path)? else {
            unreachable!("select_layers checked the type")
        };
        let [inp, outp] = linear.weight.dims();
        let before = count_parameters(linear);
        let mut row = LayerReport {
            path: path.clone(),
            action: String::new(),
            weight_shape: vec![outp, inp],
            rank: 0,
            params_before: before,
            params_after: before,
            weight_error: 0.0,
            output_error: None,
            decomposed: false,
        };
        let saves = |k: usize| k * (outp + inp) < outp * inp;
        if let Some(k) = config.rank.fixed(outp, inp) {
            if k == 0 || k > outp.min(inp) {
                return Err(DecomposeError::InvalidRank(format!(
                    "{path}: rank {k} is outside 1..={} for a {outp}×{inp} weight",
                    outp.min(inp)
                )));
            }
            if !saves(k) {
                row.action = format!("kept: rank {k} saves 0");
                layers.push(row);
                continue;
            }
        }
        let w = to_array(linear.weight.val().transpose());
        let rule = config.rank;
        let low = truncated_svd_by(&w, config.method, |spectrum| {
            Ok(rule.fixed(outp, inp).unwrap_or_else(|| match rule {
                LinearRank::Energy(e) => rank_for_energy(spectrum, e),
                _ => unreachable!(),
            }))
        })
        .map_err(|e| match e {
            fasterai_core::CoreError::InvalidLayer { reason, .. } => {
                fasterai_core::CoreError::InvalidLayer {
                    path: path.clone(),
                    reason,
                }
                .into()
            }
            other => DecomposeError::from(other),
        })?;
        let k = low.left.ncols();
        if !saves(k) {
            row.action = format!("kept: rank {k} saves 0");
            layers.push(row);
            continue;
        }
        let device = linear.weight.device();
        let first = Linear {
            weight: Param::from_tensor(from_array(&low.right, &device).transpose()),
            bias: None,
        };
        let bias = match &linear.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([outp], &device),
        };
        let second = Linear {
            weight: Param::from_tensor(from_array(&low.left, &device).transpose()),
            bias: Some(Param::from_tensor(bias)),
        };
        let pair = Graph::indexed([Layer::Linear(first), Layer::Linear(second)]);
        row.output_error = inputs
            .get(path)
            .map(|x| relative_output_error(&Layer::Linear(linear.clone()), &pair, x));
        row.rank = k;
        row.params_after = count_parameters(&pair);
        row.weight_error = low.relative_error;
        row.action = "SVD → Linear, Linear".into();
        row.decomposed = true;
        install_chain(&mut out, path, pair)?;
        layers.push(row);
    }
    let report = DecomposeReport {
        layers,
        params_before: count_parameters(net),
        params_after: count_parameters(&out),
    };
    Ok((out, report))
}
