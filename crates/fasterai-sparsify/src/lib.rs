//! # fasterai-sparsify
//!
//! Sparsifying: zeroing the least important weights of a model at a chosen [`Granularity`]
//! (single weights, kernels, filters, …), locally per layer or globally ([`Context`]), by a
//! [`Criterion`] (magnitude, initial-weight family, gradient × weight, activation-aware), once
//! ([`Sparsifier::prune`]) or on a [`Schedule`] (one-shot, iterative, Automated Gradual Pruning
//! of Zhu & Gupta, 2017, one-cycle, cosine, linear, dense-sparse-dense) with masks kept through
//! training.
//!
//! | module | what it holds |
//! |---|---|
//! | [`granularity`] | the weight groups (fasterai's 16 for `Conv2d`, 4 for `Linear`) |
//! | [`criterion`] | element scores |
//! | [`mask`] | group means, local/global selection, `round_to`, N:M |
//! | [`schedule`] | target sparsity over training progress |
//! | [`sparsifier`] | masks on a model: compute (filter masks shared by each coupled channel group), apply (dead channels zeroed in biases, batch norms and depthwise convs too), report, rewind |
//! | [`callback`] | sparsifying while training (`fasterai-train` hooks): masks on the schedule, re-applied after every step, lottery-ticket reset/rewind |
//!
//! ```no_run
//! use fasterai_core::prelude::*;
//! use fasterai_models::{VggConfig, VggDepth};
//! use fasterai_sparsify::{Granularity, Sparsifier, SparsifyConfig};
//!
//! let device = parse_device("flex")?;
//! let mut model = VggConfig::new(VggDepth::Vgg16, true, 10).init(&device)?;
//! let mut sparsifier = Sparsifier::new(&model.net, &model.input_shape, SparsifyConfig::new(Granularity::Filter))?;
//! for layer in sparsifier.prune(&mut model.net, 0.4)? {
//!     println!("{}: {} of {} filters zeroed", layer.path, layer.zero_groups, layer.groups);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings))))]

pub mod callback;
pub mod criterion;
pub mod granularity;
pub mod mask;
pub mod schedule;
pub mod sparsifier;
mod units;

pub use callback::{Lottery, SparsifyCallback};
pub use criterion::Criterion;
pub use granularity::Granularity;
pub use schedule::{Schedule, ScheduleKind};
pub use sparsifier::{Context, LayerSparsity, Sparsifier, SparsifyConfig};

/// Everything that can go wrong while sparsifying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SparsifyError {
    /// A granularity that does not apply to the layer type.
    #[error("granularity `{granularity}` does not apply to a {kind}; use one of: {allowed}")]
    Granularity {
        /// The granularity asked for.
        granularity: &'static str,
        /// The layer type.
        kind: &'static str,
        /// The ones that apply.
        allowed: String,
    },
    /// A layer that cannot be sparsified as asked.
    #[error("layer `{path}`: {reason}")]
    Layer {
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A setting out of range.
    #[error("{0}")]
    Config(String),
    /// Graph error (unknown path, …).
    #[error(transparent)]
    Core(#[from] fasterai_core::CoreError),
}

/// Result alias for [`SparsifyError`].
pub type Result<T, E = SparsifyError> = std::result::Result<T, E>;
