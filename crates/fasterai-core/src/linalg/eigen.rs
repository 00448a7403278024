//! Symmetric eigendecomposition through LAPACK's divide-and-conquer `ssyevd`, which
//! `ndarray-linalg` does not wrap (its `Eigh` uses the QR-iteration `ssyev`). On a 4096×4096
//! Gram matrix `ssyevd` takes 2.3 s here against 18.7 s for `ssyevr` (MRRR), whose clustered
//! tail eigenvalues send it to inverse iteration.
#![allow(unsafe_code)] // one FFI call into LAPACK, with buffers sized by LAPACK's own query

use std::os::raw::c_int;

use ndarray::Array2;

use crate::error::{CoreError, Result};

/// All eigenvalues (ascending) and eigenvectors (columns) of the symmetric `a` (`n×n`, only the
/// upper triangle in row-major order is read).
pub fn symmetric_eigen(a: &Array2<f32>) -> Result<(Vec<f32>, Array2<f32>)> {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "symmetric_eigen needs a square matrix");
    if n == 0 {
        return Ok((Vec::new(), Array2::zeros((0, 0))));
    }
    // Row-major upper triangle = column-major lower triangle: pass uplo = 'L'.
    let mut matrix: Vec<f32> = a.iter().copied().collect();
    let n_c = n as c_int;
    let (jobz, uplo) = (b'V' as _, b'L' as _);
    let mut values = vec![0f32; n];
    let mut info: c_int = 0;
    let _turn = super::lapack_lock();
    let mut call =
        |work: &mut [f32], lwork: c_int, iwork: &mut [c_int], liwork: c_int, info: &mut c_int| {
            // SAFETY: `matrix` is n×n, `values` n long; `work`/`iwork` hold at least `lwork`/
            // `liwork` elements (or one, for the size query with -1).
            unsafe {
                lapack_sys::ssyevd_(
                    &jobz,
                    &uplo,
                    &n_c,
                    matrix.as_mut_ptr(),
                    &n_c,
                    values.as_mut_ptr(),
                    work.as_mut_ptr(),
                    &lwork,
                    iwork.as_mut_ptr(),
                    &liwork,
                    info,
                );
            }
        };
    let (mut work_size, mut iwork_size) = (0f32, 0 as c_int);
    call(
        std::slice::from_mut(&mut work_size),
        -1,
        std::slice::from_mut(&mut iwork_size),
        -1,
        &mut info,
    );
    if info != 0 {
        return Err(CoreError::InvalidLayer {
            path: "<linalg>".into(),
            reason: format!("ssyevd query failed ({info})"),
        });
    }
    let (lwork, liwork) = (work_size as usize + 1, iwork_size as usize);
    let mut work = vec![0f32; lwork];
    let mut iwork = vec![0 as c_int; liwork];
    call(
        &mut work,
        lwork as c_int,
        &mut iwork,
        liwork as c_int,
        &mut info,
    );
    if info != 0 {
        return Err(CoreError::InvalidLayer {
            path: "<linalg>".into(),
            reason: format!("ssyevd did not converge (info {info})"),
        });
    }
    // Column-major eigenvectors: the transpose of the row-major buffer.
    let z = Array2::from_shape_vec((n, n), matrix)
        .expect("n×n")
        .reversed_axes();
    Ok((values, z))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconstructs_a_symmetric_matrix() {
        let b = Array2::from_shape_fn((6, 4), |(i, j)| ((i * 7 + j * 3) % 5) as f32 - 2.0);
        let a = b.dot(&b.t()); // symmetric PSD, rank 4
        let (values, z) = symmetric_eigen(&a).unwrap();
        assert!(
            values.windows(2).all(|w| w[0] <= w[1]),
            "ascending: {values:?}"
        );
        assert!(
            values[0].abs() < 1e-4 && values[1].abs() < 1e-4,
            "two zero eigenvalues: {values:?}"
        );
        let recon = z
            .dot(&Array2::from_diag(&ndarray::Array1::from(values)))
            .dot(&z.t());
        let err = (&recon - &a).iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(err < 1e-3, "max error {err}");
        let eye = z.t().dot(&z);
        let off = (&eye - &Array2::<f32>::eye(6))
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        assert!(off < 1e-5, "eigenvectors orthonormal to {off}");
    }
}
