//! Max pooling on host memory: one pass per plane, without the argmax indices Burn's CPU
//! kernel computes for a backward pass that inference never runs.

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::graph::ops::MaxPool2dSpec;
use crate::linalg::host_values;

/// Whether [`max_pool`] computes this pooling (dilation 1, floor mode: every model we build).
pub(crate) fn applies(spec: &MaxPool2dSpec) -> bool {
    spec.dilation == [1, 1] && !spec.ceil_mode
}

/// The larger of `a` and `b`, NaN if either is (as PyTorch's max pooling; `f32::max` would
/// drop the NaN).
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() { a } else { b }
}

/// `MaxPool2d` of `x` (`[N, C, H, W]`); padding counts as −∞.
pub(crate) fn max_pool(spec: &MaxPool2dSpec, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    let [n, c, h, w] = x.dims();
    let ([kh, kw], [sh, sw], [ph, pw]) = (spec.kernel_size, spec.stride, spec.padding);
    let (oh, ow) = ((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1);
    let x = host_values(x);
    let mut y = vec![0f32; n * c * oh * ow];
    let arch = pulp::Arch::new();
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(out, plane)| {
            arch.dispatch(|| {
                let mut rows = vec![f32::NEG_INFINITY; w];
                for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
                    // Element-wise max of the window's rows, then of each window's columns.
                    let top = (oy * sh).saturating_sub(ph);
                    let bottom = (oy * sh + kh - ph).min(h);
                    rows.copy_from_slice(&plane[top * w..][..w]);
                    for y in top + 1..bottom {
                        let row = &plane[y * w..][..w];
                        rows.iter_mut().zip(row).for_each(|(m, v)| *m = max(*m, *v));
                    }
                    for (ox, value) in out_row.iter_mut().enumerate() {
                        let left = (ox * sw).saturating_sub(pw);
                        let right = (ox * sw + kw - pw).min(w);
                        *value = rows[left..right]
                            .iter()
                            .fold(f32::NEG_INFINITY, |m, v| max(m, *v));
                    }
                }
            })
        });
    Tensor::from_data(TensorData::new(y, [n, c, oh, ow]), &device)
}
