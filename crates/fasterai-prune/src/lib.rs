//! # fasterai-prune
//!
//! Physical pruning: removing filters whose weights are all zero from sequential (VGG-like)
//! models, shrinking the convolution, its batch norm, the next convolution's input channels and,
//! through the flatten, the first linear layer. Removing zeros is lossless; structured pruning by
//! importance then fine-tuning builds on it.
//!
//! Status: planned. The model graph it will rewrite lives in [`fasterai_core::graph`].
