//! Replacing `Conv2d` layers by chains of smaller convolutions. Stride, padding and dilation
//! stay on the spatial parts of each chain, so the chain's output has the original's shape.
//!
//! | [`ConvMethod`] | chain |
//! |---|---|
//! | `Tucker2` (Kim et al., 2016) | 1×1 `in → R_in`, `kh×kw` core `R_in → R_out`, 1×1 `R_out → out` + bias |
//! | `Cp` (Lebedev et al., 2015) | 1×1 `in → R`, `kh×1` depthwise, `1×kw` depthwise, 1×1 `R → out` + bias |
//! | `SpatialSvd` (Jaderberg et al., 2014) | `kh×1` `in → K`, `1×kw` `K → out` + bias |

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use fasterai_core::graph::ops::Conv2dSpec;
use fasterai_core::graph::{Activation, Graph, InitScheme, Layer, LayerSpec};
use fasterai_core::linalg::host_values;
use fasterai_core::summary::count_parameters;
use ndarray::{Array2, Array4};
use serde::Serialize;

use crate::cp::{CpConfig, cp_als};
use crate::error::{DecomposeError, Result};
use crate::evbmf::{DEFAULT_XATOL, evbmf};
use crate::report::{DecomposeReport, LayerReport};
use crate::select::{capture_inputs, install_chain, relative_output_error, select_layers};
use crate::spatial::{spatial_matrix, spatial_svd};
use crate::tucker::{tucker2, unfold};

/// Which factorisation replaces each convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConvMethod {
    /// Tucker-2 on the channel modes (HOSVD + HOOI): three convolutions.
    Tucker2,
    /// CP by alternating least squares: four convolutions, two of them depthwise.
    Cp,
    /// Spatial SVD: a `kh×1` then a `1×kw` convolution.
    SpatialSvd,
}

/// How a decomposition's rank(s) are chosen.
///
/// Tucker-2 has two ranks `[R_out, R_in]`; CP and the spatial SVD have one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConvRank {
    /// This rank (Tucker-2: for both modes, capped at each mode's size; spatial SVD: capped at
    /// `min(in·kh, out·kw)`).
    Fixed(usize),
    /// A fraction of the channels, rounded up, in (0, 1]: of each mode's size for Tucker-2, of
    /// `min(in, out)` for CP and the spatial SVD.
    Ratio(f64),
    /// EVBMF (Nakajima et al., 2013), rounded up to a multiple of `multiple` (seed 002 uses 8):
    /// on the mode-0 and mode-1 unfoldings for Tucker-2 (CP takes the larger of the two, as
    /// seed 002 does), on the `[(in, kh), (out, kw)]` matrix for the spatial SVD.
    Evbmf {
        /// Rounding multiple.
        multiple: usize,
    },
}

/// What [`decompose_convs`] does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvConfig {
    /// The factorisation.
    pub method: ConvMethod,
    /// The rank rule.
    pub rank: ConvRank,
    /// Most HOOI / ALS iterations (100).
    pub max_iter: usize,
    /// Stop iterating when the relative error changes by less than this (Tucker-2: 1e-4 as
    /// tensorly's `partial_tucker`; CP: 1e-8 as its `parafac`).
    pub tol: f64,
}

impl ConvConfig {
    /// `method` at `rank` with tensorly's iteration defaults for the method.
    pub fn new(method: ConvMethod, rank: ConvRank) -> Self {
        let tol = match method {
            ConvMethod::Cp => CpConfig::default().tol,
            _ => 1e-4,
        };
        Self {
            method,
            rank,
            max_iter: 100,
            tol,
        }
    }

    fn validate(&self) -> Result<()> {
        match self.rank {
            ConvRank::Fixed(0) => Err(DecomposeError::InvalidRank(
                "rank must be at least 1".into(),
            )),
            ConvRank::Ratio(x) if !(x > 0.0 && x <= 1.0) => Err(DecomposeError::InvalidRank(
                format!("rank ratio {x} must be in (0, 1]"),
            )),
            ConvRank::Evbmf { multiple: 0 } => Err(DecomposeError::InvalidRank(
                "multiple must be at least 1".into(),
            )),
            _ if self.max_iter == 0 || self.tol.is_nan() || self.tol < 0.0 => {
                Err(DecomposeError::InvalidRank(format!(
                    "iterations need max_iter ≥ 1 and tol ≥ 0 (got {} and {})",
                    self.max_iter, self.tol
                )))
            }
            _ => Ok(()),
        }
    }

    /// The ranks for weight `w`: `[R_out, R_in]` for Tucker-2, `[R]` otherwise.
    fn ranks(&self, w: &Array4<f32>) -> Result<Vec<usize>> {
        let (out, inp) = (w.shape()[0], w.shape()[1]);
        let ratio = |x: f64, n: usize| ((n as f64 * x).ceil() as usize).max(1);
        let round = |r: usize, multiple: usize, cap: usize| {
            (r.max(1).div_ceil(multiple) * multiple).min(cap)
        };
        let evbmf_rank = |m: &Array2<f32>| -> Result<usize> {
            let s = fasterai_core::linalg::singular_values(m)?;
            Ok(evbmf(&s, m.nrows(), m.ncols(), DEFAULT_XATOL).rank)
        };
        Ok(match (self.method, self.rank) {
            (ConvMethod::Tucker2, ConvRank::Fixed(r)) => vec![r.min(out), r.min(inp)],
            (ConvMethod::Tucker2, ConvRank::Ratio(x)) => vec![ratio(x, out), ratio(x, inp)],
            (ConvMethod::Tucker2, ConvRank::Evbmf { multiple }) => vec![
                round(evbmf_rank(&unfold(w, 0))?, multiple, out),
                round(evbmf_rank(&unfold(w, 1))?, multiple, inp),
            ],
            (ConvMethod::Cp, ConvRank::Fixed(r)) => vec![r],
            (ConvMethod::Cp, ConvRank::Ratio(x)) => vec![ratio(x, out.min(inp))],
            (ConvMethod::Cp, ConvRank::Evbmf { multiple }) => {
                let r = evbmf_rank(&unfold(w, 0))?.max(evbmf_rank(&unfold(w, 1))?);
                vec![round(r, multiple, usize::MAX)]
            }
            (ConvMethod::SpatialSvd, rank) => {
                let m = spatial_matrix(w);
                let cap = m.nrows().min(m.ncols());
                vec![match rank {
                    ConvRank::Fixed(r) => r.min(cap),
                    ConvRank::Ratio(x) => ratio(x, out.min(inp)).min(cap),
                    ConvRank::Evbmf { multiple } => round(evbmf_rank(&m)?, multiple, cap),
                }]
            }
        })
    }
}

/// Parameters of the chain (bias excluded) for weight shape `[out, in, kh, kw]`.
fn chain_weights(method: ConvMethod, ranks: &[usize], [out, inp, kh, kw]: [usize; 4]) -> usize {
    match method {
        ConvMethod::Tucker2 => inp * ranks[1] + ranks[1] * ranks[0] * kh * kw + ranks[0] * out,
        ConvMethod::Cp => ranks[0] * (inp + kh + kw + out),
        ConvMethod::SpatialSvd => ranks[0] * (inp * kh + out * kw),
    }
}

/// The original convolution's geometry, from which each piece of a chain takes its part.
struct Geometry {
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

/// Which axes of the original geometry a piece keeps.
#[derive(Clone, Copy)]
enum Axes {
    None,
    Vertical,
    Horizontal,
    Both,
}

impl Geometry {
    fn conv(
        &self,
        weight: Array4<f32>,
        groups: usize,
        axes: Axes,
        bias: Option<Tensor<1>>,
        device: &Device,
    ) -> Layer {
        let (h, w) = match axes {
            Axes::None => (false, false),
            Axes::Vertical => (true, false),
            Axes::Horizontal => (false, true),
            Axes::Both => (true, true),
        };
        let pick = |v: [usize; 2], default: usize| {
            [
                if h { v[0] } else { default },
                if w { v[1] } else { default },
            ]
        };
        let shape = weight.shape().to_vec();
        let spec = LayerSpec::Conv2d(Conv2dSpec {
            in_channels: shape[1] * groups,
            out_channels: shape[0],
            kernel_size: [shape[2], shape[3]],
            stride: pick(self.stride, 1),
            padding: pick(self.padding, 0),
            dilation: pick(self.dilation, 1),
            groups,
            bias: bias.is_some(),
        });
        let Layer::Conv2d(mut conv) = Layer::from_spec(&spec, InitScheme::PyTorchDefault, device)
        else {
            unreachable!("a Conv2d spec builds a Conv2d")
        };
        let data = TensorData::new(weight.into_raw_vec_and_offset().0, shape);
        conv.weight = Param::from_tensor(Tensor::from_data(data, device));
        conv.bias = bias.map(Param::from_tensor);
        Layer::Conv2d(conv)
    }
}

fn to_array4(t: Tensor<4>) -> Array4<f32> {
    let [a, b, c, d] = t.dims();
    Array4::from_shape_vec((a, b, c, d), host_values(t)).expect("shape matches data")
}

/// `m` (`[rows, cols]`) as a 1×1 conv weight `[rows, cols, 1, 1]`.
fn pointwise(m: Array2<f32>) -> Array4<f32> {
    let (r, c) = m.dim();
    m.as_standard_layout()
        .to_owned()
        .into_shape_with_order((r, c, 1, 1))
        .expect("sizes match")
}

/// The chain replacing one conv, and its relative weight error.
fn factorize(
    config: &ConvConfig,
    ranks: &[usize],
    w: &Array4<f32>,
    geometry: &Geometry,
    bias: Option<Tensor<1>>,
    device: &Device,
) -> Result<(Vec<Layer>, f64)> {
    let [kh, kw] = [w.shape()[2], w.shape()[3]];
    Ok(match config.method {
        ConvMethod::Tucker2 => {
            let t = tucker2(w, [ranks[0], ranks[1]], config.max_iter, config.tol)?;
            let error = *t.errors.last().expect("at least the HOSVD error");
            let chain = vec![
                geometry.conv(
                    pointwise(t.in_factor.t().to_owned()),
                    1,
                    Axes::None,
                    None,
                    device,
                ),
                geometry.conv(t.core, 1, Axes::Both, None, device),
                geometry.conv(pointwise(t.out_factor), 1, Axes::None, bias, device),
            ];
            (chain, error)
        }
        ConvMethod::Cp => {
            let r = ranks[0];
            let cp = cp_als(
                w,
                r,
                CpConfig {
                    max_iter: config.max_iter,
                    tol: config.tol,
                    ..CpConfig::default()
                },
            )?;
            let error = *cp.errors.last().expect("at least one sweep");
            let f32s = |a: &Array2<f64>| a.mapv(|v| v as f32);
            let vertical =
                Array4::from_shape_fn((r, 1, kh, 1), |(q, _, i, _)| cp.vertical[[i, q]] as f32);
            let horizontal =
                Array4::from_shape_fn((r, 1, 1, kw), |(q, _, _, j)| cp.horizontal[[j, q]] as f32);
            let chain = vec![
                geometry.conv(
                    pointwise(f32s(&cp.in_factor).t().to_owned()),
                    1,
                    Axes::None,
                    None,
                    device,
                ),
                geometry.conv(vertical, r, Axes::Vertical, None, device),
                geometry.conv(horizontal, r, Axes::Horizontal, None, device),
                geometry.conv(pointwise(f32s(&cp.out_factor)), 1, Axes::None, bias, device),
            ];
            (chain, error)
        }
        ConvMethod::SpatialSvd => {
            let f = spatial_svd(w, ranks[0])?;
            let error = f.low_rank.relative_error;
            let chain = vec![
                geometry.conv(f.vertical, 1, Axes::Vertical, None, device),
                geometry.conv(f.horizontal, 1, Axes::Horizontal, bias, device),
            ];
            (chain, error)
        }
    })
}

/// Why `method` does not apply to a conv with `groups` groups and a `kernel`, if it does not.
fn not_applicable(method: ConvMethod, groups: usize, kernel: [usize; 2]) -> Option<String> {
    if groups != 1 {
        return Some(format!(
            "grouped conv (groups = {groups}): each group has its own small weight, not one \
             tensor to factorise"
        ));
    }
    let spatial = matches!(method, ConvMethod::Cp | ConvMethod::SpatialSvd);
    (spatial && kernel == [1, 1]).then(|| {
        format!("1×1 kernel: {method:?} factorises the kernel's extent; use Tucker-2 for 1×1 convs")
    })
}

/// Replaces the selected `Conv2d` layers (every conv when `layers` is empty) by the chain of
/// `config.method`. Grouped (and depthwise) convs, and 1×1 convs for the methods that split
/// the kernel, are skipped with the reason; a layer whose chain would not have fewer
/// parameters is kept and reported. With a `probe`, output errors are measured.
pub fn decompose_convs(
    net: &Graph,
    config: &ConvConfig,
    layers: &[String],
    probe: Option<Activation>,
) -> Result<(Graph, DecomposeReport)> {
    config.validate()?;
    let paths = select_layers(net, layers, "Conv2d")?;
    let inputs = capture_inputs(net, &paths, probe);
    let mut out = net.clone();
    let mut rows = Vec::new();
    for path in &paths {
        let Layer::Conv2d(conv) = net.layer(path)? else {
            unreachable!("select_layers checked the type")
        };
        let dims = conv.weight.dims();
        if let Some(reason) = not_applicable(config.method, conv.groups, [dims[2], dims[3]]) {
            let params = count_parameters(conv);
            rows.push(LayerReport {
                path: path.clone(),
                action: format!("skipped: {reason}"),
                weight_shape: dims.to_vec(),
                rank: 0,
                params_before: params,
                params_after: params,
                weight_error: 0.0,
                output_error: None,
                decomposed: false,
            });
            continue;
        }
        let w = to_array4(conv.weight.val());
        if w.iter().any(|v| !v.is_finite()) {
            return Err(fasterai_core::CoreError::InvalidLayer {
                path: path.clone(),
                reason: "the weight contains NaN or infinite values".into(),
            }
            .into());
        }
        let shape = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
        let ranks = config.ranks(&w)?;
        let before = count_parameters(conv);
        let after = chain_weights(config.method, &ranks, shape)
            + conv.bias.as_ref().map_or(0, |_| shape[0]);
        let mut row = LayerReport {
            path: path.clone(),
            action: String::new(),
            weight_shape: shape.to_vec(),
            rank: ranks.iter().copied().max().unwrap_or(0),
            params_before: before,
            params_after: before,
            weight_error: 0.0,
            output_error: None,
            decomposed: false,
        };
        if after >= before {
            row.action = format!("kept: rank {ranks:?} saves nothing");
            rows.push(row);
            continue;
        }
        let LayerSpec::Conv2d(Conv2dSpec {
            stride,
            padding,
            dilation,
            ..
        }) = Layer::Conv2d(conv.clone()).spec()
        else {
            unreachable!("a Conv2d's spec")
        };
        let geometry = Geometry {
            stride,
            padding,
            dilation,
        };
        let bias = conv.bias.as_ref().map(|b| b.val());
        let (chain, error) = factorize(config, &ranks, &w, &geometry, bias, &conv.weight.device())?;
        let chain = Graph::indexed(chain);
        row.output_error = inputs
            .get(path)
            .map(|x| relative_output_error(&Layer::Conv2d(conv.clone()), &chain, x));
        row.params_after = count_parameters(&chain);
        row.weight_error = error;
        row.action = format!(
            "{:?} {ranks:?} → {} convs",
            config.method,
            chain.nodes.len()
        );
        row.decomposed = true;
        install_chain(&mut out, path, chain)?;
        rows.push(row);
    }
    let report = DecomposeReport {
        layers: rows,
        params_before: count_parameters(net),
        params_after: count_parameters(&out),
    };
    Ok((out, report))
}
