//! The engine's kernels, one module per family; each computes on host `f32` buffers.

pub(crate) mod attention;
pub(crate) mod conv;
pub(crate) mod depthwise;
pub(crate) mod eltwise;
pub(crate) mod gate;
pub(crate) mod gemm;
pub(crate) mod linear;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod simd;
pub(crate) mod tokens;
pub(crate) mod winograd;
