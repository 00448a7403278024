//! Normalisations along a value's last axis, one row at a time while the row is in cache: a
//! layer norm (and a softmax) reads its input from memory once, where the graph's own op makes
//! one pass per tensor op (mean, centre, square, mean, root, scale, shift).

use fasterai_core::graph::ops::norm::LayerNorm;
use fasterai_core::linalg::host_values;
use rayon::prelude::*;

use super::eltwise::{PAR_MIN, exp};
use super::simd::{sum_of, vectorize};

/// Lanes of the maximum below: independent accumulators the compiler keeps in vector registers.
const LANES: usize = 16;

/// The largest `f(x)` of a row (NaN is skipped here; it reaches the output through `exp`).
#[inline(always)]
fn max_of(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if f(v) > m { f(v) } else { m });
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let v = f(v);
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter().fold(tail, |m, &v| if v > m { v } else { m })
}

/// Runs `f` on every row of `width` values of `xs`, rows split over the threads when there
/// are many values.
pub(crate) fn for_rows(xs: &mut [f32], width: usize, f: impl Fn(&mut [f32]) + Sync) {
    if width == 0 {
        return;
    }
    if xs.len() < PAR_MIN {
        vectorize(|| xs.chunks_mut(width).for_each(&f));
    } else {
        let rows = (PAR_MIN / 4).div_ceil(width);
        xs.par_chunks_mut(rows * width)
            .for_each(|block| vectorize(|| block.chunks_mut(width).for_each(&f)));
    }
}

/// A layer norm over the last axis: `(x − mean) / √(var + ε) · γ + β`, the variance biased.
pub(crate) struct LayerNormKernel {
    gamma: Option<Vec<f32>>,
    beta: Option<Vec<f32>>,
    features: usize,
    eps: f32,
}

impl LayerNormKernel {
    pub fn new(layer: &LayerNorm) -> Self {
        Self {
            gamma: layer.gamma.as_ref().map(|g| host_values(g.val())),
            beta: layer.beta.as_ref().map(|b| host_values(b.val())),
            features: layer.features,
            eps: layer.epsilon as f32,
        }
    }

    pub fn features(&self) -> usize {
        self.features
    }

    /// Normalises every row of `xs` in place.
    pub fn run(&self, xs: &mut [f32]) {
        for_rows(xs, self.features, |row| self.row(row));
    }

    #[inline(always)]
    fn row(&self, x: &mut [f32]) {
        let d = x.len() as f32;
        // Two passes over a row in cache: the centred sum of squares keeps the variance exact
        // where a one-pass Σx² − (Σx)² would cancel.
        let mean = sum_of(x, |v| v) / d;
        let var = sum_of(x, |v| (v - mean) * (v - mean)) / d;
        let inv = 1.0 / (var + self.eps).sqrt();
        match (&self.gamma, &self.beta) {
            (Some(g), Some(b)) => x
                .iter_mut()
                .zip(g.iter().zip(b))
                .for_each(|(v, (g, b))| *v = (*v - mean) * inv * g + b),
            (Some(g), None) => x
                .iter_mut()
                .zip(g)
                .for_each(|(v, g)| *v = (*v - mean) * inv * g),
            (None, Some(b)) => x
                .iter_mut()
                .zip(b)
                .for_each(|(v, b)| *v = (*v - mean) * inv + b),
            (None, None) => x.iter_mut().for_each(|v| *v = (*v - mean) * inv),
        }
    }
}

/// `softmax(scale · x)` of one row in place over its first `live` values; the rest (keys a
/// causal mask hides) become 0.
#[inline(always)]
pub(crate) fn softmax_row(x: &mut [f32], scale: f32, live: usize) {
    let (x, hidden) = x.split_at_mut(live);
    hidden.fill(0.0);
    let max = max_of(x, |v| v * scale);
    x.iter_mut().for_each(|v| *v = exp(*v * scale - max));
    let inv = 1.0 / sum_of(x, |v| v);
    x.iter_mut().for_each(|v| *v *= inv);
}

/// The softmax of every row of `width` values of `xs`, in place.
pub(crate) fn softmax_rows(xs: &mut [f32], width: usize) {
    for_rows(xs, width, |row| softmax_row(row, 1.0, row.len()));
}
