//! [`SparsifyCallback`]: sparsifying while training, through `fasterai-train`'s hooks. The
//! target sparsity follows a [`Schedule`]; when it rises, new masks are computed (before the
//! batch); after every optimiser step the masks are re-applied so pruned weights stay zero.

use std::collections::BTreeMap;

use fasterai_core::graph::Graph;
use fasterai_core::io::Arrays;
use fasterai_train::CallbackState;
use fasterai_train::learner::{Callback, EpochRecord, TrainConfig, TrainState};
use fasterai_train::{Result as TrainResult, TrainError};
use serde::{Deserialize, Serialize};

use crate::criterion::Criterion;
use crate::schedule::Schedule;
use crate::sparsifier::{Sparsifier, SparsifyConfig};

/// Lottery-ticket options (Frankle & Carbin, 2019).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Lottery {
    /// After each pruning step, reset the surviving weights to their initial values.
    ResetToInit,
    /// After each pruning step, rewind the surviving weights to their values at the end of
    /// this epoch (0-based; before it is reached, nothing is rewound).
    RewindToEpoch(usize),
}

/// One change of the target during training.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruningStep {
    /// Optimiser step at which it happened.
    pub step: usize,
    /// The new target sparsity.
    pub sparsity: f64,
}

/// Sparsifies a model while it trains.
pub struct SparsifyCallback {
    config: SparsifyConfig,
    target: f64,
    schedule: Schedule,
    lottery: Option<Lottery>,
    sparsifier: Option<Sparsifier>,
    current: f64,
    rewind_to: Option<BTreeMap<String, Vec<f32>>>,
    /// Every change of the target, in order.
    pub steps: Vec<PruningStep>,
}

impl SparsifyCallback {
    /// Reaches `target` sparsity along `schedule`.
    pub fn new(config: SparsifyConfig, target: f64, schedule: Schedule) -> Self {
        Self {
            config,
            target,
            schedule,
            lottery: None,
            sparsifier: None,
            current: 0.0,
            rewind_to: None,
            steps: Vec::new(),
        }
    }

    /// With lottery-ticket resetting or rewinding.
    pub fn with_lottery(mut self, lottery: Lottery) -> Self {
        self.lottery = Some(lottery);
        self
    }

    /// The sparsifier (masks, report) once training has started.
    pub fn sparsifier(&self) -> Option<&Sparsifier> {
        self.sparsifier.as_ref()
    }
}

impl Callback for SparsifyCallback {
    fn before_fit(
        &mut self,
        net: &Graph,
        input_shape: &[usize],
        config: &TrainConfig,
    ) -> TrainResult<()> {
        if !(0.0..1.0).contains(&self.target) {
            return Err(TrainError::Config(format!(
                "sparsity {} must be in [0, 1)",
                self.target
            )));
        }
        let (start, end) = (self.schedule.start_pct, self.schedule.end_pct);
        if !(0.0 <= start && start < end && end <= 1.0) {
            return Err(TrainError::Config(format!(
                "the schedule window must satisfy 0 ≤ start ({start}) < end ({end}) ≤ 1"
            )));
        }
        if let Some(Lottery::RewindToEpoch(e)) = self.lottery
            && e + 1 >= config.epochs
        {
            return Err(TrainError::Config(format!(
                "rewinding to the end of epoch {e} (0-based) needs at least {} epochs to prune \
                 after it; training has {}",
                e + 2,
                config.epochs
            )));
        }
        if matches!(self.config.criterion, Criterion::Wanda | Criterion::Taylor) {
            return Err(TrainError::Config(format!(
                "criterion {} needs a calibration batch, which sparsifying while training does \
                 not take: sparsify in one shot with --data, then fine-tune",
                self.config.criterion.name()
            )));
        }
        let sparsifier = Sparsifier::new(net, input_shape, self.config.clone())
            .map_err(|e| TrainError::Config(e.to_string()))?;
        // A dry run at the final target on a copy: every error (N:M on a layer whose size does
        // not allow it, a per-layer target out of range) shows before the first batch.
        sparsifier
            .clone()
            .prune(&mut net.clone(), self.target)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        self.sparsifier = Some(sparsifier);
        Ok(())
    }

    fn before_batch(&mut self, net: &mut Graph, state: &TrainState) {
        let wanted = self.schedule.at(self.target, state.progress());
        if (wanted - self.current).abs() < 1e-12 {
            return;
        }
        let sparsifier = self.sparsifier.as_mut().expect("made in before_fit");
        sparsifier
            .prune(net, wanted.clamp(0.0, self.target))
            .expect("targets checked in before_fit");
        self.current = wanted;
        self.steps.push(PruningStep {
            step: state.step,
            sparsity: wanted,
        });
        let reference = match self.lottery {
            Some(Lottery::ResetToInit) => Some(sparsifier.initial_weights().clone()),
            Some(Lottery::RewindToEpoch(_)) => self.rewind_to.clone(),
            None => None,
        };
        if let Some(reference) = reference {
            sparsifier.rewind(net, &reference).expect("paths checked");
        }
    }

    fn after_step(&mut self, net: &mut Graph, _state: &TrainState) {
        if let Some(s) = &self.sparsifier {
            s.apply(net).expect("paths checked");
        }
    }

    fn state(&self) -> CallbackState {
        let mut arrays = self
            .sparsifier
            .as_ref()
            .map(Sparsifier::state_arrays)
            .unwrap_or_default();
        for (path, v) in self.rewind_to.iter().flatten() {
            arrays.insert(format!("rewind/{path}"), (vec![v.len()], v.clone()));
        }
        CallbackState {
            values: serde_json::json!({ "current": self.current, "steps": self.steps }),
            arrays,
        }
    }

    fn restore(&mut self, mut state: CallbackState) -> TrainResult<()> {
        let bad =
            |reason: String| TrainError::Config(format!("cannot resume sparsifying: {reason}"));
        let current = state.values["current"]
            .as_f64()
            .ok_or_else(|| bad("the saved state has no current target".into()))?;
        let steps = serde_json::from_value(state.values["steps"].take())
            .map_err(|e| bad(format!("the saved pruning steps are damaged ({e})")))?;
        let (rewind, masks): (Arrays, Arrays) = std::mem::take(&mut state.arrays)
            .into_iter()
            .partition(|(k, _)| k.starts_with("rewind/"));
        let rewind: BTreeMap<String, Vec<f32>> = rewind
            .into_iter()
            .map(|(k, (_, v))| (k["rewind/".len()..].to_string(), v))
            .collect();
        let sparsifier = self.sparsifier.as_mut().expect("made in before_fit");
        sparsifier
            .restore_arrays(&masks)
            .map_err(|e| bad(e.to_string()))?;
        self.current = current;
        self.steps = steps;
        self.rewind_to = (!rewind.is_empty()).then_some(rewind);
        Ok(())
    }

    fn after_epoch(&mut self, net: &mut Graph, record: &EpochRecord) {
        if let (Some(Lottery::RewindToEpoch(e)), Some(s)) = (self.lottery, &self.sparsifier)
            && e == record.epoch
        {
            self.rewind_to = Some(s.snapshot(net).expect("paths checked"));
        }
    }
}
