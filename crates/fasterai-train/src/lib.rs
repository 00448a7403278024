//! # fasterai-train
//!
//! Data and the training loop the compression passes build on.
//!
//! | module | what it holds |
//! |---|---|
//! | [`data`] | CIFAR-10 batches, (Fashion-)MNIST IDX, image folders, a generated set; normalisation, crop/flip augmentation, batching |
//! | [`learner`] | [`fit`]: SGD/Adam, one-cycle or constant learning rate, validation each epoch, best-model checkpoints, and [`Callback`] hooks (distillation changes the loss, sparsifying re-applies masks after each step) |
//! | [`eval`] | accuracy, loss and per-class accuracy |
//! | [`resume`] | the state written after every epoch, from which an interrupted run continues |
//!
//! ```no_run
//! use fasterai_core::prelude::*;
//! use fasterai_models::{VggConfig, VggDepth};
//! use fasterai_train::{DataSource, TrainConfig, fit};
//!
//! let device = parse_device("flex")?;
//! let data: DataSource = "cifar10:../shared/data/cifar-10-batches-bin".parse()?;
//! let splits = data.load()?;
//! let model = VggConfig::small(VggDepth::Vgg11, true, 10, [3, 32, 32]).with_width(0.25).init(&device)?;
//! let (trained, history) = fit(&model, &splits.train, &splits.valid, &splits.normalize,
//!     &TrainConfig::default(), &mut [], &device)?;
//! println!("{}: best accuracy {:.2} %", trained.name, 100.0 * history.best.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings))))]

pub mod data;
pub mod eval;
pub mod learner;
pub mod resume;
pub mod testing;
pub mod text;

pub use data::{DataError, DataSource, ImageSet};
pub use eval::{EvalReport, evaluate, evaluate_with};
pub use learner::{Callback, History, LossContext, TrainConfig, TrainState, fit};
pub use resume::CallbackState;

/// Everything that can go wrong while training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// Reading data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Model, data and settings do not fit together.
    #[error("{0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error(
        "training diverged at epoch {epoch}, step {step} (learning rate {lr:.3e}): the loss is \
         not finite; lower the learning rate"
    )]
    Diverged {
        /// Epoch.
        epoch: usize,
        /// Optimiser step.
        step: usize,
        /// Learning rate at that step.
        lr: f64,
    },
    /// Graph or file error.
    #[error(transparent)]
    Core(#[from] fasterai_core::CoreError),
}

/// Result alias for [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
