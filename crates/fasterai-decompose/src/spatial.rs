//! Spatial SVD of a conv weight `W [out, in, kh, kw]` (Jaderberg et al., 2014): a `kh×1` conv
//! `in → K` followed by a `1×kw` conv `K → out`.
//!
//! Both convolutions together compute `Σ_k H[t, k, j] · Σ_{s, i} V[k, s, i] · x[s, y+i, x+j]`,
//! i.e. the weight `W[t, s, i, j] = Σ_k V[k, s, i] · H[t, k, j]`: a rank-`K` factorisation of
//! `W` reshaped to `[(s, i), (t, j)]`, which the truncated SVD gives optimally (Eckart–Young).
//!
//! Seed 002's slice-wise SVD factorises every `kh×kw` slice separately ([`slicewise`]); a
//! rank-`r` slice-wise approximation is one of rank at most `out·in·r` of that reshaped
//! matrix, so the spatial SVD at the same intermediate width is never worse, and it needs only
//! two dense convolutions where the slice-wise one needs `out·in·r` intermediate channels.

use fasterai_core::linalg::{LowRank, SvdMethod, truncated_svd};
use ndarray::{Array2, Array4, s};

use crate::error::{DecomposeError, Result};

/// The two convolution weights of a spatial SVD.
#[derive(Debug, Clone)]
pub struct SpatialSvd {
    /// `[K, in, kh, 1]`.
    pub vertical: Array4<f32>,
    /// `[out, K, 1, kw]`.
    pub horizontal: Array4<f32>,
    /// The truncation it came from (spectrum, relative weight error).
    pub low_rank: LowRank,
}

impl SpatialSvd {
    /// `W[t, s, i, j] = Σ_k vertical[k, s, i] · horizontal[t, k, j]`.
    pub fn reconstruct(&self) -> Array4<f32> {
        let (k, s, h) = (
            self.vertical.shape()[0],
            self.vertical.shape()[1],
            self.vertical.shape()[2],
        );
        let (t, w) = (self.horizontal.shape()[0], self.horizontal.shape()[3]);
        Array4::from_shape_fn((t, s, h, w), |(t, s, i, j)| {
            (0..k)
                .map(|q| self.vertical[[q, s, i, 0]] * self.horizontal[[t, q, 0, j]])
                .sum()
        })
    }
}

/// `W [out, in, kh, kw]` as the matrix `[(in, kh), (out, kw)]` the spatial SVD factorises.
pub fn spatial_matrix(w: &Array4<f32>) -> Array2<f32> {
    let [t, s, h, k] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
    let p = w.view().permuted_axes([1, 2, 0, 3]);
    Array2::from_shape_vec((s * h, t * k), p.iter().copied().collect()).expect("sizes match")
}

/// Spatial SVD of `w` with `k` intermediate channels (`1 ≤ k ≤ min(in·kh, out·kw)`).
pub fn spatial_svd(w: &Array4<f32>, k: usize) -> Result<SpatialSvd> {
    let [t, s, h, kw] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
    let most = (s * h).min(t * kw);
    if k == 0 || k > most {
        return Err(DecomposeError::InvalidRank(format!(
            "spatial SVD rank {k} must be within 1..={most} for a [{t}, {s}, {h}, {kw}] weight"
        )));
    }
    let low_rank = truncated_svd(&spatial_matrix(w), k, SvdMethod::Full)?;
    // left [(s, i), k] → vertical [k, s, i, 1]; right [k, (t, j)] → horizontal [t, k, 1, j].
    let vertical =
        Array4::from_shape_fn((k, s, h, 1), |(q, s, i, _)| low_rank.left[[s * h + i, q]]);
    let horizontal = Array4::from_shape_fn((t, k, 1, kw), |(t, q, _, j)| {
        low_rank.right[[q, t * kw + j]]
    });
    Ok(SpatialSvd {
        vertical,
        horizontal,
        low_rank,
    })
}

/// Seed 002's slice-wise SVD: every `kh×kw` slice `W[t, s]` replaced by its own rank-`r`
/// truncation. Returns the approximation and its relative error `‖W − Ŵ‖ / ‖W‖`.
pub fn slicewise(w: &Array4<f32>, r: usize) -> Result<(Array4<f32>, f64)> {
    let [t, s, h, k] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
    if r == 0 || r > h.min(k) {
        return Err(DecomposeError::InvalidRank(format!(
            "slice-wise rank {r} must be within 1..={} for {h}×{k} kernels",
            h.min(k)
        )));
    }
    let mut approx = Array4::<f32>::zeros((t, s, h, k));
    for o in 0..t {
        for i in 0..s {
            let slice = w.slice(s![o, i, .., ..]).to_owned();
            if slice.iter().all(|&v| v == 0.0) {
                continue;
            }
            let f = truncated_svd(&slice, r, SvdMethod::Full)?;
            approx
                .slice_mut(s![o, i, .., ..])
                .assign(&f.left.dot(&f.right));
        }
    }
    let num: f64 = w
        .iter()
        .zip(&approx)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = w.iter().map(|&a| (a as f64).powi(2)).sum();
    Ok((approx, if den > 0.0 { (num / den).sqrt() } else { 0.0 }))
}
