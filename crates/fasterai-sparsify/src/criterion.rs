//! Criteria: an importance score for every weight, from the weight itself, its value at
//! initialisation or at the previous pruning step, its gradient, or the activations it sees.
//! Scores are made non-negative (shifted), multiplied by the current mask (pruned weights stay
//! least important) and averaged over each group (fasterai's defaults).

use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{Result, SparsifyError};

/// How weights are scored (higher = more important, kept longer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// `|w|` (L1; fasterai's `large_final`).
    LargeFinal,
    /// `w²` (L2).
    SquaredFinal,
    /// `−|w|`: the smallest weights are kept.
    SmallFinal,
    /// Random scores (a baseline).
    Random,
    /// `|w₀|`: large initial weights.
    LargeInit,
    /// `−|w₀|`.
    SmallInit,
    /// `min(|w₀|, |w|)`.
    LargeInitLargeFinal,
    /// `−max(|w₀|, |w|)`.
    SmallInitSmallFinal,
    /// `|w| − |w₀|`.
    MagnitudeIncrease,
    /// `|w − w₀|`.
    Movement,
    /// `|w·(w − w₀)|`.
    MovMag,
    /// `|w| − |w_prev|`, against the weights at the previous pruning step.
    UpdatingMagnitudeIncrease,
    /// `|w − w_prev|`.
    UpdatingMovement,
    /// `|w·(w − w_prev)|`.
    UpdatingMovMag,
    /// First-order Taylor: `(w·∂L/∂w)²` (Molchanov et al., 2019); needs a gradient.
    Taylor,
    /// Wanda (Sun et al., 2023): `|w|·‖x_in‖`, with the input channel's activation norm from a
    /// calibration batch.
    Wanda,
}

/// What a criterion may need besides the weight, all in the weight's layout.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScoreInputs<'a> {
    /// Weights at initialisation.
    pub initial: Option<&'a [f32]>,
    /// Weights at the previous pruning step.
    pub previous: Option<&'a [f32]>,
    /// Gradient of the loss.
    pub gradient: Option<&'a [f32]>,
    /// RMS activation of each input channel (`in` long).
    pub input_norms: Option<&'a [f32]>,
    /// Seed of [`Criterion::Random`].
    pub seed: u64,
}

const NAMES: [(Criterion, &str); 16] = [
    (Criterion::LargeFinal, "large_final"),
    (Criterion::SquaredFinal, "squared_final"),
    (Criterion::SmallFinal, "small_final"),
    (Criterion::Random, "random"),
    (Criterion::LargeInit, "large_init"),
    (Criterion::SmallInit, "small_init"),
    (Criterion::LargeInitLargeFinal, "large_init_large_final"),
    (Criterion::SmallInitSmallFinal, "small_init_small_final"),
    (Criterion::MagnitudeIncrease, "magnitude_increase"),
    (Criterion::Movement, "movement"),
    (Criterion::MovMag, "movmag"),
    (
        Criterion::UpdatingMagnitudeIncrease,
        "updating_magnitude_increase",
    ),
    (Criterion::UpdatingMovement, "updating_movement"),
    (Criterion::UpdatingMovMag, "updating_movmag"),
    (Criterion::Taylor, "taylor"),
    (Criterion::Wanda, "wanda"),
];

impl FromStr for Criterion {
    type Err = SparsifyError;

    /// fasterai's names, plus `l1` (= large_final) and `l2` (= squared_final).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.replace('-', "_");
        match s.as_str() {
            "l1" | "magnitude" => return Ok(Criterion::LargeFinal),
            "l2" => return Ok(Criterion::SquaredFinal),
            _ => {}
        }
        NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(c, _)| *c)
            .ok_or_else(|| {
                SparsifyError::Config(format!(
                    "unknown criterion `{s}`; one of: l1, l2, {}",
                    NAMES.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
                ))
            })
    }
}

impl Criterion {
    /// fasterai's name.
    pub fn name(&self) -> &'static str {
        NAMES.iter().find(|(c, _)| c == self).expect("listed").1
    }

    /// Whether the weights at initialisation are needed.
    pub fn needs_initial(&self) -> bool {
        use Criterion::*;
        matches!(
            self,
            LargeInit
                | SmallInit
                | LargeInitLargeFinal
                | SmallInitSmallFinal
                | MagnitudeIncrease
                | Movement
                | MovMag
        )
    }

    /// Whether the weights at the previous pruning step are needed.
    pub fn needs_previous(&self) -> bool {
        use Criterion::*;
        matches!(
            self,
            UpdatingMagnitudeIncrease | UpdatingMovement | UpdatingMovMag
        )
    }

    /// Element-wise scores of `w` (`shape` in PyTorch layout), non-negative.
    pub fn scores(&self, w: &[f32], shape: &[usize], inputs: &ScoreInputs<'_>) -> Result<Vec<f32>> {
        use Criterion::*;
        let need = |x: Option<&[f32]>, what: &str| -> Result<Vec<f32>> {
            let x = x.ok_or_else(|| {
                SparsifyError::Config(format!("criterion {} needs {what}", self.name()))
            })?;
            if x.len() != w.len() {
                return Err(SparsifyError::Config(format!(
                    "{what} has {} values for a weight of {}",
                    x.len(),
                    w.len()
                )));
            }
            Ok(x.to_vec())
        };
        let pair = |r: &[f32], f: &dyn Fn(f32, f32) -> f32| {
            w.iter().zip(r).map(|(&a, &b)| f(a, b)).collect()
        };
        let mut s: Vec<f32> = match self {
            LargeFinal => w.iter().map(|v| v.abs()).collect(),
            SquaredFinal => w.iter().map(|v| v * v).collect(),
            SmallFinal => w.iter().map(|v| -v.abs()).collect(),
            Random => {
                let mut rng = StdRng::seed_from_u64(inputs.seed);
                w.iter().map(|_| rng.random::<f32>()).collect()
            }
            LargeInit => need(inputs.initial, "the initial weights")?
                .iter()
                .map(|v| v.abs())
                .collect(),
            SmallInit => need(inputs.initial, "the initial weights")?
                .iter()
                .map(|v| -v.abs())
                .collect(),
            LargeInitLargeFinal => pair(&need(inputs.initial, "the initial weights")?, &|a, b| {
                a.abs().min(b.abs())
            }),
            SmallInitSmallFinal => pair(&need(inputs.initial, "the initial weights")?, &|a, b| {
                -a.abs().max(b.abs())
            }),
            MagnitudeIncrease => pair(&need(inputs.initial, "the initial weights")?, &|a, b| {
                a.abs() - b.abs()
            }),
            Movement => pair(&need(inputs.initial, "the initial weights")?, &|a, b| {
                (a - b).abs()
            }),
            MovMag => pair(&need(inputs.initial, "the initial weights")?, &|a, b| {
                (a * (a - b)).abs()
            }),
            UpdatingMagnitudeIncrease => {
                pair(&need(inputs.previous, "the previous weights")?, &|a, b| {
                    a.abs() - b.abs()
                })
            }
            UpdatingMovement => pair(&need(inputs.previous, "the previous weights")?, &|a, b| {
                (a - b).abs()
            }),
            UpdatingMovMag => pair(&need(inputs.previous, "the previous weights")?, &|a, b| {
                (a * (a - b)).abs()
            }),
            Taylor => pair(&need(inputs.gradient, "a gradient")?, &|a, g| {
                (a * g).powi(2)
            }),
            Wanda => {
                let norms = inputs.input_norms.ok_or_else(|| {
                    SparsifyError::Config("criterion wanda needs a calibration batch".into())
                })?;
                let per_out: usize = shape[1..].iter().product();
                let per_in: usize = shape[2..].iter().product::<usize>().max(1);
                if norms.len() != shape[1] {
                    return Err(SparsifyError::Config(format!(
                        "{} input norms for {} input channels",
                        norms.len(),
                        shape[1]
                    )));
                }
                w.iter()
                    .enumerate()
                    .map(|(i, v)| v.abs() * norms[(i % per_out) / per_in])
                    .collect()
            }
        };
        // Shift to non-negative (fasterai adds machine epsilon so nothing ties at zero).
        let min = s.iter().copied().fold(f32::INFINITY, f32::min);
        let shift = if min < 0.0 { -min } else { 0.0 } + f32::EPSILON;
        s.iter_mut().for_each(|v| *v += shift);
        Ok(s)
    }
}
