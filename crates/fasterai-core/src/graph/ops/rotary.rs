//! Rotary position encoding (RoPE) of queries and keys, as Llama computes it: feature `i` of
//! each head's first half and feature `i` of its second half are rotated together by the angle
//! `position · θ^(−2i/d)`. Part of the attention op, not an op of its own: it acts on q and k
//! after the projection, which no node sees.

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The rotation's hyper-parameters, from a checkpoint's `rope_theta` and `rope_scaling`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotarySpec {
    /// Base of the frequencies (`rope_theta`: 10,000 for Llama 2, 500,000 for Llama 3).
    pub theta: f64,
    /// Positions are divided by this (`rope_scaling` of type `linear`; 1 without scaling).
    #[serde(default = "one")]
    pub position_scale: f64,
}

fn one() -> f64 {
    1.0
}

impl RotarySpec {
    /// Unscaled rotation with base `theta`.
    pub fn new(theta: f64) -> Self {
        RotarySpec {
            theta,
            position_scale: 1.0,
        }
    }

    /// Checks the numbers and that a head of `head_dim` features splits into pairs.
    pub fn validate(&self, head_dim: usize) -> Result<(), String> {
        if !(self.theta.is_finite() && self.theta > 1.0) {
            return Err(format!("rope_theta {} must be above 1", self.theta));
        }
        if !(self.position_scale.is_finite() && self.position_scale > 0.0) {
            return Err(format!(
                "the rotary position scale {} must be positive",
                self.position_scale
            ));
        }
        if !head_dim.is_multiple_of(2) {
            return Err(format!(
                "rotary encoding pairs features, but heads have {head_dim} (odd)"
            ));
        }
        Ok(())
    }

    /// `cos` and `sin` of every angle, `[N, 1, T, head_dim]` each, for tokens at `positions`
    /// (`[N, T]`). Frequencies in f32 as `transformers` computes them.
    pub fn tables(
        &self,
        positions: Tensor<2, Int>,
        head_dim: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = (2 * i) as f32 / head_dim as f32;
                1.0 / (self.theta as f32).powf(exponent) / self.position_scale as f32
            })
            .collect();
        let inv_freq = Tensor::<1>::from_data(TensorData::new(inv_freq, [half]), device);
        let [n, t] = positions.dims();
        let angles = positions.float().reshape([n, t, 1]) * inv_freq.reshape([1, 1, half]);
        let angles = Tensor::cat(vec![angles.clone(), angles], 2).reshape([n, 1, t, head_dim]);
        (angles.clone().cos(), angles.sin())
    }
}

/// `x · cos + rotate_half(x) · sin` over `[N, heads, T, head_dim]`, where `rotate_half` maps
/// the halves `(a, b)` of each head to `(−b, a)`.
pub fn rotate(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [_, _, _, d] = x.dims();
    let half = d / 2;
    let a = x.clone().narrow(3, 0, half);
    let b = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![b.neg(), a], 3);
    x * cos.clone() + rotated * sin.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::host_values;

    #[test]
    fn rotation_matches_the_formula_by_hand() {
        let device = Device::flex();
        let spec = RotarySpec {
            theta: 100.0,
            position_scale: 2.0,
        };
        let d = 4;
        let x: Vec<f32> = (0..2 * d).map(|i| i as f32 * 0.5 - 1.0).collect();
        let positions =
            Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 3], [1, 2]), &device);
        let (cos, sin) = spec.tables(positions, d, &device);
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 1, 2, d]), &device);
        let y = host_values(rotate(xt, &cos, &sin));
        for (t, pos) in [(0usize, 0.0f64), (1, 3.0)] {
            let v = &x[t * d..(t + 1) * d];
            for i in 0..2 {
                let angle = pos / 2.0 * 100f64.powf(-(2.0 * i as f64) / d as f64);
                let (c, s) = (angle.cos(), angle.sin());
                let (a, b) = (v[i] as f64, v[i + 2] as f64);
                let want = [a * c - b * s, b * c + a * s];
                let got = [y[t * d + i] as f64, y[t * d + i + 2] as f64];
                for k in 0..2 {
                    assert!((want[k] - got[k]).abs() < 1e-5, "{want:?} vs {got:?}");
                }
            }
        }
    }
}
