//! # fasterai-infer
//!
//! The CPU inference engine: a [`Graph`](fasterai_core::graph::Graph) prepared once
//! ([`Inference`]) runs on host `f32` buffers with kernels of its own instead of one Burn op per
//! node. A user who only compresses models does not compile it.
//!
//! | module | what |
//! |---|---|
//! | [`Inference`] | the prepared graph: fusions, recycled buffers, per-shape path choice |
//! | `kernels::conv` | convolutions by GEMM (1×1 without im2col), Winograd F(4×4, 3×3) or a depthwise loop, with the batch norm's scale folded into the weights and `act(x + shift + residual)` in the output pass |
//! | `kernels::gemm` | the `gemm` crate's f32 GEMM (AVX2/AVX-512 chosen at run time); the crate's only `unsafe` |
//! | [`Isa`] | the instruction set the engine's own loops run with: the widest the CPU has, or the one `FASTERAI_ISA` names |
//! | `kernels::linear`, `pool`, `eltwise` | `Linear` (one-row products split over the cores), max/average/adaptive pooling, activations (GELU included), sums, gates, stand-alone batch norms |
//! | `kernels::attention`, `norm`, `tokens` | multi-head self-attention by blocks of one head's scores, layer norm and softmax by rows, a transformer's token ops |
//! | [`latency`] | timing: warm-up, synced runs, first call, median/min/max |
//!
//! What runs how:
//! - `Conv2d [→ BatchNorm2d] [→ Add] [→ ReLU | ReLU6 | SiLU | Sigmoid | Hardsigmoid |
//!   Hardswish]`, where each value has no other reader (and the sum's other term is computed
//!   before the convolution), is one convolution; `Linear [→ activation]` (GELU included) and
//!   `BatchNorm2d [→ activation]` likewise;
//! - attention, layer norms, softmax and token ops on host buffers;
//! - pooling, flatten, concatenation, sums and `[N, C, 1, 1]` gates (squeeze-and-excitation) on
//!   host buffers; dropout and stochastic depth pass their input on;
//! - every other node (fake quantization), and shapes a kernel does not take, as the graph's
//!   own layer on a Burn tensor made from the buffer.
//!
//! Each convolution offers one to three [`ConvPath`]s; [`PathChoice`] picks among them
//! (measured on the first input of each shape by default, and the whole prepared graph kept
//! only where it measured faster than the graph as built; `FASTERAI_CONV` forces one). Buffers
//! freed by a value are reused by later ones and by later calls.
//!
//! Results equal [`Graph::forward`](fasterai_core::graph::Graph::forward)'s up to float
//! rounding (sums in another order, batch-norm scale folded into the weights); NaN and
//! infinities propagate as there. On devices other than flex, and for inputs that track
//! gradients, [`Inference::forward`] is the graph's forward.

mod engine;
mod kernels;
pub mod latency;
mod plan;
mod value;

pub use engine::{Inference, PathChoice, Report};
pub use kernels::conv::ConvPath;
pub use kernels::simd::Isa;
