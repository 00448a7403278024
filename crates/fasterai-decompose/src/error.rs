//! Errors of the decompositions.

use fasterai_core::CoreError;

/// Everything that can go wrong while factorising layers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecomposeError {
    /// A rank rule's parameter is out of range.
    #[error("invalid rank rule: {0}")]
    InvalidRank(String),
    /// Nothing to do (e.g. FC SVD on a model without a `Linear`).
    #[error("{0}")]
    NothingToDo(String),
    /// A selected path names a layer of another type.
    #[error("`{path}` is a {kind}, not a {expected}")]
    WrongLayerType {
        /// Path asked for.
        path: String,
        /// Its actual type.
        kind: &'static str,
        /// The type the decomposition works on.
        expected: &'static str,
    },
    /// Graph, shape or linear-algebra error (unknown path, non-finite weight, …).
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Result alias for [`DecomposeError`].
pub type Result<T, E = DecomposeError> = std::result::Result<T, E>;
