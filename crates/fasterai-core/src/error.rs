//! The error type shared by the model graph, its I/O and device selection.

use std::path::PathBuf;

/// Everything that can go wrong in `fasterai-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A layer received an input it cannot process (wrong rank or channel count).
    #[error("layer `{path}` ({kind}) cannot take an input of shape {got:?}: {reason}")]
    ShapeMismatch {
        /// Dotted path of the layer.
        path: String,
        /// Layer type.
        kind: &'static str,
        /// Input shape without the batch dimension.
        got: Vec<usize>,
        /// What the layer expected.
        reason: String,
    },
    /// The model input does not have the shape the caller promised.
    #[error("input has shape {got:?} but {expected}")]
    BadInput {
        /// Shape received.
        got: Vec<usize>,
        /// Description of what is expected.
        expected: String,
    },
    /// A dotted path names no layer of the model.
    #[error("no layer at path `{path}`; known paths: {known}")]
    UnknownPath {
        /// The path asked for.
        path: String,
        /// A short list of valid paths.
        known: String,
    },
    /// A layer specification is inconsistent (zero channels, groups not dividing channels, ...).
    #[error("invalid layer `{path}`: {reason}")]
    InvalidLayer {
        /// Dotted path of the layer.
        path: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A device string could not be understood.
    #[error(
        "unknown device `{0}`: expected one of flex, wgpu, vulkan, cuda[:N], tch, tch-cuda[:N]"
    )]
    UnknownDevice(String),
    /// The device exists but this binary was built without its backend.
    #[error(
        "device `{device}` needs the `{feature}` cargo feature; rebuild with `--features {feature}`"
    )]
    BackendNotCompiled {
        /// Device string asked for.
        device: String,
        /// Cargo feature that enables it.
        feature: &'static str,
    },
    /// A model file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A model file exists and is valid safetensors, but is not a fasterai model or is damaged.
    #[error("{path} is not a valid fasterai model file: {reason}")]
    BadModelFile {
        /// File concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The weights in a file do not fit the architecture they are loaded into.
    #[error("weights in {path} do not match the architecture: {reason}")]
    WeightMismatch {
        /// File concerned.
        path: PathBuf,
        /// Missing, unused or mis-shaped tensors.
        reason: String,
    },
    /// A tensor would need more memory than the cap allows.
    #[error(
        "{what} would take {bytes} bytes, above the limit of {limit}; if this is expected, \
         raise it with --max-memory (e.g. --max-memory 64G)"
    )]
    TooLarge {
        /// What would be allocated.
        what: String,
        /// Bytes it needs.
        bytes: u64,
        /// The cap.
        limit: u64,
    },
    /// Refusing to overwrite an existing file.
    #[error("{0} already exists; pass --force (or `overwrite = true`) to replace it")]
    WouldOverwrite(PathBuf),
}

/// Result alias for [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl CoreError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        CoreError::Io {
            path: path.into(),
            reason: err.to_string(),
        }
    }
}
