//! # fasterai-quantize
//!
//! Integer models: the weights of convolutions and linear layers on a symmetric int8 grid (one
//! scale per output channel or per tensor) and their inputs on calibrated affine grids.
//!
//! - **Post-training** ([`quantize`]): activation ranges from a calibration set by min-max,
//!   percentile or MSE-optimal clipping ([`Calibration`]); layers left in float by path or when
//!   their output error is too high; the error of every layer reported ([`QuantReport`]).
//! - **Quantization-aware training** ([`QatCallback`]): weights fake-quantized through the
//!   training loop's hooks with a straight-through estimator (float shadow weights take the
//!   updates), activations through the graph's `FakeQuantize` nodes; composes with
//!   distillation and with sparsify masks.
//!
//! A quantized [`Model`](fasterai_core::model::Model) computes with the dequantized values
//! (`code · scale`), exactly what an integer kernel with float rescaling computes; model files
//! store the int8 codes and scales (4× smaller), the ONNX export writes QDQ nodes.
//!
//! Backends: Burn 0.22 (read in `burn-tensor`'s `module.rs`) dequantizes a quantized weight
//! before every convolution on every backend, and only routes a quantized `Linear` weight to a
//! quantized matmul; on flex that matmul also dequantizes. So here int8 shrinks files and
//! memory; latency is measured, not assumed (BENCHMARKS.md).
//!
//! ```no_run
//! use fasterai_core::prelude::*;
//! use fasterai_quantize::{Calibration, QuantizeConfig, quantize};
//!
//! let device = parse_device("flex")?;
//! let model = load_model("vgg16_bn.safetensors".as_ref(), &device)?;
//! let calibration = vec![Tensor::<4>::zeros([32, 3, 32, 32], &device)]; // normalised images
//! let config = QuantizeConfig::default().with_calibration(Calibration::Percentile(99.99));
//! let (int8, report) = quantize(&model, &calibration, &config)?;
//! println!("{report}");
//! save_model(&int8, "vgg16_bn.int8.safetensors".as_ref(), false)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings))))]

pub mod calibrate;
pub mod ptq;
pub mod qat;

pub use calibrate::Calibration;
pub use ptq::{LayerReport, QuantReport, QuantizeConfig, quantize, quantize_weights};
pub use qat::{QatCallback, prepare_qat};

/// What can go wrong when quantizing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// A setting is out of its range (bits, percentile, error threshold).
    #[error("{0}")]
    Config(String),
    /// The model is quantized already.
    #[error("the model is already quantized ({0}); quantize its float original, or keep this one")]
    AlreadyQuantized(String),
    /// Calibration batches missing or of the wrong shape.
    #[error("calibration data: {0}")]
    Calibration(String),
    /// Graph or file error.
    #[error(transparent)]
    Core(#[from] fasterai_core::CoreError),
}

/// Result alias for [`QuantizeError`].
pub type Result<T, E = QuantizeError> = std::result::Result<T, E>;
