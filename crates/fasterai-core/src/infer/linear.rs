//! One-image `Linear` on several cores.
//!
//! For a single input row, flex's matmul takes gemm's matrix-vector path, which runs on one
//! thread: VGG16's 25088×4096 classifier weight (412 MB) is then read by one core. Splitting the
//! output columns into one slice per thread (views of the weight, no copy) reads it with all of
//! them.

use burn::nn::Linear;
use burn::tensor::Tensor;
use rayon::prelude::*;

/// Output columns below which a split does not pay for its dispatch.
const MIN_COLUMNS: usize = 256;

/// `x · W + b` for `x` of one row, the columns of `W` split across rayon's threads; any other
/// batch goes to Burn's `Linear`.
pub(crate) fn forward(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    let [rows, _] = x.dims();
    let weight = layer.weight.val();
    let [_, columns] = weight.dims();
    let parts = rayon::current_num_threads().min(columns / MIN_COLUMNS);
    if rows != 1 || parts < 2 {
        return layer.forward(x);
    }
    let width = columns.div_ceil(parts);
    let pieces: Vec<Tensor<2>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let range = p * width..((p + 1) * width).min(columns);
            x.clone()
                .matmul(weight.clone().slice([0..weight.dims()[0], range]))
        })
        .collect();
    let y = Tensor::cat(pieces, 1);
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze_dim(0),
        None => y,
    }
}
