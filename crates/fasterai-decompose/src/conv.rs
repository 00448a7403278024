//! `Conv2d` → three convolutions by Tucker-2 (Kim et al., 2016): a 1×1 conv `in → R_in`, the
//! core `R_in → R_out` with the original kernel, stride, padding and dilation, and a 1×1 conv
//! `R_out → out` carrying the original bias.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};
use fasterai_core::graph::{Activation, Layer, Sequential};
use fasterai_core::summary::count_parameters;
use ndarray::Array4;

use crate::error::{DecomposeError, Result};
use crate::evbmf::{DEFAULT_XATOL, evbmf};
use crate::report::{DecomposeReport, LayerReport};
use crate::select::{capture_inputs, relative_output_error, select_layers};
use crate::tucker::{tucker2, unfold};

/// How the Tucker ranks `[R_out, R_in]` of a convolution are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConvRank {
    /// The same rank for both modes (capped at each mode's size).
    Fixed(usize),
    /// This fraction of each mode's channels, rounded up (`0 < x ≤ 1`).
    Ratio(f64),
    /// EVBMF on the mode-0 and mode-1 unfoldings, rounded up to a multiple of `multiple`
    /// (seed 002 uses 8) and capped at the channel counts.
    Evbmf {
        /// Rounding multiple.
        multiple: usize,
    },
}

impl ConvRank {
    fn validate(&self) -> Result<()> {
        match *self {
            ConvRank::Fixed(0) => Err(DecomposeError::InvalidRank(
                "rank must be at least 1".into(),
            )),
            ConvRank::Ratio(x) if !(x > 0.0 && x <= 1.0) => Err(DecomposeError::InvalidRank(
                format!("rank ratio {x} must be in (0, 1]"),
            )),
            ConvRank::Evbmf { multiple: 0 } => Err(DecomposeError::InvalidRank(
                "multiple must be at least 1".into(),
            )),
            _ => Ok(()),
        }
    }

    fn ranks(&self, w: &Array4<f32>) -> Result<[usize; 2]> {
        let (out, inp) = (w.shape()[0], w.shape()[1]);
        Ok(match *self {
            ConvRank::Fixed(r) => [r.min(out), r.min(inp)],
            ConvRank::Ratio(x) => [
                ((out as f64 * x).ceil() as usize).max(1),
                ((inp as f64 * x).ceil() as usize).max(1),
            ],
            ConvRank::Evbmf { multiple } => {
                let mut ranks = [0; 2];
                for (mode, size) in [(0, out), (1, inp)] {
                    let unfolded = unfold(w, mode);
                    let s = fasterai_core::linalg::singular_values(&unfolded)?;
                    let r = evbmf(&s, unfolded.nrows(), unfolded.ncols(), DEFAULT_XATOL).rank;
                    ranks[mode] = (r.max(1).div_ceil(multiple) * multiple).min(size);
                }
                ranks
            }
        })
    }
}

fn to_array4(t: Tensor<4>) -> Array4<f32> {
    let [a, b, c, d] = t.dims();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float32 after convert");
    Array4::from_shape_vec((a, b, c, d), data).expect("shape matches data")
}

fn conv_from(
    weight: Array4<f32>,
    bias: Option<Tensor<1>>,
    template: &Conv2d,
    spatial: bool,
    device: &Device,
) -> Conv2d {
    let shape = weight.shape().to_vec();
    let data = TensorData::new(weight.iter().copied().collect::<Vec<f32>>(), shape);
    let mut conv = Conv2d {
        weight: Param::from_tensor(Tensor::from_data(data, device)),
        bias: bias.map(Param::from_tensor),
        ..template.clone()
    };
    if !spatial {
        conv.stride = [1, 1];
        conv.dilation = [1, 1];
        conv.kernel_size = [1, 1];
        conv.padding = burn::nn::PaddingConfig2d::Explicit(0, 0, 0, 0);
    }
    conv
}

/// Replaces the selected `Conv2d` layers (every conv when `layers` is empty) by their Tucker-2
/// decomposition. Grouped convolutions are an error; a layer whose decomposition would not
/// reduce parameters is kept and reported. With a `probe`, output errors are measured.
pub fn tucker_convs(
    net: &Sequential,
    rank: ConvRank,
    layers: &[String],
    probe: Option<Activation>,
) -> Result<(Sequential, DecomposeReport)> {
    rank.validate()?;
    let paths = select_layers(net, layers, "Conv2d")?;
    let inputs = capture_inputs(net, &paths, probe);
    let mut out = net.clone();
    let mut rows = Vec::new();
    for path in &paths {
        let Layer::Conv2d(conv) = net.layer(path)? else {
            unreachable!("select_layers checked the type")
        };
        if conv.groups != 1 {
            return Err(DecomposeError::InvalidRank(format!(
                "{path}: grouped convolutions (groups = {}) cannot be Tucker-decomposed",
                conv.groups
            )));
        }
        let w = to_array4(conv.weight.val());
        if w.iter().any(|v| !v.is_finite()) {
            return Err(fasterai_core::CoreError::InvalidLayer {
                path: path.clone(),
                reason: "the weight contains NaN or infinite values".into(),
            }
            .into());
        }
        let [out_c, in_c, kh, kw] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
        let ranks = rank.ranks(&w)?;
        let before = count_parameters(conv);
        let after = in_c * ranks[1]
            + ranks[1] * ranks[0] * kh * kw
            + ranks[0] * out_c
            + conv.bias.as_ref().map_or(0, |_| out_c);
        let mut row = LayerReport {
            path: path.clone(),
            action: String::new(),
            weight_shape: vec![out_c, in_c, kh, kw],
            rank: ranks[0].max(ranks[1]),
            params_before: before,
            params_after: before,
            weight_error: 0.0,
            output_error: None,
            decomposed: false,
        };
        if after >= before {
            row.action = format!("kept: ranks {ranks:?} save 0");
            rows.push(row);
            continue;
        }
        let t = tucker2(&w, ranks, 100, 1e-4)?;
        let device = conv.weight.device();
        let first = t
            .in_factor
            .t()
            .as_standard_layout()
            .to_owned()
            .into_shape_with_order((ranks[1], in_c, 1, 1))
            .expect("sizes match");
        let last = t
            .out_factor
            .as_standard_layout()
            .to_owned()
            .into_shape_with_order((out_c, ranks[0], 1, 1))
            .expect("sizes match");
        let bias = conv.bias.as_ref().map(|b| b.val());
        let chain = Sequential::indexed([
            Layer::Conv2d(conv_from(first, None, conv, false, &device)),
            Layer::Conv2d(conv_from(t.core.clone(), None, conv, true, &device)),
            Layer::Conv2d(conv_from(last, bias, conv, false, &device)),
        ]);
        row.output_error = inputs.get(path).map(|x| {
            relative_output_error(
                &Layer::Conv2d(conv.clone()),
                &Layer::Sequential(chain.clone()),
                x,
            )
        });
        row.params_after = count_parameters(&chain);
        row.weight_error = *t.errors.last().expect("at least the HOSVD error");
        row.action = format!("Tucker-2 {ranks:?} → 3 convs");
        row.decomposed = true;
        out.replace(path, Layer::Sequential(chain))?;
        rows.push(row);
    }
    let report = DecomposeReport {
        layers: rows,
        params_before: count_parameters(net),
        params_after: count_parameters(&out),
    };
    Ok((out, report))
}
