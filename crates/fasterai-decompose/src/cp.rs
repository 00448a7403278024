//! CP (CANDECOMP/PARAFAC) of a conv weight `W [out, in, kh, kw]` by alternating least squares
//! (Lebedev et al., 2015): `W ≈ Σ_r a_r ∘ b_r ∘ c_r ∘ d_r`, as tensorly's
//! `parafac(W, rank, init='svd')` computes it.
//!
//! Each ALS step solves one factor exactly given the other three, so the error never rises.
//! The matricised-tensor-times-Khatri-Rao products need only two GEMMs per sweep: the
//! contraction of `W` with the `in` factor feeds the `out` update, and its contraction with the
//! new `out` factor feeds the `in`, `kh` and `kw` updates (their factors are applied after).

use ndarray::{Array2, Array4, Zip};
use ndarray_linalg::{Eigh, UPLO};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{DecomposeError, Result};
use crate::tucker::unfold;

/// Stopping rule and initialisation of [`cp_als`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpConfig {
    /// Most ALS sweeps (tensorly's `n_iter_max`, default 100).
    pub max_iter: usize,
    /// Stop when the relative error changes by less than this between sweeps (tensorly's
    /// `tol`, default 1e-8).
    pub tol: f64,
    /// Seed of the uniform noise that fills the SVD initialisation of modes smaller than the
    /// rank (tensorly's `random_state`).
    pub seed: u64,
}

impl Default for CpConfig {
    fn default() -> Self {
        Self {
            max_iter: 100,
            tol: 1e-8,
            seed: 0,
        }
    }
}

/// The factors of a CP decomposition (weights all 1: any scale lives in the factors).
#[derive(Debug, Clone)]
pub struct Cp {
    /// `[out, R]`.
    pub out_factor: Array2<f64>,
    /// `[in, R]`.
    pub in_factor: Array2<f64>,
    /// `[kh, R]`.
    pub vertical: Array2<f64>,
    /// `[kw, R]`.
    pub horizontal: Array2<f64>,
    /// Relative error `‖W − Ŵ‖ / ‖W‖` after each sweep.
    pub errors: Vec<f64>,
}

impl Cp {
    /// `Ŵ[t, s, i, j] = Σ_r out[t, r]·in[s, r]·vertical[i, r]·horizontal[j, r]`.
    pub fn reconstruct(&self) -> Array4<f32> {
        let (t, s) = (self.out_factor.nrows(), self.in_factor.nrows());
        let (h, w) = (self.vertical.nrows(), self.horizontal.nrows());
        // [t·s, R] ⊙ … as one GEMM: (out ⊙ in) · (vertical ⊙ horizontal)ᵀ.
        let left = khatri_rao(&self.out_factor, &self.in_factor);
        let right = khatri_rao(&self.vertical, &self.horizontal);
        let full = left.dot(&right.t());
        Array4::from_shape_vec((t, s, h, w), full.iter().map(|&v| v as f32).collect())
            .expect("sizes match")
    }
}

/// Row `(i, j)` of the result is `a[i] ∘ b[j]` (column-wise Kronecker product).
fn khatri_rao(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let r = a.ncols();
    let mut out = Array2::zeros((a.nrows() * b.nrows(), r));
    for (i, a_row) in a.rows().into_iter().enumerate() {
        for (j, b_row) in b.rows().into_iter().enumerate() {
            let mut row = out.row_mut(i * b.nrows() + j);
            Zip::from(&mut row)
                .and(&a_row)
                .and(&b_row)
                .for_each(|o, &x, &y| *o = x * y);
        }
    }
    out
}

/// Moore–Penrose inverse of a symmetric positive semi-definite matrix (the Hadamard product
/// of Gram matrices ALS solves with), robust when a factor is rank-deficient.
fn pinv_psd(v: &Array2<f64>) -> Result<Array2<f64>> {
    let eigen = {
        let _turn = fasterai_core::linalg::lapack_lock();
        v.eigh(UPLO::Lower)
    };
    let (values, vectors) = eigen.map_err(|e| {
        DecomposeError::Core(fasterai_core::CoreError::InvalidLayer {
            path: "<cp-als>".into(),
            reason: format!("LAPACK eigendecomposition failed: {e}"),
        })
    })?;
    let largest = values.iter().fold(0.0f64, |m, &x| m.max(x.abs()));
    let cutoff = largest * 1e-12 * v.nrows() as f64;
    let scaled = Array2::from_shape_fn(vectors.dim(), |(i, j)| {
        let l = values[j];
        if l > cutoff { vectors[[i, j]] / l } else { 0.0 }
    });
    Ok(scaled.dot(&vectors.t()))
}

fn gram(a: &Array2<f64>) -> Array2<f64> {
    a.t().dot(a)
}

/// `w` with its axes permuted to `order`, as a matrix `[first three sizes, last size]`.
fn matricize(w: &Array4<f64>, order: [usize; 4]) -> Array2<f64> {
    let p = w.view().permuted_axes(order);
    let cols = p.shape()[3];
    let rows = p.len() / cols;
    Array2::from_shape_vec((rows, cols), p.iter().copied().collect()).expect("sizes match")
}

/// `Σ_{x, y} z[n, x, y, r] · f[x, r] · g[y, r]` for `z` viewed as `[n, |f|, |g|, R]`.
fn contract_two(z: &Array2<f64>, n: usize, f: &Array2<f64>, g: &Array2<f64>) -> Array2<f64> {
    let fg = khatri_rao(f, g); // [|f|·|g|, R]
    let z = z
        .view()
        .into_shape_with_order((n, fg.nrows(), fg.ncols()))
        .expect("sizes match");
    let mut out = Array2::zeros((n, fg.ncols()));
    Zip::from(out.rows_mut())
        .and(z.outer_iter())
        .for_each(|mut o, block| {
            for (row, weights) in block.rows().into_iter().zip(fg.rows()) {
                Zip::from(&mut o)
                    .and(&row)
                    .and(&weights)
                    .for_each(|o, &x, &w| *o += x * w);
            }
        });
    out
}

/// SVD initialisation of one mode: the leading left singular vectors of its unfolding, with
/// uniform noise for the columns a mode smaller than the rank cannot provide.
fn initial_factor(unfolded: &Array2<f32>, rank: usize, rng: &mut StdRng) -> Result<Array2<f64>> {
    let size = unfolded.nrows();
    let k = rank.min(size).min(unfolded.ncols());
    let left =
        fasterai_core::linalg::truncated_svd(unfolded, k, fasterai_core::linalg::SvdMethod::Full)?
            .left;
    Ok(Array2::from_shape_fn((size, rank), |(i, j)| {
        if j < k {
            left[[i, j]] as f64
        } else {
            rng.random::<f64>()
        }
    }))
}

/// CP decomposition of `w` at `rank` by ALS from an SVD initialisation.
pub fn cp_als(w: &Array4<f32>, rank: usize, config: CpConfig) -> Result<Cp> {
    if rank == 0 {
        return Err(DecomposeError::InvalidRank(
            "CP rank must be at least 1".into(),
        ));
    }
    if config.max_iter == 0 || config.tol.is_nan() || config.tol < 0.0 {
        return Err(DecomposeError::InvalidRank(format!(
            "CP-ALS needs max_iter ≥ 1 and tol ≥ 0 (got {} and {})",
            config.max_iter, config.tol
        )));
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(fasterai_core::CoreError::InvalidLayer {
            path: "<cp-als>".into(),
            reason: "the weight contains NaN or infinite values".into(),
        }
        .into());
    }
    let [t, s, h, k] = [w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]];
    let w64 = w.mapv(f64::from);
    let norm2: f64 = w64.iter().map(|v| v * v).sum();
    if norm2 == 0.0 {
        return Err(DecomposeError::InvalidRank(
            "the weight is all zeros: it has no CP factors".into(),
        ));
    }

    let mut rng = StdRng::seed_from_u64(config.seed);
    // The out factor is solved first, so it needs no initial value.
    let mut a = Array2::<f64>::zeros((t, rank));
    let mut b = initial_factor(&unfold(w, 1), rank, &mut rng)?;
    let mut c = initial_factor(&unfold(w, 2), rank, &mut rng)?;
    let mut d = initial_factor(&unfold(w, 3), rank, &mut rng)?;

    let w_by_in = matricize(&w64, [0, 2, 3, 1]); // [(t, i, j), s]
    let w_by_out = matricize(&w64, [1, 2, 3, 0]); // [(s, i, j), t]
    let mut errors = Vec::new();
    for _ in 0..config.max_iter {
        let (gb, gc, gd) = (gram(&b), gram(&c), gram(&d));
        let y = w_by_in.dot(&b); // [(t, i, j), R]
        a = contract_two(&y, t, &c, &d).dot(&pinv_psd(&(&gb * &gc * &gd))?);
        let ga = gram(&a);

        let z = w_by_out.dot(&a); // [(s, i, j), R]
        b = contract_two(&z, s, &c, &d).dot(&pinv_psd(&(&ga * &gc * &gd))?);
        let gb = gram(&b);

        // The kh and kw updates reuse z: sum it over s (weighted by b) first.
        let zb = weighted_sum_over_first(&z, s, &b); // [(i, j), R]
        let zb = zb.into_shape_with_order((h, k, rank)).expect("sizes match");
        let mttkrp_c = Array2::from_shape_fn((h, rank), |(i, r)| {
            (0..k).map(|j| zb[[i, j, r]] * d[[j, r]]).sum::<f64>()
        });
        c = mttkrp_c.dot(&pinv_psd(&(&ga * &gb * &gd))?);
        let gc = gram(&c);
        let mttkrp_d = Array2::from_shape_fn((k, rank), |(j, r)| {
            (0..h).map(|i| zb[[i, j, r]] * c[[i, r]]).sum::<f64>()
        });
        d = mttkrp_d.dot(&pinv_psd(&(&ga * &gb * &gc))?);
        let gd = gram(&d);

        // ‖W − Ŵ‖² = ‖W‖² − 2⟨W, Ŵ⟩ + ‖Ŵ‖², both terms from quantities already at hand.
        let inner: f64 = (&mttkrp_d * &d).sum();
        let model2: f64 = (&ga * &gb * &gc * &gd).sum();
        let error = ((norm2 - 2.0 * inner + model2).max(0.0) / norm2).sqrt();
        let previous = errors.last().copied();
        errors.push(error);
        if previous.is_some_and(|p: f64| (p - error).abs() < config.tol) {
            break;
        }
    }
    Ok(Cp {
        out_factor: a,
        in_factor: b,
        vertical: c,
        horizontal: d,
        errors,
    })
}

/// `Σ_s z[s, x, r] · f[s, r]` for `z` viewed as `[n, rest, R]`.
fn weighted_sum_over_first(z: &Array2<f64>, n: usize, f: &Array2<f64>) -> Array2<f64> {
    let r = z.ncols();
    let z = z
        .view()
        .into_shape_with_order((n, z.nrows() / n, r))
        .expect("sizes match");
    let mut out = Array2::zeros((z.shape()[1], r));
    for (block, weights) in z.outer_iter().zip(f.rows()) {
        Zip::from(out.rows_mut())
            .and(block.rows())
            .for_each(|mut o, row| {
                Zip::from(&mut o)
                    .and(&row)
                    .and(&weights)
                    .for_each(|o, &x, &w| *o += x * w);
            });
    }
    out
}
