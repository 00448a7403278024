//! Tucker-2 of a conv weight `W [out, in, kh, kw]` on its two channel modes (Kim et al., 2016):
//! `W ≈ core ×₀ U_out ×₁ U_in` with `core [R_out, R_in, kh, kw]` and orthonormal factors,
//! initialised by HOSVD and refined by HOOI (higher-order orthogonal iteration), as tensorly's
//! `partial_tucker(W, modes=[0, 1], init='svd')` does.

use fasterai_core::linalg::{SvdMethod, truncated_svd};
use ndarray::{Array2, Array4};

use crate::error::{DecomposeError, Result};

/// The factors of a Tucker-2 decomposition.
#[derive(Debug, Clone)]
pub struct Tucker2 {
    /// `[R_out, R_in, kh, kw]`.
    pub core: Array4<f32>,
    /// `U_out`, `[out, R_out]`, orthonormal columns.
    pub out_factor: Array2<f32>,
    /// `U_in`, `[in, R_in]`, orthonormal columns.
    pub in_factor: Array2<f32>,
    /// Relative error `‖W − Ŵ‖ / ‖W‖` after HOSVD and after each HOOI iteration.
    pub errors: Vec<f64>,
}

/// Mode-`mode` unfolding (0–3; tensorly's order: the mode first, the others in order).
pub(crate) fn unfold(w: &Array4<f32>, mode: usize) -> Array2<f32> {
    let moved = w.view().permuted_axes(match mode {
        0 => [0, 1, 2, 3],
        1 => [1, 0, 2, 3],
        2 => [2, 0, 1, 3],
        _ => [3, 0, 1, 2],
    });
    let rows = moved.shape()[0];
    let cols = moved.len() / rows;
    Array2::from_shape_vec((rows, cols), moved.iter().copied().collect()).expect("sizes match")
}

/// `w ×_mode mᵀ`: contracts mode `mode` (0 or 1) of `w` with the columns of `m` (`[size, r]`).
fn project(w: &Array4<f32>, m: &Array2<f32>, mode: usize) -> Array4<f32> {
    let unfolded = unfold(w, mode); // [size, rest]
    let projected = m.t().dot(&unfolded); // [r, rest]
    let mut shape = w.shape().to_vec();
    shape.swap(0, mode);
    shape[0] = m.ncols();
    let t = Array4::from_shape_vec(
        (shape[0], shape[1], shape[2], shape[3]),
        projected.into_raw_vec_and_offset().0,
    )
    .expect("sizes match");
    if mode == 0 {
        t
    } else {
        t.permuted_axes([1, 0, 2, 3])
            .as_standard_layout()
            .to_owned()
    }
}

/// Leading `r` left singular vectors of `a`.
fn leading(a: &Array2<f32>, r: usize) -> Result<Array2<f32>> {
    Ok(truncated_svd(a, r, SvdMethod::Gram)?.left)
}

/// Tucker-2 at ranks `[r_out, r_in]`: HOSVD, then HOOI until the error changes by less than
/// `tol` or `max_iter` iterations ran.
pub fn tucker2(w: &Array4<f32>, ranks: [usize; 2], max_iter: usize, tol: f64) -> Result<Tucker2> {
    let [out, inp, ..] = [w.shape()[0], w.shape()[1]];
    if ranks[0] == 0 || ranks[0] > out || ranks[1] == 0 || ranks[1] > inp {
        return Err(DecomposeError::InvalidRank(format!(
            "Tucker ranks {ranks:?} must be within 1..={out} and 1..={inp}"
        )));
    }
    let norm2: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum();
    let error = |core: &Array4<f32>| {
        let kept: f64 = core.iter().map(|&v| (v as f64).powi(2)).sum();
        ((norm2 - kept).max(0.0) / norm2).sqrt()
    };
    let mut u_out = leading(&unfold(w, 0), ranks[0])?;
    let mut u_in = leading(&unfold(w, 1), ranks[1])?;
    let mut core = project(&project(w, &u_out, 0), &u_in, 1);
    let mut errors = vec![error(&core)];
    for _ in 0..max_iter {
        u_out = leading(&unfold(&project(w, &u_in, 1), 0), ranks[0])?;
        u_in = leading(&unfold(&project(w, &u_out, 0), 1), ranks[1])?;
        core = project(&project(w, &u_out, 0), &u_in, 1);
        let e = error(&core);
        let previous = *errors.last().expect("non-empty");
        errors.push(e);
        if (previous - e).abs() < tol {
            break;
        }
    }
    Ok(Tucker2 {
        core,
        out_factor: u_out,
        in_factor: u_in,
        errors,
    })
}

impl Tucker2 {
    /// `core ×₀ U_out ×₁ U_in`.
    pub fn reconstruct(&self) -> Array4<f32> {
        let expand =
            |t: &Array4<f32>, m: &Array2<f32>, mode: usize| project(t, &m.t().to_owned(), mode);
        expand(&expand(&self.core, &self.out_factor, 0), &self.in_factor, 1)
    }
}
