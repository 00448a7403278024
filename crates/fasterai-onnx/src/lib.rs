//! # fasterai-onnx
//!
//! ONNX in and out. [`import_file`] turns a CNN exported from PyTorch (or any ONNX producer)
//! into the prunable graph of `fasterai-core`, keeping the exporter's module paths as node
//! names (`layer1.0.conv1`); [`export_file`] writes any graph, compressed or not, as ONNX
//! (opset 17, dynamic batch) for onnxruntime, TensorRT or Burn's own importer.
//!
//! ```no_run
//! use fasterai_onnx::{ImportOptions, export_file, import_file};
//!
//! let device = fasterai_core::device::parse_device("flex")?;
//! let model = import_file("resnet18.onnx".as_ref(), &ImportOptions::default(), &device)?;
//! export_file(&model, "resnet18_copy.onnx".as_ref(), false)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The protobuf messages are declared in [`proto`] for `prost` (the standard Rust protobuf
//! implementation), which does the decoding and encoding.

mod error;
mod export;
mod import;
pub mod proto;
mod tensor;
pub mod testing;

pub use error::{OnnxError, Result};
pub use export::{EXPORT_OPSET, export_bytes, export_file};
pub use import::{ImportOptions, OPSETS, SUPPORTED_OPS, import_bytes, import_file};
