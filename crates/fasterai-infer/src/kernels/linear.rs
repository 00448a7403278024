//! `Linear` layers: `y = act(x · W + b)` for `x` of `[rows, in]`, `W` of `[in, out]` (Burn's
//! layout, read in place).
//!
//! For one row, gemm takes a matrix-vector path on one thread: VGG16's 25088×4096 classifier
//! weight (412 MB) would be read by one core. The output columns are then split into one slice
//! per thread (views of the weight, no copy).

use burn::nn::Linear;
use rayon::prelude::*;

use super::eltwise::{Act, PAR_MIN};
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
        Self::from_parts(
            host_values(layer.weight.val()),
            layer.bias.as_ref().map(|b| host_values(b.val())),
            [inputs, outputs],
            act,
        )
    }

    /// From a `[in, out]` weight and an `[out]` bias.
    pub fn from_parts(
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        [inputs, outputs]: [usize; 2],
        act: Act,
    ) -> Self {
        assert_eq!(weight.len(), inputs * outputs, "a [in, out] weight");
        assert!(bias.as_ref().is_none_or(|b| b.len() == outputs));
        Self {
            weight,
            bias,
            inputs,
            outputs,
            act,
        }
    }

    pub fn inputs(&self) -> usize {
        self.inputs
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
                let b = Mat::rows(&self.weight[p * width..], k, cols, n);
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
        let finish = |row: &mut [f32]| {
            if let Some(b) = &self.bias {
                row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
            self.act.apply_slice(row);
        };
        if y.len() < PAR_MIN {
            y.chunks_mut(n.max(1)).for_each(finish);
        } else {
            y.par_chunks_mut(n.max(1)).for_each(finish);
        }
    }
}
