//! # fasterai-fold
//!
//! Batch-norm folding: every `BatchNorm2d` that directly follows a `Conv2d` is merged into the
//! convolution's weights and bias using its running statistics, which is exact at inference time
//! and removes the normalisation's parameters and its pass over the activations.
//!
//! Status: planned (issue "Batch-norm folding, FC SVD and low-rank conv decomposition"). The
//! model graph it will rewrite lives in [`fasterai_core::graph`].
