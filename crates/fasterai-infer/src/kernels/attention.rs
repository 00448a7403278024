//! Multi-head self-attention: one product gives q, k and v of every token; then, per sample
//! and head on its own thread, the scores of a block of queries against the keys
//! (`[block, T]`, at most [`SCORE_FLOATS`]), their softmax and the weighted sum of values; then
//! the output projection. No more than one block of one head's scores exists per thread.

use fasterai_core::graph::ops::attention::MultiheadAttention;
use fasterai_core::linalg::{host_values, shared_host_values, transpose_rows_into};
use rayon::prelude::*;

use super::eltwise::Act;
use super::gemm::{Mat, matmul};
use super::linear::LinearKernel;
use super::norm::softmax_row;
use super::simd::vectorize;

/// Scores held at once by one thread: 64 Ki floats (256 KB) keep a block in the L2 cache and
/// take whole heads up to 256 tokens.
const SCORE_FLOATS: usize = 1 << 16;

thread_local! {
    /// Each thread's block of scores, kept between calls.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub(crate) struct AttentionKernel {
    /// Tokens to `[q | k | v]`, `[embed, 2·qk + v]`.
    in_proj: LinearKernel,
    /// Values of all heads to the output, `[v, embed]`.
    out_proj: LinearKernel,
    heads: usize,
    /// Width of q (and of k) over all heads.
    qk: usize,
    /// Width of v over all heads.
    v: usize,
    scale: f32,
    causal: bool,
}

impl AttentionKernel {
    pub fn new(layer: &MultiheadAttention) -> Self {
        let [rows, embed] = layer.in_proj_weight.dims();
        let [v, _] = layer.out_proj.weight.dims();
        // PyTorch's `[q + k + v, embed]` transposed once to the `[in, out]` the products read.
        let packed = shared_host_values(layer.in_proj_weight.val());
        let mut weight = vec![0f32; packed.len()];
        transpose_rows_into(&packed, 0, &mut weight, rows, embed);
        let bias = layer.in_proj_bias.as_ref().map(|b| host_values(b.val()));
        Self {
            in_proj: LinearKernel::from_parts(weight, bias, [embed, rows], Act::None),
            out_proj: LinearKernel::new(&layer.out_proj, Act::None),
            heads: layer.num_heads,
            qk: rows.saturating_sub(v) / 2, // the spec checks q = k and each width splits by heads
            v,
            scale: layer.scale as f32,
            causal: layer.causal,
        }
    }

    /// Width of the tokens read.
    pub fn inputs(&self) -> usize {
        self.in_proj.inputs()
    }

    /// Width of the tokens written.
    pub fn outputs(&self) -> usize {
        self.out_proj.outputs()
    }

    /// Lengths of the three scratch buffers [`run`](Self::run) takes for `[n, t]` tokens:
    /// q, k and v; each head's values; the heads side by side.
    pub fn scratch_lens(&self, [n, t]: [usize; 2]) -> [usize; 3] {
        let tokens = n * t;
        [
            tokens * (2 * self.qk + self.v),
            tokens * self.v,
            tokens * self.v,
        ]
    }

    /// `y` (`[n, t, outputs]`) from `x` (`[n, t, inputs]`), with scratch buffers of
    /// [`scratch_lens`](Self::scratch_lens).
    pub fn run(&self, x: &[f32], [n, t]: [usize; 2], y: &mut [f32], scratch: &mut [Vec<f32>; 3]) {
        let (h, qk, v) = (self.heads.max(1), self.qk, self.v);
        let (dq, dv) = (qk / h, v / h);
        let width = 2 * qk + v;
        let [qkv, by_head, context] = scratch;
        self.in_proj.run(x, n * t, qkv);
        // Each (sample, head) writes its own `[t, dv]` block: heads stay apart in memory.
        let block = (SCORE_FLOATS / t.max(1)).clamp(1, t.max(1));
        let qkv = &qkv[..];
        by_head
            .par_chunks_mut((t * dv).max(1))
            .enumerate()
            .for_each(|(task, out)| {
                let (s, head) = (task / h, task % h);
                let base = s * t * width;
                // Taken out of the cell, not borrowed (see conv's tasks).
                let mut scores = SCORES.take();
                scores.resize(block * t, 0.0);
                for start in (0..t).step_by(block) {
                    let rows = block.min(t - start);
                    // A causal block sees the keys up to its last query.
                    let keys = if self.causal { start + rows } else { t };
                    let at = |offset: usize| &qkv[base + offset..];
                    let q = Mat::rows(at(start * width + head * dq), rows, dq, width);
                    let k = Mat::rows(at(qk + head * dq), keys, dq, width);
                    let values = Mat::rows(at(2 * qk + head * dv), keys, dv, width);
                    let scores = &mut scores[..rows * keys];
                    matmul(scores, keys, q, k.t(), false, 1);
                    vectorize(|| {
                        for (r, row) in scores.chunks_mut(keys).enumerate() {
                            let live = if self.causal { start + r + 1 } else { keys };
                            softmax_row(row, self.scale, live);
                        }
                    });
                    let dst = &mut out[start * dv..(start + rows) * dv];
                    matmul(dst, dv, Mat::dense(scores, rows, keys), values, false, 1);
                }
                SCORES.set(scores);
            });
        // Heads side by side again, `[n, t, v]`, for the output projection.
        for (s, sample) in context.chunks_mut((t * v).max(1)).enumerate() {
            for (tok, row) in sample.chunks_mut(v.max(1)).enumerate() {
                for (head, dst) in row.chunks_mut(dv.max(1)).enumerate() {
                    dst.copy_from_slice(&by_head[((s * h + head) * t + tok) * dv..][..dv]);
                }
            }
        }
        self.out_proj.run(context, n * t, y);
    }
}
