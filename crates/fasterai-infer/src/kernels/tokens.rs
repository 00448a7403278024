//! The token ops of a transformer: image to tokens, the class token and position embedding,
//! and the readouts (one token, the mean). Each is one copy or sum over the value.

use fasterai_core::linalg::host_values;

/// One token op, with its learned value where it has one.
pub(crate) enum TokenOp {
    /// `[N, C, H, W]` to `[N, H·W, C]`.
    FromImage,
    /// A learned `[D]` token put in front of each sample's sequence.
    Prepend(Vec<f32>),
    /// A learned `[T, D]` added to each sample.
    AddPositions(Vec<f32>),
    /// Token `index` of each sample, `[N, D]`.
    Select(usize),
    /// The mean over tokens, `[N, D]`.
    Mean,
}

impl TokenOp {
    pub fn prepend(value: burn::tensor::Tensor<3>) -> Self {
        TokenOp::Prepend(host_values(value))
    }

    pub fn add_positions(value: burn::tensor::Tensor<3>) -> Self {
        TokenOp::AddPositions(host_values(value))
    }

    /// The output dims for input dims `x`, or `None` when this op cannot take them (the
    /// graph's own op then runs and reports the error).
    pub fn out_dims(&self, x: &[usize]) -> Option<Vec<usize>> {
        match (self, x) {
            (TokenOp::FromImage, &[n, c, h, w]) => Some(vec![n, h * w, c]),
            (TokenOp::Prepend(v), &[n, t, d]) if v.len() == d => Some(vec![n, t + 1, d]),
            (TokenOp::AddPositions(v), &[_, t, d]) if v.len() == t * d => Some(x.to_vec()),
            (TokenOp::Select(i), &[n, t, d]) if *i < t => Some(vec![n, d]),
            (TokenOp::Mean, &[n, t, d]) if t > 0 => Some(vec![n, d]),
            _ => None,
        }
    }

    /// `y` from `x` of dims `dims` (checked by [`out_dims`](Self::out_dims)).
    pub fn run(&self, x: &[f32], dims: &[usize], y: &mut [f32]) {
        match *self {
            TokenOp::FromImage => {
                let [c, hw] = [dims[1], dims[2] * dims[3]];
                for (src, dst) in x.chunks(c * hw).zip(y.chunks_mut(c * hw)) {
                    for (ch, plane) in src.chunks(hw).enumerate() {
                        for (p, v) in plane.iter().enumerate() {
                            dst[p * c + ch] = *v;
                        }
                    }
                }
            }
            TokenOp::Prepend(ref token) => {
                let [t, d] = [dims[1], dims[2]];
                for (src, dst) in x.chunks(t * d).zip(y.chunks_mut((t + 1) * d)) {
                    dst[..d].copy_from_slice(token);
                    dst[d..].copy_from_slice(src);
                }
            }
            TokenOp::AddPositions(ref positions) => {
                for (src, dst) in x.chunks(positions.len()).zip(y.chunks_mut(positions.len())) {
                    for ((y, x), p) in dst.iter_mut().zip(src).zip(positions) {
                        *y = x + p;
                    }
                }
            }
            TokenOp::Select(index) => {
                let [t, d] = [dims[1], dims[2]];
                for (src, dst) in x.chunks(t * d).zip(y.chunks_mut(d)) {
                    dst.copy_from_slice(&src[index * d..][..d]);
                }
            }
            TokenOp::Mean => {
                let [t, d] = [dims[1], dims[2]];
                for (src, dst) in x.chunks(t * d).zip(y.chunks_mut(d)) {
                    dst.fill(0.0);
                    for token in src.chunks(d) {
                        dst.iter_mut().zip(token).for_each(|(a, v)| *a += v);
                    }
                    dst.iter_mut().for_each(|a| *a /= t as f32);
                }
            }
        }
    }
}
