//! # fasterai-decompose
//!
//! Low-rank factorisation of trained layers.
//!
//! | module | replaces | by |
//! |---|---|---|
//! | [`linear`] | `Linear(in → out)` | `Linear(in → k, no bias)`, `Linear(k → out)` from the truncated SVD `W ≈ U_k · Σ_k V_kᵀ` (fasterai's FC decomposer) |
//!
//! [`evbmf`] estimates ranks (Nakajima et al., 2013); [`tucker`] computes Tucker-2 factors of a
//! conv weight (HOSVD + HOOI, matching tensorly's `partial_tucker`). Planned (same report, same
//! layer selection): replacing `Conv2d` layers by Tucker-2 (1×1, k×k core, 1×1), CP (Lebedev et
//! al., 2015: four convolutions) and slice-wise SVD (k×1 then 1×k), with ranks explicit, as a
//! ratio, or by EVBMF on the weight's unfoldings.
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
mod error;
pub mod evbmf;
pub mod linear;
mod report;
mod select;
pub mod tucker;

pub use error::{DecomposeError, Result};
pub use report::{DecomposeReport, LayerReport};
