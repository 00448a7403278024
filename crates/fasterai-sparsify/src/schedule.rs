//! Sparsity schedules: the target sparsity at training progress `t ∈ [0, 1]`, moving from
//! `start` to the target between `start_pct` and `end_pct` of training (fasterai's schedules).

use fasterai_core::schedule::{cos_anneal, lin_anneal};
use serde::{Deserialize, Serialize};

/// The shape of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The whole target at once (at `start_pct`).
    OneShot,
    /// `steps` equal jumps.
    Iterative {
        /// Number of pruning steps.
        steps: usize,
    },
    /// Automated gradual pruning (Zhu & Gupta, 2017): `s_f + (s_i − s_f)(1 − t)³`.
    Agp,
    /// fasterai's logistic one-cycle: `(1 + e^{β−α}) / (1 + e^{β−αt})` of the way, α = 14, β = 6.
    OneCycle,
    /// Cosine from start to target.
    Cos,
    /// Linear from start to target.
    Lin,
    /// Dense-sparse-dense (Han et al., 2017): up to the target at mid-training, back down after.
    Dsd,
}

/// A schedule with its window and end points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Shape.
    pub kind: ScheduleKind,
    /// Progress at which it starts (before: `start` sparsity).
    pub start_pct: f64,
    /// Progress at which it reaches its end value.
    pub end_pct: f64,
    /// Sparsity before the start (0).
    pub start: f64,
}

impl Schedule {
    /// `kind` with fasterai's default window: one-shot at 0.5, iterative and AGP from 0.2,
    /// the others over all of training.
    pub fn new(kind: ScheduleKind) -> Self {
        let start_pct = match kind {
            ScheduleKind::OneShot => 0.5,
            ScheduleKind::Iterative { .. } | ScheduleKind::Agp => 0.2,
            _ => 0.0,
        };
        Self {
            kind,
            start_pct,
            end_pct: 1.0,
            start: 0.0,
        }
    }

    /// With the window `[start_pct, end_pct]`.
    pub fn window(mut self, start_pct: f64, end_pct: f64) -> Self {
        self.start_pct = start_pct;
        self.end_pct = end_pct;
        self
    }

    /// The sparsity at progress `t` for a final `target`.
    pub fn at(&self, target: f64, t: f64) -> f64 {
        if t < self.start_pct {
            return self.start;
        }
        let span = (self.end_pct - self.start_pct).max(f64::MIN_POSITIVE);
        let pos = ((t - self.start_pct) / span).min(1.0);
        let (s, e) = (self.start, target);
        match self.kind {
            ScheduleKind::OneShot => e,
            ScheduleKind::Iterative { steps } => {
                let n = steps.max(1) as f64;
                s + (e - s) / n * (pos * n).ceil()
            }
            ScheduleKind::Agp => e + (s - e) * (1.0 - pos).powi(3),
            ScheduleKind::OneCycle => {
                let (alpha, beta): (f64, f64) = (14.0, 6.0);
                let out = (1.0 + (beta - alpha).exp()) / (1.0 + (beta - alpha * pos).exp());
                s + (e - s) * out
            }
            ScheduleKind::Cos => cos_anneal(s, e, pos),
            ScheduleKind::Lin => lin_anneal(s, e, pos),
            ScheduleKind::Dsd => {
                if pos < 0.5 {
                    cos_anneal(s, e, pos * 2.0)
                } else {
                    cos_anneal(e, s, pos * 2.0 - 1.0)
                }
            }
        }
    }
}
