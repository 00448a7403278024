//! Values on the host: `f32` buffers with their shapes, and the pool that recycles them.

use burn::tensor::{Device, Tensor, TensorData};
use fasterai_core::graph::Activation;
use fasterai_core::linalg::host_values;

/// A row-major value with its full shape (batch first).
pub(crate) struct Value {
    pub data: Vec<f32>,
    pub dims: Vec<usize>,
}

impl Value {
    pub fn from_activation(x: Activation) -> Self {
        let dims = x.dims();
        let data = match x {
            Activation::Spatial(t) => host_values(t),
            Activation::Tokens(t) => host_values(t),
            Activation::Flat(t) => host_values(t),
        };
        Self { data, dims }
    }

    /// The value as the graph's activation of its rank, on `device`.
    pub fn into_activation(self, device: &Device) -> Activation {
        let d = &self.dims;
        match d.len() {
            4 => Activation::Spatial(Tensor::from_data(
                TensorData::new(self.data, [d[0], d[1], d[2], d[3]]),
                device,
            )),
            3 => Activation::Tokens(Tensor::from_data(
                TensorData::new(self.data, [d[0], d[1], d[2]]),
                device,
            )),
            2 => Activation::Flat(Tensor::from_data(
                TensorData::new(self.data, [d[0], d[1]]),
                device,
            )),
            n => unreachable!("the graph's values have rank 2 to 4, not {n}"),
        }
    }

    /// `[N, C, H·W…]`: batch, channels and the size of one channel's plane.
    pub fn planes(&self) -> (usize, usize, usize) {
        let d = &self.dims;
        (
            d[0],
            d.get(1).copied().unwrap_or(1),
            d.iter().skip(2).product(),
        )
    }

    /// `[H, W]` of an image batch.
    pub fn hw(&self) -> [usize; 2] {
        [self.dims[2], self.dims[3]]
    }

    pub fn dims4(&self) -> [usize; 4] {
        [self.dims[0], self.dims[1], self.dims[2], self.dims[3]]
    }
}

/// Buffers freed by earlier values and calls, handed out again: after the first call a forward
/// allocates no activation memory (large allocations would otherwise be fresh pages, zeroed by
/// the kernel, on every call).
#[derive(Default)]
pub(crate) struct Pool {
    free: Vec<Vec<f32>>,
    /// The kernels' scratch (im2col columns, Winograd tiles), kept whole between steps: taken
    /// from `free` it would often be a small buffer, grown again by fresh pages on every call.
    scratch: Vec<f32>,
}

impl Pool {
    /// A buffer of `len` elements whose contents are unspecified (kernels write all of it).
    pub fn take(&mut self, len: usize) -> Vec<f32> {
        // The smallest free buffer that holds `len`; a new one when none does.
        let fitting = (0..self.free.len())
            .filter(|&i| self.free[i].capacity() >= len)
            .min_by_key(|&i| self.free[i].capacity());
        let mut buf = match fitting {
            Some(i) => self.free.swap_remove(i),
            None => Vec::new(),
        };
        buf.truncate(len);
        buf.resize(len, 0.0);
        buf
    }

    /// The scratch buffer, as long as its last use left it.
    pub fn take_scratch(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.scratch)
    }

    pub fn keep_scratch(&mut self, buf: Vec<f32>) {
        self.scratch = buf;
    }

    pub fn give(&mut self, buf: Vec<f32>) {
        if buf.capacity() > 0 {
            self.free.push(buf);
        }
    }
}
