//! # fasterai-core
//!
//! The foundation of fasterai-rs: a model representation that compression passes can rewrite
//! at run time, with the accounting and I/O every pass needs.
//!
//! Burn modules are static structs, but folding, pruning and factorising change a model's
//! structure (drop a batch norm, shrink a convolution, replace one `Linear` by two). This crate
//! therefore represents a model as a tree of [`Layer`](graph::Layer)s inside named
//! [`Sequential`](graph::Sequential) containers. Every layer wraps a real Burn module, so the
//! same graph trains with Burn's autodiff and optimisers and runs on any backend.
//!
//! ```no_run
//! use fasterai_core::prelude::*;
//!
//! let device = parse_device("flex")?;
//! let net = Sequential::indexed([
//!     Layer::from_spec(&LayerSpec::Linear { in_features: 8, out_features: 4, bias: true }, InitScheme::default(), &device),
//!     Layer::Relu,
//! ]);
//! let model = Model::new("tiny", vec![8], net)?;
//! println!("{}", model.summary()?);
//! save_model(&model, "tiny.safetensors".as_ref(), false)?;
//! # Ok::<(), fasterai_core::CoreError>(())
//! ```
//!
//! ## Map
//! | module | what it holds |
//! |---|---|
//! | [`graph`] | [`Layer`](graph::Layer), [`Sequential`](graph::Sequential), [`LayerSpec`](graph::LayerSpec): the rewritable graph and its serialisable description |
//! | [`model`] | [`Model`](model::Model): a graph with its name and input shape |
//! | [`summary`] | parameter counts (PyTorch's rule), MACs, the per-layer table |
//! | [`linalg`] | host truncated SVD (LAPACK via OpenBLAS; full `gesdd` or a Gram-matrix eigen path) |
//! | [`schedule`] | values over training progress: learning-rate policies (one-cycle, cosine), annealing curves |
//! | [`latency`] | inference latency (warm-up, synced timed runs, median/min/max) |
//! | [`io`] | model files (safetensors + architecture JSON), torchvision checkpoint import |
//! | [`device`] | run-time backend choice from a string |
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
pub mod latency;
pub mod linalg;
pub mod model;
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
    pub use crate::graph::{Activation, InitScheme, Layer, LayerSpec, Sequential};
    #[doc(no_inline)]
    pub use crate::io::{load_model, save_model};
    #[doc(no_inline)]
    pub use crate::model::Model;
    #[doc(no_inline)]
    pub use crate::summary::{Summary, count_parameters};
    #[doc(no_inline)]
    pub use burn::tensor::{Device, Tensor};
}
