//! Host linear algebra for factorising weights: truncated SVD through LAPACK (OpenBLAS via
//! `ndarray-linalg`): full divide-and-conquer SVD, or an eigen path through the smaller Gram matrix.
//!
//! Weights come off the device as `ndarray` arrays in PyTorch layout (`[out, in]`), are
//! factorised on the host, and the factors go back as Burn tensors.

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array2, Axis, s};
use ndarray_linalg::{JobSvd, SVDDC};
use rayon::prelude::*;

mod eigen;
pub use eigen::symmetric_eigen;

use crate::error::{CoreError, Result};

/// A rank-`k` factorisation `A ≈ left · right` with `left = U_k` (orthonormal columns, `m×k`)
/// and `right = Σ_k V_kᵀ` (`k×n`): fasterai's layout, the singular values go to the right factor.
#[derive(Debug, Clone)]
pub struct LowRank {
    /// `U_k`, `m×k`.
    pub left: Array2<f32>,
    /// `Σ_k V_kᵀ`, `k×n`.
    pub right: Array2<f32>,
    /// All singular values of `A`, descending (`min(m, n)` of them).
    pub singular_values: Vec<f64>,
    /// `‖A − left·right‖_F / ‖A‖_F`, from `‖A‖² − ‖right‖²` (exact in exact arithmetic since
    /// `left` has orthonormal columns): accurate to ~1e-6 relative at errors above 0.01, and to
    /// about 3e-4 absolute near zero (float32 factors).
    pub relative_error: f64,
}

/// How to compute a truncated SVD.
///
/// Measured on 4096×25088 (`examples/svd_speed.rs`, BENCHMARKS.md): `Full` 24 s, `Gram` 5–7 s.
/// The Gram path squares the condition number in float32, so it is exact only while the
/// discarded tail stands well above float32 rounding of the largest eigenvalue; `Auto` checks
/// that on the spectrum it computed and falls back to `Full` when it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SvdMethod {
    /// Full SVD by divide and conquer (LAPACK `gesdd`), then truncation. The reference.
    Full,
    /// Divide-and-conquer eigendecomposition (LAPACK `ssyevd`) of the smaller Gram matrix
    /// `A·Aᵀ` (or `Aᵀ·A`), then one product for the other factor. Not randomised.
    Gram,
    /// `Gram`, redone with `Full` when the spectrum shows the Gram path could lose accuracy.
    #[default]
    Auto,
}

/// Whether the Gram path's rank-`k` truncation is as good as the full SVD's: the discarded
/// energy must exceed float32 rounding of the eigenvalues (≈ n·ε·λ₁ for the n discarded ones)
/// by a wide margin (10³), or nothing may be discarded.
fn gram_is_accurate(singular_values: &[f64], k: usize) -> bool {
    let discarded = singular_values.len().saturating_sub(k);
    if discarded == 0 {
        return true;
    }
    let largest = singular_values.first().map_or(0.0, |s| s * s);
    let tail: f64 = singular_values[k..].iter().map(|s| s * s).sum();
    tail >= 1e3 * discarded as f64 * f32::EPSILON as f64 * largest
}

/// The values of a Burn tensor on the host, as float32, in row-major order (no copy on flex
/// when nothing else holds the tensor, as with a layer's output).
pub fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float32 after convert")
}

/// [`host_values`] of a tensor that is also held elsewhere (a parameter's value): flex copies
/// such a buffer twice in `into_data` (to bytes, then to aligned memory), but a slice of it
/// once, so a large one is read out slice by slice: one pass over fresh memory, not two.
pub fn shared_host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    const SLICE: usize = 1 << 20;
    let n = t.shape().num_elements();
    if n <= SLICE || !crate::device::on_host(&t.device()) {
        return host_values(t);
    }
    let flat = t.reshape([n]);
    let mut values = Vec::with_capacity(n);
    for first in (0..n).step_by(SLICE) {
        let range = first..(first + SLICE).min(n);
        let slice = flat.clone().slice([range]);
        values.extend_from_slice(&host_values(slice));
    }
    values
}

/// `band` holds rows `first..` of a row-major `[rows, cols]` matrix; writes them into
/// `out`, the matrix transposed (`[cols, rows]`), on every core.
pub fn transpose_rows_into(band: &[f32], first: usize, out: &mut [f32], rows: usize, cols: usize) {
    // A task fills 16 output rows: 16 band columns, one cache line of each band row, so the
    // lines it reads are reused from L1 across its rows.
    const TILE: usize = 16;
    let height = band.len() / cols.max(1);
    out.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(task, block)| {
            let c0 = task * TILE;
            for (dc, out_row) in block.chunks_exact_mut(rows).enumerate() {
                let column = c0 + dc;
                for (r, slot) in out_row[first..first + height].iter_mut().enumerate() {
                    *slot = band[r * cols + column];
                }
            }
        });
}

/// A Burn matrix as a host array.
pub fn to_array(t: Tensor<2>) -> Array2<f32> {
    let [m, n] = t.dims();
    Array2::from_shape_vec((m, n), host_values(t)).expect("shape matches data")
}

/// A host array as a Burn matrix on `device`.
pub fn from_array(a: &Array2<f32>, device: &Device) -> Tensor<2> {
    let (m, n) = a.dim();
    let data: Vec<f32> = a.iter().copied().collect();
    Tensor::from_data(TensorData::new(data, [m, n]), device)
}

fn check_finite(a: &Array2<f32>, what: &str) -> Result<()> {
    if a.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(CoreError::InvalidLayer {
            path: what.into(),
            reason: "the weight contains NaN or infinite values".into(),
        })
    }
}

/// Held around every LAPACK call. OpenBLAS 0.3.21 (Debian 12) is not safe when several
/// threads call LAPACK at once (`ssyevd` then fails to converge at random); each call already
/// uses every core, so taking turns costs nothing.
pub fn lapack_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lapack(err: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidLayer {
        path: "<linalg>".into(),
        reason: format!("LAPACK failed: {err}"),
    }
}

/// Singular values of `a`, descending.
pub fn singular_values(a: &Array2<f32>) -> Result<Vec<f64>> {
    check_finite(a, "<matrix>")?;
    let a = a.mapv(f64::from);
    let (_, s, _) = {
        let _turn = lapack_lock();
        a.svddc(JobSvd::None).map_err(lapack)?
    };
    Ok(s.to_vec())
}

/// Rank-`k` truncated SVD of `a` (`1 ≤ k ≤ min(m, n)`).
pub fn truncated_svd(a: &Array2<f32>, k: usize, method: SvdMethod) -> Result<LowRank> {
    truncated_svd_by(a, method, |_| Ok(k))
}

/// Truncated SVD whose rank `choose` picks from the full spectrum (descending singular values),
/// e.g. by energy kept. The spectrum costs nothing extra on either path.
pub fn truncated_svd_by(
    a: &Array2<f32>,
    method: SvdMethod,
    mut choose: impl FnMut(&[f64]) -> Result<usize>,
) -> Result<LowRank> {
    let (m, n) = a.dim();
    check_finite(a, "<matrix>")?;
    let mut choose_checked = |spectrum: &[f64]| -> Result<usize> {
        let k = choose(spectrum)?;
        if k == 0 || k > m.min(n) {
            return Err(CoreError::BadInput {
                got: vec![k],
                expected: format!("a rank between 1 and min({m}, {n}) = {}", m.min(n)),
            });
        }
        Ok(k)
    };
    let (left, right, singular_values) = match method {
        SvdMethod::Full => full(a, &mut choose_checked)?,
        SvdMethod::Gram => gram(a, &mut choose_checked)?,
        SvdMethod::Auto => {
            let (left, right, spectrum) = gram(a, &mut choose_checked)?;
            if gram_is_accurate(&spectrum, left.ncols()) {
                (left, right, spectrum)
            } else {
                full(a, &mut choose_checked)?
            }
        }
    };
    // ‖A − U_k U_kᵀ A‖² = ‖A‖² − ‖U_kᵀ A‖² because U_k has orthonormal columns.
    let total: f64 = a.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let kept: f64 = right.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let relative_error = if total > 0.0 {
        ((total - kept).max(0.0) / total).sqrt()
    } else {
        0.0
    };
    Ok(LowRank {
        left,
        right,
        singular_values,
        relative_error,
    })
}

type Choose<'a> = &'a mut dyn FnMut(&[f64]) -> Result<usize>;

fn full(a: &Array2<f32>, choose: Choose<'_>) -> Result<(Array2<f32>, Array2<f32>, Vec<f64>)> {
    let (u, s, vt) = {
        let _turn = lapack_lock();
        a.svddc(JobSvd::Some).map_err(lapack)?
    };
    let (u, vt) = (u.expect("requested U"), vt.expect("requested Vt"));
    let k = choose(&s.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
    let left = u.slice(s![.., ..k]).to_owned();
    let mut right = vt.slice(s![..k, ..]).to_owned();
    for (mut row, &sigma) in right.axis_iter_mut(Axis(0)).zip(s.iter()) {
        row *= sigma;
    }
    Ok((left, right, s.iter().map(|&v| v as f64).collect()))
}

/// `A·Aᵀ` for a wide `A`, computing only the upper block triangle (the Gram matrix is
/// symmetric), in row blocks so each product is one large BLAS call.
fn gram_matrix(a: &Array2<f32>) -> Array2<f32> {
    let m = a.nrows();
    let block = 1024.min(m);
    let mut g = Array2::<f32>::zeros((m, m));
    for i in (0..m).step_by(block) {
        let ai = a.slice(s![i..(i + block).min(m), ..]);
        for j in (i..m).step_by(block) {
            let aj = a.slice(s![j..(j + block).min(m), ..]);
            let gij = ai.dot(&aj.t());
            g.slice_mut(s![i..i + gij.nrows(), j..j + gij.ncols()])
                .assign(&gij);
            if i != j {
                g.slice_mut(s![j..j + gij.ncols(), i..i + gij.nrows()])
                    .assign(&gij.t());
            }
        }
    }
    g
}

fn gram(a: &Array2<f32>, choose: Choose<'_>) -> Result<(Array2<f32>, Array2<f32>, Vec<f64>)> {
    let (m, n) = a.dim();
    if m > n {
        // Tall: work on the wide Aᵀ. Its factors are left_t = V_k and right_t = V_kᵀAᵀ =
        // (U_k Σ_k)ᵀ, so A ≈ right_tᵀ · left_tᵀ; move Σ_k from the left factor to the right.
        let (left_t, right_t, s) = gram(&a.t().to_owned(), choose)?;
        let mut left = right_t.t().to_owned();
        let mut right = left_t.t().to_owned();
        for (j, &sigma) in s.iter().take(left.ncols()).enumerate() {
            let sigma = sigma as f32;
            if sigma > 0.0 {
                left.column_mut(j).mapv_inplace(|v| v / sigma);
                right.row_mut(j).mapv_inplace(|v| v * sigma);
            }
        }
        return Ok((left, right, s));
    }
    let g = gram_matrix(a);
    let (eigenvalues, eigenvectors) = symmetric_eigen(&g)?;
    // eigh returns ascending order; the top k are the last k columns.
    let order: Vec<usize> = (0..m).rev().collect();
    let singular_values: Vec<f64> = order
        .iter()
        .map(|&i| (eigenvalues[i].max(0.0) as f64).sqrt())
        .collect();
    let k = choose(&singular_values)?;
    let mut left = Array2::<f32>::zeros((m, k));
    for (j, &i) in order.iter().take(k).enumerate() {
        left.column_mut(j).assign(&eigenvectors.column(i));
    }
    let right = left.t().dot(a);
    Ok((left, right, singular_values))
}

/// Smallest `k` whose leading singular values keep at least `fraction` of the energy
/// `Σσ²` (`0 < fraction ≤ 1`).
pub fn rank_for_energy(singular_values: &[f64], fraction: f64) -> usize {
    let total: f64 = singular_values.iter().map(|s| s * s).sum();
    let mut kept = 0.0;
    for (i, s) in singular_values.iter().enumerate() {
        kept += s * s;
        if kept >= fraction * total * (1.0 - 1e-12) {
            return i + 1;
        }
    }
    singular_values.len()
}

/// `sqrt(Σ_{i≥k} σ_i²) / sqrt(Σ σ_i²)`: the relative error of the best rank-`k` approximation.
pub fn truncation_error(singular_values: &[f64], k: usize) -> f64 {
    let total: f64 = singular_values.iter().map(|s| s * s).sum();
    let tail: f64 = singular_values.iter().skip(k).map(|s| s * s).sum();
    if total > 0.0 {
        (tail / total).sqrt()
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// A deterministic pseudo-random matrix (no RNG dependency).
    fn matrix(m: usize, n: usize, seed: u64) -> Array2<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Array2::from_shape_fn((m, n), |_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
    }

    fn frobenius(a: &Array2<f32>) -> f64 {
        a.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn gram_path_equals_full_svd_wide_and_tall() {
        for (m, n) in [(40, 90), (90, 40), (33, 33)] {
            let a = matrix(m, n, 1);
            for k in [1, 10, m.min(n)] {
                let full = truncated_svd(&a, k, SvdMethod::Full).unwrap();
                let fast = truncated_svd(&a, k, SvdMethod::Gram).unwrap();
                let product_full = full.left.dot(&full.right);
                let product_fast = fast.left.dot(&fast.right);
                let diff = frobenius(&(&product_full - &product_fast)) / frobenius(&a);
                assert!(
                    diff < 1e-4,
                    "{m}x{n} k={k}: factor products differ by {diff:e}"
                );
                // The error equals the formula over the discarded singular values.
                let formula = truncation_error(&full.singular_values, k);
                let measured = frobenius(&(&a - &product_fast)) / frobenius(&a);
                // Near zero the error is known to about √ε(f32) ≈ 3e-4 in absolute terms.
                let close = (fast.relative_error - formula).abs() < 1e-4
                    || fast.relative_error.max(formula) < 1e-3;
                assert!(close, "{m}x{n} k={k}: {} vs {formula}", fast.relative_error);
                assert!((measured - formula).abs() < 1e-4, "{measured} vs {formula}");
            }
        }
    }

    #[test]
    fn auto_is_exact_when_the_tail_is_tiny() {
        // Rank 5 plus noise 1e-5: the discarded energy is below float32 rounding of the Gram
        // matrix, so Auto must not keep the Gram result.
        let a = matrix(60, 5, 5).dot(&matrix(5, 80, 6)) + matrix(60, 80, 7).mapv(|v| v * 1e-5);
        assert!(!gram_is_accurate(&singular_values(&a).unwrap(), 5));
        let full = truncated_svd(&a, 5, SvdMethod::Full).unwrap();
        let auto = truncated_svd(&a, 5, SvdMethod::Auto).unwrap();
        let residual = |r: &LowRank| frobenius(&(&a - &r.left.dot(&r.right)));
        let (e_full, e_auto) = (residual(&full), residual(&auto));
        assert!(
            (e_auto - e_full).abs() <= 1e-4 * e_full,
            "{e_auto} vs {e_full}"
        );
        // A matrix without a tiny tail keeps the Gram result.
        assert!(gram_is_accurate(
            &singular_values(&matrix(60, 80, 8)).unwrap(),
            5
        ));
    }

    #[test]
    fn rank_deficient_matrices_with_zero_rows() {
        // Rank 3 with zero rows, as pruning leaves them.
        let mut a = matrix(20, 3, 2).dot(&matrix(3, 50, 3));
        a.row_mut(4).fill(0.0);
        a.row_mut(11).fill(0.0);
        for method in [SvdMethod::Full, SvdMethod::Gram, SvdMethod::Auto] {
            let r = truncated_svd(&a, 3, method).unwrap();
            assert!(r.relative_error < 1e-3, "{method:?}: {}", r.relative_error);
            let recon = r.left.dot(&r.right);
            assert!(frobenius(&(&a - &recon)) / frobenius(&a) < 1e-3);
            // Asking for more than the rank is fine: the extra directions carry nothing.
            let r = truncated_svd(&a, 10, method).unwrap();
            assert!(r.left.dot(&r.right).iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn bad_ranks_and_values_are_errors() {
        let a = matrix(4, 6, 4);
        assert!(truncated_svd(&a, 0, SvdMethod::Gram).is_err());
        assert!(truncated_svd(&a, 5, SvdMethod::Gram).is_err());
        let mut b = a.clone();
        b[[1, 1]] = f32::NAN;
        let err = truncated_svd(&b, 2, SvdMethod::Gram).unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
    }

    #[test]
    fn energy_rule() {
        let s = [3.0, 2.0, 1.0, 0.0];
        assert_eq!(rank_for_energy(&s, 9.0 / 14.0), 1);
        assert_eq!(rank_for_energy(&s, 0.9), 2);
        assert_eq!(rank_for_energy(&s, 1.0), 3);
        assert!((truncation_error(&s, 1) - (5.0f64 / 14.0).sqrt()).abs() < 1e-12);
    }
}
