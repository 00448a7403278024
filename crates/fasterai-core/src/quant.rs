//! Integer grids. Weights: symmetric, one scale per tensor or per output channel, codes in
//! `[-(2^(b-1) - 1), 2^(b-1) - 1]` (zero is exact and the grid is symmetric). Activations: the
//! affine grid of a [`FakeQuantize`](crate::graph::ops::FakeQuantize) node, codes in
//! `[-2^(b-1), 2^(b-1) - 1]` with a zero point. The quantize pass, model files and the ONNX
//! export all use these functions, so a value is rounded the same way everywhere.

use serde::{Deserialize, Serialize};

/// Bit widths this build quantizes to.
pub const SUPPORTED_BITS: std::ops::RangeInclusive<u8> = 2..=8;

/// How a layer's weight is quantized (what a model file's architecture records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightGrid {
    /// Bits per code (2–8).
    pub bits: u8,
    /// One scale per output channel (otherwise one for the tensor).
    pub per_channel: bool,
}

impl WeightGrid {
    /// Checks the bit width.
    pub fn validate(&self) -> Result<(), String> {
        check_bits(self.bits)
    }

    /// Largest code: `2^(bits-1) - 1` (127 for int8).
    pub fn max_code(&self) -> i32 {
        (1 << (self.bits - 1)) - 1
    }

    /// The scales of a weight in PyTorch's layout (`rows` output channels, row-major): the
    /// largest magnitude of each channel (or of the tensor) over [`max_code`](Self::max_code).
    /// A channel of zeros gets scale 1 (any scale represents it exactly; ONNX wants it positive).
    pub fn scales(&self, values: &[f32], rows: usize) -> Vec<f32> {
        let peak = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
        let peaks = if self.per_channel {
            values
                .chunks(values.len() / rows.max(1))
                .map(peak)
                .collect()
        } else {
            vec![peak(values)]
        };
        peaks
            .into_iter()
            .map(|p| {
                if p > 0.0 {
                    p / self.max_code() as f32
                } else {
                    1.0
                }
            })
            .collect()
    }

    /// The codes of `values` (PyTorch layout) on the grid with `scales`: `round(w / s)`, ties
    /// to even, clamped.
    pub fn codes(&self, values: &[f32], scales: &[f32]) -> Vec<i8> {
        let q = self.max_code() as f32;
        let row = values.len() / scales.len().max(1);
        values
            .iter()
            .enumerate()
            .map(|(i, &w)| (w / scales[i / row.max(1)]).round_ties_even().clamp(-q, q) as i8)
            .collect()
    }

    /// `code · scale`: the float values a quantized weight stands for.
    pub fn dequantize(codes: &[i8], scales: &[f32]) -> Vec<f32> {
        let row = codes.len() / scales.len().max(1);
        codes
            .iter()
            .enumerate()
            .map(|(i, &c)| c as f32 * scales[i / row.max(1)])
            .collect()
    }
}

/// A quantized weight: its grid and scales (one per output channel, or one).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightQuant {
    /// Bits and granularity.
    pub grid: WeightGrid,
    /// Scales, positive.
    pub scales: Vec<f32>,
}

/// The affine grid of an activation: `q = clamp(round(x / scale) + zero_point)`,
/// `x̂ = (q - zero_point) · scale`, codes in `[-2^(b-1), 2^(b-1) - 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationGrid {
    /// Step between codes, positive.
    pub scale: f32,
    /// Code of 0.0.
    pub zero_point: i32,
    /// Bits per code (2–8).
    pub bits: u8,
}

impl ActivationGrid {
    /// The grid covering `[lo, hi]` (widened to hold 0, so that zero padding is exact).
    pub fn from_range(lo: f32, hi: f32, bits: u8) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let (qmin, qmax) = Self::code_range(bits);
        let span = hi - lo;
        let scale = if span > 0.0 {
            span / (qmax - qmin) as f32
        } else {
            1.0
        };
        let zero_point = (qmin as f32 - lo / scale).round_ties_even() as i32;
        ActivationGrid {
            scale,
            zero_point: zero_point.clamp(qmin, qmax),
            bits,
        }
    }

    /// Smallest and largest code.
    pub fn code_range(bits: u8) -> (i32, i32) {
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    }

    /// Checks bits, scale and zero point.
    pub fn validate(&self) -> Result<(), String> {
        check_bits(self.bits)?;
        let (qmin, qmax) = Self::code_range(self.bits);
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(format!(
                "scale must be positive and finite, got {}",
                self.scale
            ));
        }
        if !(qmin..=qmax).contains(&self.zero_point) {
            return Err(format!(
                "zero point {} is outside [{qmin}, {qmax}]",
                self.zero_point
            ));
        }
        Ok(())
    }

    /// The value `x` is represented by.
    pub fn fake_quantize(&self, x: f32) -> f32 {
        let (qmin, qmax) = Self::code_range(self.bits);
        let q = ((x / self.scale).round_ties_even() + self.zero_point as f32)
            .clamp(qmin as f32, qmax as f32);
        (q - self.zero_point as f32) * self.scale
    }
}

fn check_bits(bits: u8) -> Result<(), String> {
    if SUPPORTED_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(format!(
            "{bits}-bit quantization is not supported (use {} to {} bits)",
            SUPPORTED_BITS.start(),
            SUPPORTED_BITS.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_weights_give_the_expected_integers() {
        let grid = WeightGrid {
            bits: 8,
            per_channel: true,
        };
        // Scales that are powers of two, so every quotient is exact: row 0 peaks at
        // 127/64 (scale 1/64), row 1 at 127/128 (scale 1/128), row 2 is zero (scale 1).
        let w = [
            1.984375, 0.0234375, 0.0390625, -0.0078125, // 127, 1.5, 2.5, -0.5 steps
            -0.9921875, 0.01171875, -0.5, 0.0, // -127, 1.5, -64 steps
            0.0, 0.0, 0.0, 0.0,
        ];
        let s = grid.scales(&w, 3);
        assert_eq!(s, vec![1.0 / 64.0, 1.0 / 128.0, 1.0]);
        let q = grid.codes(&w, &s);
        // Ties go to the even code: 1.5 → 2, 2.5 → 2, -0.5 → 0.
        assert_eq!(q, vec![127, 2, 2, 0, -127, 2, -64, 0, 0, 0, 0, 0]);
        assert_eq!(
            WeightGrid::dequantize(&q, &s)[..3],
            [1.984375, 0.03125, 0.03125]
        );
        let per_tensor = WeightGrid {
            bits: 4,
            per_channel: false,
        };
        let s = per_tensor.scales(&w, 3);
        assert_eq!(s, vec![1.984375 / 7.0]);
        // 0.15 / 0.2835 = 0.53 → 1; 9.0 saturates at 7.
        assert_eq!(
            per_tensor.codes(&[1.984375, -1.984375, 0.15, 9.0], &s),
            vec![7, -7, 1, 7]
        );
    }

    #[test]
    fn activation_grid_holds_zero_and_the_range() {
        let g = ActivationGrid::from_range(0.0, 2.55, 8);
        assert_eq!(g.zero_point, -128);
        assert_eq!(g.fake_quantize(0.0), 0.0);
        assert!((g.fake_quantize(2.55) - 2.55).abs() < 1e-6);
        assert!((g.fake_quantize(9.0) - 2.55).abs() < 1e-6, "saturates");
        let g = ActivationGrid::from_range(-1.0, 3.0, 8);
        assert_eq!(g.fake_quantize(0.0), 0.0);
        assert!(g.validate().is_ok());
        let bad = ActivationGrid { bits: 9, ..g };
        assert!(bad.validate().unwrap_err().contains("9-bit"));
    }
}
