//! # fasterai-distill
//!
//! Knowledge distillation: a student trained on `(1 − w)·task_loss + w·kd_loss` against a frozen
//! teacher, with the losses of fasterai (soft targets of Hinton et al., logit MSE, mutual KL,
//! decoupled KD, attention transfer, FitNet hints, similarity preserving, activation boundaries).
//!
//! Status: planned. Student and teacher are [`fasterai_core::model::Model`]s.
