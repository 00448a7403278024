//! Values that change over training, as functions of the progress `t ∈ [0, 1]` (fraction of
//! all optimiser steps done): learning-rate policies here, sparsity schedules in
//! `fasterai-sparsify` build on the same curves.

use serde::{Deserialize, Serialize};

/// Cosine interpolation from `start` (t = 0) to `end` (t = 1).
pub fn cos_anneal(start: f64, end: f64, t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    end + (start - end) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
}

/// Linear interpolation from `start` (t = 0) to `end` (t = 1).
pub fn lin_anneal(start: f64, end: f64, t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    start + (end - start) * t
}

/// A learning-rate policy: the rate at progress `t` for a peak rate `lr`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum LrSchedule {
    /// `lr` throughout.
    Constant,
    /// fastai's `fit_one_cycle` (Smith, 2018): cosine warm-up from `lr / div` to `lr` over the
    /// first `pct_start` of training, then cosine annealing to `lr / (div · div_final)`.
    OneCycle {
        /// Fraction of training spent warming up (fastai: 0.25).
        pct_start: f64,
        /// Initial rate divisor (fastai: 25).
        div: f64,
        /// Further divisor of the final rate (fastai: 1e5).
        div_final: f64,
    },
    /// Cosine annealing from `lr` to 0.
    Cosine,
    /// A linear warm-up from 0 to `lr` over the first `warmup` of training, then cosine
    /// annealing to 0 (what vision transformers are trained with).
    WarmupCosine {
        /// Fraction of training spent warming up.
        warmup: f64,
    },
}

impl LrSchedule {
    /// fastai's defaults for `fit_one_cycle`.
    pub fn one_cycle() -> Self {
        LrSchedule::OneCycle {
            pct_start: 0.25,
            div: 25.0,
            div_final: 1e5,
        }
    }

    /// The learning rate at progress `t` when the peak is `lr`.
    pub fn at(&self, lr: f64, t: f64) -> f64 {
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => cos_anneal(lr, 0.0, t),
            LrSchedule::WarmupCosine { warmup } if t < warmup => lr * t / warmup,
            LrSchedule::WarmupCosine { warmup } => cos_anneal(
                lr,
                0.0,
                (t - warmup) / (1.0 - warmup).max(f64::MIN_POSITIVE),
            ),
            LrSchedule::OneCycle {
                pct_start,
                div,
                div_final,
            } => {
                let start = lr / div;
                if t < pct_start {
                    cos_anneal(start, lr, t / pct_start)
                } else {
                    cos_anneal(lr, start / div_final, (t - pct_start) / (1.0 - pct_start))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_follows_its_formula() {
        let s = LrSchedule::one_cycle();
        let lr = 0.1;
        assert!((s.at(lr, 0.0) - lr / 25.0).abs() < 1e-12);
        assert!((s.at(lr, 0.25) - lr).abs() < 1e-12);
        // Halfway through the warm-up: the mean of start and peak.
        assert!((s.at(lr, 0.125) - (lr / 25.0 + lr) / 2.0).abs() < 1e-12);
        assert!((s.at(lr, 1.0) - lr / 25.0 / 1e5).abs() < 1e-15);
        // Halfway through the annealing.
        let end = lr / 25.0 / 1e5;
        assert!((s.at(lr, 0.625) - (lr + end) / 2.0).abs() < 1e-12);
        assert_eq!(LrSchedule::Constant.at(lr, 0.7), lr);
        assert!((LrSchedule::Cosine.at(lr, 0.5) - lr / 2.0).abs() < 1e-12);
        assert!((lin_anneal(1.0, 3.0, 0.25) - 1.5).abs() < 1e-12);
        let w = LrSchedule::WarmupCosine { warmup: 0.1 };
        assert_eq!(w.at(lr, 0.0), 0.0);
        assert!((w.at(lr, 0.05) - lr / 2.0).abs() < 1e-12);
        assert!((w.at(lr, 0.1) - lr).abs() < 1e-12);
        assert!((w.at(lr, 0.55) - lr / 2.0).abs() < 1e-12);
        assert!(w.at(lr, 1.0).abs() < 1e-12);
    }
}
