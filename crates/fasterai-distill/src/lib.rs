//! # fasterai-distill
//!
//! Knowledge distillation: a student trained on `(1 − w)·task_loss + w·kd_loss` against a
//! frozen teacher, through the training loop of `fasterai-train`.
//!
//! - [`losses`]: soft targets (Hinton et al., 2015), logit MSE, mutual KL, decoupled KD,
//!   attention transfer, FitNet hints, similarity preserving, activation boundaries, as
//!   functions of tensors.
//! - [`Distiller`]: the [`Callback`](fasterai_train::Callback) that runs the teacher (evaluation
//!   mode, no gradients) on each batch and mixes the chosen loss in with weight `w` (constant
//!   or scheduled). Feature losses name student and teacher layers by path; FitNet learns a
//!   1×1 adapter when the widths differ.
//!
//! ```no_run
//! use fasterai_core::prelude::*;
//! use fasterai_distill::{Distiller, KdLoss, KdWeight};
//! use fasterai_models::{VggConfig, VggDepth};
//! use fasterai_train::{DataSource, TrainConfig, fit};
//!
//! let device = parse_device("flex")?;
//! let data = "cifar10:../shared/data/cifar-10-batches-bin".parse::<DataSource>()?.load()?;
//! let teacher = load_model("teacher.safetensors".as_ref(), &device)?;
//! let student = VggConfig::small(VggDepth::Vgg11, true, 10, [3, 32, 32]).with_width(0.125).init(&device)?;
//! let mut kd = Distiller::new(teacher, KdLoss::SoftTarget { temperature: 4.0 }, KdWeight::Constant(0.5));
//! let (student, history) = fit(&student, &data.train, &data.valid, &data.normalize,
//!     &TrainConfig::default(), &mut [&mut kd], &device)?;
//! println!("{}: {:.2} %", student.name, 100.0 * history.best.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings))))]

mod distiller;
pub mod losses;

pub use distiller::{Distiller, KdLoss, KdWeight};
