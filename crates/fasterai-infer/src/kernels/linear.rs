//! `Linear` layers: `y = act(x · W + b)` for `x` of `[rows, in]`, `W` of `[in, out]` (Burn's
//! layout, read in place).
//!
//! For one row, gemm takes a matrix-vector path on one thread: VGG16's 25088×4096 classifier
//! weight (412 MB) would be read by one core. The output columns are then split into one slice
//! per thread (views of the weight, no copy).

use std::sync::{Arc, Mutex};

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

/// A `Linear` that reads an adaptive average pool's flattened output. When the pool enlarges its
/// input (VGG's 7×7 pool on the 1×1 map of a 32² image), each input pixel is copied into several
/// cells: the weight rows of those cells are summed, each times its share of its cell's average,
/// once per input size, and the product reads the input itself (VGG16 at 32²: a 25088-row
/// weight becomes 512 rows, 49× fewer bytes to read).
pub(crate) struct PooledLinear {
    /// The pool's output size.
    pub pool: [usize; 2],
    pub linear: LinearKernel,
    /// The folded kernels, by input `[channels, h, w]`.
    folded: Mutex<Vec<([usize; 3], Arc<LinearKernel>)>>,
}

impl PooledLinear {
    pub fn new(pool: [usize; 2], linear: LinearKernel) -> Self {
        Self {
            pool,
            linear,
            folded: Mutex::default(),
        }
    }

    /// The kernel that reads a `[channels, h, w]` input directly, when the pool enlarges it
    /// (made on first use), or `None` when pooling first reads less weight.
    pub fn folded_for(&self, [c, h, w]: [usize; 3]) -> Option<Arc<LinearKernel>> {
        let [oh, ow] = self.pool;
        if h * w >= oh * ow || c * oh * ow != self.linear.inputs {
            return None;
        }
        let mut folded = self.folded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, kernel)) = folded.iter().find(|(dims, _)| *dims == [c, h, w]) {
            return Some(kernel.clone());
        }
        let kernel = Arc::new(self.fold([c, h, w]));
        folded.push(([c, h, w], kernel.clone()));
        Some(kernel)
    }

    /// Row `(ch, iy, ix)` of the folded weight: Σ over the cells whose window holds the pixel of
    /// the cell's weight row / the window's size (the windows as `adaptive_avg_pool` takes them).
    fn fold(&self, [c, h, w]: [usize; 3]) -> LinearKernel {
        let ([oh, ow], n) = (self.pool, self.linear.outputs);
        let mut weight = vec![0f32; c * h * w * n];
        super::simd::vectorize(|| {
            for ch in 0..c {
                for oy in 0..oh {
                    let rows = oy * h / oh..((oy + 1) * h).div_ceil(oh);
                    for ox in 0..ow {
                        let cols = ox * w / ow..((ox + 1) * w).div_ceil(ow);
                        let share = 1.0 / (rows.len() * cols.len()) as f32;
                        let cell = &self.linear.weight[((ch * oh + oy) * ow + ox) * n..][..n];
                        for iy in rows.clone() {
                            for ix in cols.clone() {
                                let row = &mut weight[((ch * h + iy) * w + ix) * n..][..n];
                                row.iter_mut().zip(cell).for_each(|(r, v)| *r += share * v);
                            }
                        }
                    }
                }
            }
        });
        LinearKernel::from_parts(
            weight,
            self.linear.bias.clone(),
            [c * h * w, n],
            self.linear.act,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::pool::adaptive_avg_pool;

    #[test]
    fn the_folded_weight_equals_pooling_then_the_product() {
        let (c, pool, n) = (3, [3, 4], 5);
        let inputs = c * pool[0] * pool[1];
        let weight: Vec<f32> = (0..inputs * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 / 10.0).collect();
        let linear =
            LinearKernel::from_parts(weight.clone(), Some(bias.clone()), [inputs, n], Act::None);
        let kernel = PooledLinear::new(pool, linear);
        assert!(
            kernel.folded_for([c, 4, 5]).is_none(),
            "4×5 is not enlarged by a 3×4 pool"
        );
        for [h, w] in [[1, 1], [2, 3], [1, 4]] {
            let x: Vec<f32> = (0..c * h * w).map(|i| (i as f32 * 0.7).sin()).collect();
            let mut pooled = vec![0f32; inputs];
            adaptive_avg_pool(pool, &x, [h, w], &mut pooled);
            let expected: Vec<f32> = (0..n)
                .map(|j| {
                    bias[j]
                        + (0..inputs)
                            .map(|i| pooled[i] * weight[i * n + j])
                            .sum::<f32>()
                })
                .collect();
            let folded = kernel.folded_for([c, h, w]).expect("enlarged");
            assert_eq!(folded.inputs(), c * h * w);
            let mut y = vec![0f32; n];
            folded.run(&x, 1, &mut y);
            for (a, b) in y.iter().zip(&expected) {
                assert!(
                    (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                    "{h}x{w}: {a} vs {b}"
                );
            }
            assert!(
                Arc::ptr_eq(&folded, &kernel.folded_for([c, h, w]).unwrap()),
                "made once"
            );
        }
    }
}
