//! Pooling on NCHW host buffers: max pooling without the argmax indices Burn's CPU kernel
//! computes for a backward pass inference never runs, average pooling, and adaptive average
//! pooling (global pooling included).

use rayon::prelude::*;

use super::simd::sum_of;
use fasterai_core::graph::ops::{AvgPool2dSpec, MaxPool2dSpec};

/// Output extent of a pooling window sweep, PyTorch's rule (ceil mode: a last window that
/// starts inside the image or its left padding counts).
fn extent(size: usize, kernel: usize, stride: usize, pad: usize, ceil: bool) -> usize {
    let span = size + 2 * pad - kernel;
    let mut out = if ceil {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    if ceil && (out - 1) * stride >= size + pad {
        out -= 1;
    }
    out
}

/// Output `[H', W']` of a max pooling.
pub(crate) fn max_pool_dims(spec: &MaxPool2dSpec, [h, w]: [usize; 2]) -> [usize; 2] {
    let e = |i: usize, size| {
        extent(
            size,
            spec.kernel_size[i],
            spec.stride[i],
            spec.padding[i],
            spec.ceil_mode,
        )
    };
    [e(0, h), e(1, w)]
}

/// Whether [`max_pool`] computes this pooling (dilation 1: every model we build).
pub(crate) fn max_applies(spec: &MaxPool2dSpec) -> bool {
    spec.dilation == [1, 1]
}

/// Whether [`avg_pool`] computes this pooling (floor mode; ceil mode changes the divisor of the
/// last window, left to Burn).
pub(crate) fn avg_applies(spec: &AvgPool2dSpec) -> bool {
    !spec.ceil_mode
}

/// The larger of `a` and `b`, NaN if either is (as PyTorch's max pooling; `f32::max` would
/// drop the NaN).
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() { a } else { b }
}

/// Runs `f(plane_in, plane_out)` over every `[H, W]` plane, in parallel when the work is large.
fn planes(
    x: &[f32],
    y: &mut [f32],
    [h, w]: [usize; 2],
    out_plane: usize,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) {
    if out_plane == 0 || h * w == 0 {
        return;
    }
    if x.len() < 1 << 15 {
        super::simd::vectorize(|| {
            y.chunks_mut(out_plane)
                .zip(x.chunks(h * w))
                .for_each(|(o, p)| f(p, o))
        });
    } else {
        y.par_chunks_mut(out_plane)
            .zip(x.par_chunks(h * w))
            .for_each(|(o, p)| super::simd::dispatch(|| f(p, o)));
    }
}

/// `MaxPool2d` of `x` (planes of `[h, w]`) into `y`; padding counts as −∞.
pub(crate) fn max_pool(spec: &MaxPool2dSpec, x: &[f32], [h, w]: [usize; 2], y: &mut [f32]) {
    let ([kh, kw], [sh, sw], [ph, pw]) = (spec.kernel_size, spec.stride, spec.padding);
    let [oh, ow] = max_pool_dims(spec, [h, w]);
    planes(x, y, [h, w], oh * ow, |plane, out| {
        let mut rows = vec![f32::NEG_INFINITY; w];
        for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
            // Element-wise max of the window's rows, then of each window's columns.
            let top = (oy * sh).saturating_sub(ph).min(h - 1);
            let bottom = (oy * sh + kh - ph).min(h);
            rows.copy_from_slice(&plane[top * w..][..w]);
            for y in top + 1..bottom {
                let row = &plane[y * w..][..w];
                rows.iter_mut().zip(row).for_each(|(m, v)| *m = max(*m, *v));
            }
            for (ox, value) in out_row.iter_mut().enumerate() {
                let left = (ox * sw).saturating_sub(pw).min(w);
                let right = (ox * sw + kw - pw).min(w);
                *value = rows[left..right]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, v| max(m, *v));
            }
        }
    });
}

/// Output `[H', W']` of an average pooling.
pub(crate) fn avg_pool_dims(spec: &AvgPool2dSpec, [h, w]: [usize; 2]) -> [usize; 2] {
    let e = |i: usize, size| {
        extent(
            size,
            spec.kernel_size[i],
            spec.stride[i],
            spec.padding[i],
            false,
        )
    };
    [e(0, h), e(1, w)]
}

/// `AvgPool2d` (floor mode) of `x` into `y`: the window's sum over its size, padding included
/// or not as `count_include_pad` says.
pub(crate) fn avg_pool(spec: &AvgPool2dSpec, x: &[f32], [h, w]: [usize; 2], y: &mut [f32]) {
    let ([kh, kw], [sh, sw], [ph, pw]) = (spec.kernel_size, spec.stride, spec.padding);
    let [oh, ow] = avg_pool_dims(spec, [h, w]);
    planes(x, y, [h, w], oh * ow, |plane, out| {
        for oy in 0..oh {
            let (top, bottom) = ((oy * sh).saturating_sub(ph), (oy * sh + kh - ph).min(h));
            for ox in 0..ow {
                let (left, right) = ((ox * sw).saturating_sub(pw), (ox * sw + kw - pw).min(w));
                let sum: f32 = (top..bottom)
                    .map(|y| sum_of(&plane[y * w + left..y * w + right], |v| v))
                    .sum();
                let count = if spec.count_include_pad {
                    kh * kw
                } else {
                    (bottom - top) * (right - left)
                };
                out[oy * ow + ox] = sum / count as f32;
            }
        }
    });
}

/// `AdaptiveAvgPool2d(size)` of `x` into `y`: bin `i` of `n` averages rows
/// `⌊i·H/n⌋..⌈(i+1)·H/n⌉`, as PyTorch.
pub(crate) fn adaptive_avg_pool(size: [usize; 2], x: &[f32], [h, w]: [usize; 2], y: &mut [f32]) {
    let [oh, ow] = size;
    planes(x, y, [h, w], oh * ow, |plane, out| {
        for oy in 0..oh {
            let (top, bottom) = (oy * h / oh, ((oy + 1) * h).div_ceil(oh));
            for ox in 0..ow {
                let (left, right) = (ox * w / ow, ((ox + 1) * w).div_ceil(ow));
                let sum: f32 = (top..bottom)
                    .map(|y| sum_of(&plane[y * w + left..y * w + right], |v| v))
                    .sum();
                out[oy * ow + ox] = sum / ((bottom - top) * (right - left)) as f32;
            }
        }
    });
}
