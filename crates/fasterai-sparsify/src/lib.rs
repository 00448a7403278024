//! # fasterai-sparsify
//!
//! Sparsifying: zeroing the least important weights of a model at a chosen granularity (single
//! weights, kernels, filters, …), locally per layer or globally, by a chosen criterion
//! (magnitude, gradient × weight, activation-aware, …), once or on a schedule (one-shot,
//! iterative, Automated Gradual Pruning of Zhu & Gupta, 2017), with masks kept through training.
//!
//! Status: planned. The model graph it will work on lives in [`fasterai_core::graph`].
