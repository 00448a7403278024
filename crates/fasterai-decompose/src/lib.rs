//! # fasterai-decompose
//!
//! Low-rank factorisation of trained layers.
//!
//! | module | replaces | by |
//! |---|---|---|
//! | [`linear`] | `Linear(in → out)` | `Linear(in → k, no bias)`, `Linear(k → out)` from the truncated SVD `W ≈ U_k · Σ_k V_kᵀ` (fasterai's FC decomposer) |
//! | [`conv`] | `Conv2d(in → out, kh×kw)` | Tucker-2 (1×1, core, 1×1), CP (1×1, `kh×1` and `1×kw` depthwise, 1×1) or spatial SVD (`kh×1`, `1×kw`) |
//!
//! The factorisations themselves work on host arrays: [`tucker`] (HOSVD + HOOI, as tensorly's
//! `partial_tucker`), [`cp`] (ALS, as tensorly's `parafac`), [`spatial`] (spatial and seed 002's
//! slice-wise SVD); [`evbmf`] estimates ranks (Nakajima et al., 2013). Conv ranks are explicit,
//! a ratio of the channels, or EVBMF's.
//!
//! Every decomposition returns a [`DecomposeReport`]: per layer the rank, parameters before and
//! after, the relative weight reconstruction error and, given a probe batch, the relative error
//! of the layer's output. The SVDs run on the host through LAPACK
//! ([`fasterai_core::linalg`]).
//!
//! ```no_run
//! use fasterai_core::prelude::*;
//! use fasterai_decompose::linear::{LinearRank, LinearSvdConfig, factorize_linears};
//!
//! let model = load_model("vgg16_bn.safetensors".as_ref(), &parse_device("flex")?)?;
//! let config = LinearSvdConfig::new(LinearRank::PercentRemoved(0.5));
//! let (_smaller, report) = factorize_linears(&model.net, &config, None)?;
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings))))]

pub mod conv;
pub mod cp;
mod error;
pub mod evbmf;
pub mod linear;
mod report;
mod select;
pub mod spatial;
pub mod tucker;

pub use error::{DecomposeError, Result};
pub use report::{DecomposeReport, LayerReport};
