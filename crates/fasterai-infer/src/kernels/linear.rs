//! `Linear` layers: `y = act(x · W + b)` for `x` of `[rows, in]`, `W` of `[in, out]` (Burn's
//! layout, read in place).
//!
//! For one row, gemm takes a matrix-vector path on one thread: VGG16's 25088×4096 classifier
//! weight (412 MB) would be read by one core. The output columns are then split into one slice
//! per thread (views of the weight, no copy).

use burn::nn::Linear;
use rayon::prelude::*;

use super::eltwise::Act;
use super::gemm::{Mat, matmul, threads_for};
use fasterai_core::linalg::shared_host_values as host_values;

/// Output columns below which a split does not pay for its dispatch.
const MIN_COLUMNS: usize = 256;

/// A `Linear` with its weight and bias on the host, and the activation after it.
pub(crate) struct LinearKernel {
    /// `[in, out]`.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    inputs: usize,
    outputs: usize,
    pub act: Act,
}

impl LinearKernel {
    pub fn new(layer: &Linear, act: Act) -> Self {
        let [inputs, outputs] = layer.weight.dims();
        Self {
            weight: host_values(layer.weight.val()),
            bias: layer.bias.as_ref().map(|b| host_values(b.val())),
            inputs,
            outputs,
            act,
        }
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// `y` (`[rows, out]`) from `x` (`[rows, in]`).
    pub fn run(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let (k, n) = (self.inputs, self.outputs);
        let parts = rayon::current_num_threads().min(n / MIN_COLUMNS);
        if rows == 1 && parts >= 2 {
            let width = n.div_ceil(parts);
            y.par_chunks_mut(width).enumerate().for_each(|(p, dst)| {
                let cols = dst.len();
                let b = Mat {
                    data: &self.weight[p * width..],
                    rows: k,
                    cols,
                    stride: n,
                };
                matmul(dst, cols, Mat::dense(x, 1, k), b, false, 1);
            });
        } else {
            let threads = threads_for(rows * k * n);
            matmul(
                y,
                n,
                Mat::dense(x, rows, k),
                Mat::dense(&self.weight, k, n),
                false,
                threads,
            );
        }
        let act = self.act;
        for row in y.chunks_mut(n.max(1)) {
            match &self.bias {
                Some(b) => row
                    .iter_mut()
                    .zip(b)
                    .for_each(|(v, b)| *v = act.apply(*v + b)),
                None => row.iter_mut().for_each(|v| *v = act.apply(*v)),
            }
        }
    }
}
