//! What can go wrong reading or writing ONNX.

use std::path::PathBuf;

use fasterai_core::CoreError;

/// An ONNX import or export error: says what and where.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file cannot be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's message.
        reason: String,
    },
    /// The bytes are not an ONNX model.
    #[error("not a valid ONNX model ({0}): the file is truncated, damaged or not ONNX")]
    Decode(String),
    /// The model as a whole cannot be imported (no graph, opset, inputs, outputs).
    #[error("{0}")]
    Model(String),
    /// A node's attributes or inputs are outside what the graph can represent.
    #[error("node `{node}` ({op}): {reason}")]
    Node {
        /// The ONNX node name (or its first output when unnamed).
        node: String,
        /// Its op type.
        op: String,
        /// What is wrong and, where possible, what to do.
        reason: String,
    },
    /// An op with no counterpart in the graph.
    #[error(
        "node `{node}`: op `{op}` is not supported (supported: {})",
        crate::import::SUPPORTED_OPS.join(", ")
    )]
    UnsupportedOp {
        /// The ONNX node name.
        node: String,
        /// Its domain-qualified op type.
        op: String,
    },
    /// A graph op the exporter has no ONNX form for yet: nothing is written.
    #[error(
        "node `{node}` ({op}): no ONNX export for {op} yet (transformer ops and token values \
         are not exported); nothing was written"
    )]
    UnsupportedExport {
        /// The graph node.
        node: String,
        /// Its op type.
        op: String,
    },
    /// A tensor's data cannot be read.
    #[error("tensor `{name}`: {reason}")]
    Tensor {
        /// The tensor (initializer) name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The graph built from the file is invalid, or the model cannot be saved.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl OnnxError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        OnnxError::Io {
            path: path.into(),
            reason: e.to_string(),
        }
    }
}

/// Result with [`OnnxError`].
pub type Result<T> = std::result::Result<T, OnnxError>;
