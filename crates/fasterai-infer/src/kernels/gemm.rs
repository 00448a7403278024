//! Matrix products through the `gemm` crate (the GEMM flex's matmul uses, with AVX2 and AVX-512
//! micro-kernels chosen at run time). Its entry point takes raw pointers; this module is the
//! engine's only `unsafe` code, and it checks every extent against the slices first.
#![allow(unsafe_code)]

use gemm::Parallelism;

/// A matrix view: element `(i, j)` at `data[i·stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::rows(data, rows, cols, cols)
    }

    /// `rows × cols`, row-major with rows `stride` apart.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            stride,
            col_stride: 1,
        }
    }

    /// The transpose of `self`, read in place.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            stride: self.col_stride,
            col_stride: self.stride,
            ..self
        }
    }
}

/// Whether `len` elements hold a `rows × cols` matrix whose last element is at
/// `(rows − 1)·stride + (cols − 1)·col_stride`.
fn fits(len: usize, rows: usize, cols: usize, stride: usize, col_stride: usize) -> bool {
    rows == 0
        || cols == 0
        || (rows - 1)
            .checked_mul(stride)
            .zip((cols - 1).checked_mul(col_stride))
            .and_then(|(a, b)| a.checked_add(b))
            .is_some_and(|last| last < len)
}

/// `dst = a · b` (`accumulate`: `dst += a · b`), `dst` being `a.rows × b.cols` with rows
/// `dst_stride` apart; `threads > 1` lets gemm split the product over rayon's pool.
///
/// # Panics
/// When the shapes do not chain or a view overruns its slice (a bug of the caller's).
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_stride: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert!(
        fits(a.data.len(), m, k, a.stride, a.col_stride),
        "lhs overruns its slice"
    );
    assert!(
        fits(b.data.len(), k, n, b.stride, b.col_stride),
        "rhs overruns its slice"
    );
    assert!(
        dst_stride >= n && fits(dst.len(), m, n, dst_stride, 1),
        "dst overruns its slice"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_stride)
                .take(m)
                .for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: `fits` checked that every (row, col) the product reads or writes lies inside its
    // slice (row < rows, col < cols, offset row·stride + col·col_stride < len); strides are
    // non-negative and fit in isize because the slices do. `dst` is a unique borrow, so it
    // aliases neither input, and `dst_stride ≥ n` keeps its own rows apart.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Threads worth using for a product of `macs` multiply-adds: one below about four million (the
/// wake-up and split of the pool cost more than they save: a ResNet-20's 2.4 M-MAC
/// convolutions ran 1.2-1.4× faster on one thread, in alternated runs at 2 threads), all of
/// rayon's above.
pub(crate) fn threads_for(macs: usize) -> usize {
    if macs < 1 << 22 {
        1
    } else {
        rayon::current_num_threads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn products_and_strided_views_equal_the_naive_product() {
        for (m, k, n, threads) in [
            (3, 5, 7, 1),
            (64, 300, 65, 2),
            (1, 17, 1000, 2),
            (4, 0, 3, 1),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32) - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32) - 5.0).collect();
            let want = naive(&a, &b, m, k, n);
            let mut c = vec![f32::NAN; m * n];
            matmul(
                &mut c,
                n,
                Mat::dense(&a, m, k),
                Mat::dense(&b, k, n),
                false,
                threads,
            );
            assert_eq!(c, want, "{m}x{k}x{n}");
            // Accumulating onto ones, and the right half of b as a strided view.
            let mut c = vec![1f32; m * n];
            matmul(
                &mut c,
                n,
                Mat::dense(&a, m, k),
                Mat::dense(&b, k, n),
                true,
                threads,
            );
            assert!(c.iter().zip(&want).all(|(x, y)| *x == y + 1.0));
            if n >= 2 && k > 0 {
                let half = n / 2;
                let view = Mat::rows(&b[half..], k, n - half, n);
                let mut c = vec![0f32; m * (n - half)];
                matmul(&mut c, n - half, Mat::dense(&a, m, k), view, false, 1);
                for i in 0..m {
                    assert_eq!(
                        c[i * (n - half)..][..n - half],
                        want[i * n + half..][..n - half]
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "overruns")]
    fn a_view_past_its_slice_is_refused() {
        let a = [0f32; 5];
        let mut c = [0f32; 4];
        matmul(
            &mut c,
            2,
            Mat::dense(&a, 2, 3),
            Mat::dense(&[0.0; 6], 3, 2),
            false,
            1,
        );
    }
}
