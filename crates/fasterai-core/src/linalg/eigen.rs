//! Symmetric eigendecomposition through LAPACK's `ssyevr` (MRRR), which `ndarray-linalg` does
//! not wrap (its `Eigh` uses the QR-iteration `ssyev`, several times slower on 4096×4096).
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
    let (jobz, range, uplo) = (b'V' as _, b'A' as _, b'L' as _);
    let (vl, vu, il, iu, abstol) = (0.0f32, 0.0f32, 0 as c_int, 0 as c_int, 0.0f32);
    let mut found: c_int = 0;
    let mut values = vec![0f32; n];
    let mut vectors = vec![0f32; n * n];
    let mut support = vec![0 as c_int; 2 * n];
    let mut info: c_int = 0;

    // Workspace query, then the real call.
    let mut work_size = 0f32;
    let mut iwork_size: c_int = 0;
    let mut call =
        |work: &mut [f32], lwork: c_int, iwork: &mut [c_int], liwork: c_int, info: &mut c_int| {
            // SAFETY: every pointer refers to a live buffer of the size LAPACK documents for
            // ssyevr with JOBZ='V', RANGE='A': A and Z are n×n, W is n, ISUPPZ is 2n, and WORK/IWORK
            // hold at least LWORK/LIWORK elements (1 element for the query call with -1).
            unsafe {
                lapack_sys::ssyevr_(
                    &jobz,
                    &range,
                    &uplo,
                    &n_c,
                    matrix.as_mut_ptr(),
                    &n_c,
                    &vl,
                    &vu,
                    &il,
                    &iu,
                    &abstol,
                    &mut found,
                    values.as_mut_ptr(),
                    vectors.as_mut_ptr(),
                    &n_c,
                    support.as_mut_ptr(),
                    work.as_mut_ptr(),
                    &lwork,
                    iwork.as_mut_ptr(),
                    &liwork,
                    info,
                );
            }
        };
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
            reason: format!("ssyevr query failed ({info})"),
        });
    }
    let lwork = work_size as usize + 1;
    let liwork = iwork_size as usize;
    let mut work = vec![0f32; lwork];
    let mut iwork = vec![0 as c_int; liwork];
    call(
        &mut work,
        lwork as c_int,
        &mut iwork,
        liwork as c_int,
        &mut info,
    );
    if info != 0 || found as usize != n {
        return Err(CoreError::InvalidLayer {
            path: "<linalg>".into(),
            reason: format!("ssyevr did not converge (info {info}, {found} of {n} eigenvalues)"),
        });
    }
    // Z is column-major n×n: column j (eigenvector j) is vectors[j*n .. (j+1)*n].
    let z = Array2::from_shape_vec((n, n), vectors)
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
