//! Activation ranges from calibration data: min-max, percentile, or the clipping that
//! minimises the quantization error over the observed values.

use std::fmt;
use std::str::FromStr;

use fasterai_core::quant::ActivationGrid;

use crate::{QuantizeError, Result};

/// How an activation's range is chosen from what the calibration set shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    /// The smallest and largest value seen: nothing saturates, outliers stretch the grid.
    MinMax,
    /// The `p`-th percentile at the top (and `100 - p` at the bottom): the rarest values
    /// saturate so the common ones get finer steps.
    Percentile(f64),
    /// The clipping (a fraction of the min-max range) with the least mean squared error
    /// between values and their quantized form, rounding and saturation together.
    Mse,
}

impl Calibration {
    /// Checks the percentile.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Calibration::Percentile(p) if !(p > 50.0 && p <= 100.0) => Err(QuantizeError::Config(
                format!("percentile {p} must be in (50, 100]"),
            )),
            _ => Ok(()),
        }
    }

    /// Whether ranges need a histogram (a second pass over the data).
    pub(crate) fn needs_histogram(&self) -> bool {
        !matches!(self, Calibration::MinMax)
    }
}

impl FromStr for Calibration {
    type Err = QuantizeError;

    fn from_str(s: &str) -> Result<Self> {
        let method = match s {
            "minmax" => Calibration::MinMax,
            "mse" => Calibration::Mse,
            _ => match s.strip_prefix("percentile:").map(str::parse::<f64>) {
                Some(Ok(p)) => Calibration::Percentile(p),
                _ => {
                    return Err(QuantizeError::Config(format!(
                        "unknown calibration `{s}`: use minmax, percentile:P (e.g. \
                         percentile:99.99) or mse"
                    )));
                }
            },
        };
        method.validate()?;
        Ok(method)
    }
}

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Calibration::MinMax => write!(f, "minmax"),
            Calibration::Percentile(p) => write!(f, "percentile:{p}"),
            Calibration::Mse => write!(f, "mse"),
        }
    }
}

/// Bins of the histogram (over the min-max range) that percentile and MSE read.
const BINS: usize = 2048;

/// What one layer input looked like over the calibration set.
#[derive(Debug, Clone)]
pub(crate) struct Observer {
    pub min: f32,
    pub max: f32,
    counts: Vec<u64>,
}

impl Observer {
    pub(crate) fn new() -> Self {
        Observer {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            counts: Vec::new(),
        }
    }

    /// First pass: the range.
    pub(crate) fn observe_range(&mut self, values: &[f32]) {
        for &v in values {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    /// Second pass: counts over the first pass's range.
    pub(crate) fn observe_histogram(&mut self, values: &[f32]) {
        if self.counts.is_empty() {
            self.counts = vec![0; BINS];
        }
        let width = (self.max - self.min).max(f32::MIN_POSITIVE);
        for &v in values {
            let bin = (((v - self.min) / width) * BINS as f32) as usize;
            self.counts[bin.min(BINS - 1)] += 1;
        }
    }

    fn bin_center(&self, bin: usize) -> f32 {
        self.min + (self.max - self.min) * (bin as f32 + 0.5) / BINS as f32
    }

    /// The value below which `fraction` of the observations lie (bin resolution).
    fn quantile(&self, fraction: f64) -> f32 {
        let total: u64 = self.counts.iter().sum();
        let wanted = (fraction * total as f64).ceil() as u64;
        let mut seen = 0;
        for (bin, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= wanted.max(1) {
                return self.min + (self.max - self.min) * (bin + 1) as f32 / BINS as f32;
            }
        }
        self.max
    }

    /// Mean squared error of the histogram's values on `grid`.
    fn error(&self, grid: &ActivationGrid) -> f64 {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(bin, &c)| {
                let x = self.bin_center(bin);
                let d = (x - grid.fake_quantize(x)) as f64;
                c as f64 * d * d
            })
            .sum()
    }

    /// The grid for this input.
    pub(crate) fn grid(&self, method: Calibration, bits: u8) -> ActivationGrid {
        if !(self.min.is_finite() && self.max.is_finite()) {
            return ActivationGrid::from_range(0.0, 0.0, bits);
        }
        match method {
            Calibration::MinMax => ActivationGrid::from_range(self.min, self.max, bits),
            Calibration::Percentile(p) => {
                let hi = self.quantile(p / 100.0);
                let lo = if self.min < 0.0 {
                    self.quantile(1.0 - p / 100.0)
                } else {
                    self.min
                };
                ActivationGrid::from_range(lo, hi, bits)
            }
            Calibration::Mse => {
                (1..=100)
                    .map(|k| {
                        let f = k as f32 / 100.0;
                        let grid = ActivationGrid::from_range(self.min * f, self.max * f, bits);
                        (self.error(&grid), grid)
                    })
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .expect("100 candidates")
                    .1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(values: &[f32]) -> Observer {
        let mut o = Observer::new();
        o.observe_range(values);
        o.observe_histogram(values);
        o
    }

    #[test]
    fn methods_parse_and_bad_ones_say_what_to_use() {
        assert_eq!(
            "minmax".parse::<Calibration>().unwrap(),
            Calibration::MinMax
        );
        assert_eq!(
            "percentile:99.9".parse::<Calibration>().unwrap(),
            Calibration::Percentile(99.9)
        );
        assert_eq!("mse".parse::<Calibration>().unwrap(), Calibration::Mse);
        let err = "entropy".parse::<Calibration>().unwrap_err().to_string();
        assert!(err.contains("minmax, percentile:P"), "{err}");
        let err = "percentile:120"
            .parse::<Calibration>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("(50, 100]"), "{err}");
    }

    #[test]
    fn an_outlier_stretches_minmax_but_not_percentile_or_mse() {
        // 10 000 values uniform in [0, 1] and one at 100.
        let mut values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        values.push(100.0);
        let o = observed(&values);
        let minmax = o.grid(Calibration::MinMax, 8);
        assert!((minmax.scale - 100.0 / 255.0).abs() < 1e-6);
        let pct = o.grid(Calibration::Percentile(99.9), 8);
        assert!(pct.scale < 1.1 / 255.0, "{pct:?}");
        // A single far outlier costs more squared error clipped than rounded: MSE keeps it.
        assert_eq!(o.grid(Calibration::Mse, 8), minmax);
    }

    #[test]
    fn mse_clips_a_dense_tail() {
        // Bell-shaped values (sum of 4 uniforms): at 4 bits, rounding error dominates and the
        // best range clips the tail.
        let mut state = 1u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let values: Vec<f32> = (0..50_000)
            .map(|_| (0..4).map(|_| uniform()).sum::<f32>() - 2.0)
            .collect();
        let o = observed(&values);
        let minmax = o.grid(Calibration::MinMax, 4);
        let mse = o.grid(Calibration::Mse, 4);
        assert!(mse.scale < 0.8 * minmax.scale, "{mse:?} {minmax:?}");
        assert!(o.error(&mse) < o.error(&minmax));
    }
}
