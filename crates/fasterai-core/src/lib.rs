//! # fasterai-core
//!
//! The foundation of fasterai-rs: a model representation that compression passes can rewrite
//! at run time, with the accounting and I/O every pass needs.
//!
//! Burn modules are static structs, but folding, pruning and factorising change a model's
//! structure (drop a batch norm, shrink a convolution, replace one `Linear` by two). This crate
//! therefore represents a model as a [`Graph`](graph::Graph): named nodes (torchvision's module
//! paths), each an op that reads named values, so residual additions, gates and concatenations
//! are first-class. Every op with weights wraps a real Burn module, so the same graph trains
//! with Burn's autodiff and optimisers and runs on any backend.
//!
//! ```no_run
//! use fasterai_core::prelude::*;
//!
//! let device = parse_device("flex")?;
//! // x → fc → relu ─┬→ add → out: a residual connection around `fc2`.
//! let mut g = GraphBuilder::new();
//! g.then("fc", LayerSpec::linear(8, 4));
//! let h = g.then("relu", LayerSpec::relu());
//! let y = g.then("fc2", LayerSpec::linear(4, 4));
//! g.node("add", LayerSpec::Add(Default::default()), &[&h, &y]);
//! let net = Graph::from_spec(&g.build(), InitScheme::default(), &device);
//! let model = Model::new("tiny", vec![8], net)?;
//! println!("{}", model.summary()?);
//! save_model(&model, "tiny.safetensors".as_ref(), false)?;
//! # Ok::<(), fasterai_core::CoreError>(())
//! ```
//!
//! ## Map
//! | module | what it holds |
//! |---|---|
//! | [`graph`] | [`Graph`](graph::Graph), [`Layer`](graph::Layer), [`GraphSpec`](graph::GraphSpec): the rewritable DAG, its ops (one file each) and its serialisable description; [`coupling`](graph::coupling): channel groups |
//! | [`model`] | [`Model`](model::Model): a graph with its name and input shape |
//! | [`quant`] | integer grids: symmetric per-channel/per-tensor weights, affine activations |
//! | [`summary`] | parameter counts (PyTorch's rule), MACs, the per-layer table |
//! | [`linalg`] | host truncated SVD (LAPACK via OpenBLAS; full `gesdd` or a Gram-matrix eigen path) |
//! | [`schedule`] | values over training progress: learning-rate policies (one-cycle, cosine), annealing curves |
//! | [`io`] | model files (safetensors + architecture JSON), torchvision checkpoint import |
//! | [`device`] | run-time backend choice from a string |
//! | [`limits`] | bounds on sizes read from untrusted files; the activation memory cap |
//!
//! ## Paths
//! Layers are addressed with torchvision's dotted paths (`features.0`, `classifier.3`), and
//! parameters with PyTorch's keys (`features.1.running_var`) in files.
//!
//! ## Features
//! `flex` (default, pure-Rust CPU), `wgpu`, `vulkan`, `cuda`, `tch` (LibTorch; deprecated
//! upstream but kept working): each enables the Burn backend of the same name.
#![doc(test(attr(deny(warnings))))]

pub mod device;
pub mod error;
pub mod graph;
pub mod io;
pub mod limits;
pub mod linalg;
pub mod model;
pub mod quant;
pub mod schedule;
pub mod summary;
pub mod testing;

pub use error::{CoreError, Result};

/// The types most programs need.
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::device::parse_device;
    #[doc(no_inline)]
    pub use crate::error::{CoreError, Result};
    #[doc(no_inline)]
    pub use crate::graph::{Activation, Graph, GraphBuilder, InitScheme, Layer, LayerSpec};
    #[doc(no_inline)]
    pub use crate::io::{load_model, save_model};
    #[doc(no_inline)]
    pub use crate::model::Model;
    #[doc(no_inline)]
    pub use crate::summary::{Summary, count_parameters};
    #[doc(no_inline)]
    pub use burn::tensor::{Device, Tensor};
}
