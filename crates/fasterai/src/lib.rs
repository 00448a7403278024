//! # fasterai
//!
//! Make trained neural networks smaller and faster, in Rust, on [Burn](https://burn.dev).
//!
//! This facade re-exports the workspace's crates; depend on them one by one if you only need
//! part ("pick and choose"):
//!
//! | module | crate | what it does |
//! |---|---|---|
//! | [`core`] | `fasterai-core` | rewritable model graph, parameter/MAC counts, model files, devices |
//! | [`models`] | `fasterai-models` | VGG, ResNet, MobileNet V2/V3, EfficientNet-B0 in torchvision's layouts |
//! | [`fold`] | `fasterai-fold` | batch-norm folding |
//! | [`infer`] | `fasterai-infer` | the CPU inference engine (fused GEMM, Winograd and depthwise convolutions) and latency timing |
//! | [`decompose`] | `fasterai-decompose` | low-rank factorisation (SVD, CP, Tucker-2, EVBMF) |
//! | [`sparsify`] | `fasterai-sparsify` | sparsifying with granularities, criteria and schedules |
//! | [`prune`] | `fasterai-prune` | physical removal of zeroed filters |
//! | [`train`] | `fasterai-train` | datasets, the training loop with hooks, evaluation |
//! | [`distill`] | `fasterai-distill` | knowledge distillation |
//! | [`onnx`] | `fasterai-onnx` | ONNX import (PyTorch exports) and export |
//! | [`quantize`] | `fasterai-quantize` | int8: post-training (calibrated) and quantization-aware training |
//!
//! ```no_run
//! use fasterai::prelude::*;
//!
//! let device = parse_device("flex")?;
//! let model = VggConfig::new(VggDepth::Vgg16, true, 10).init(&device)?;
//! println!("{}", model.summary()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Backends (cargo features, forwarded to Burn)
//! `flex` (default: pure-Rust CPU), `wgpu`, `vulkan`, `cuda`, `tch` (LibTorch 2.9 through
//! burn-tch). The backend is chosen at run time with [`core::device::parse_device`].
#![doc(test(attr(deny(warnings))))]

pub use burn;
pub use fasterai_core as core;
pub use fasterai_decompose as decompose;
pub use fasterai_distill as distill;
pub use fasterai_fold as fold;
pub use fasterai_infer as infer;
pub use fasterai_models as models;
pub use fasterai_onnx as onnx;
pub use fasterai_prune as prune;
pub use fasterai_quantize as quantize;
pub use fasterai_sparsify as sparsify;
pub use fasterai_train as train;

/// The types most programs need.
pub mod prelude {
    #[doc(no_inline)]
    pub use fasterai_core::prelude::*;
    #[doc(no_inline)]
    pub use fasterai_models::{VggConfig, VggDepth, VggHead};
}
