//! Inference latency: warm-up runs, then timed runs that each end with a device sync, so that
//! asynchronous backends (wgpu, CUDA) are timed to completion.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use serde::Serialize;

use fasterai_core::{CoreError, Result};

use crate::Inference;

/// Latency statistics in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Input shape including the batch dimension.
    pub input_shape: [usize; 4],
    /// Timed runs.
    pub runs: usize,
    /// Median.
    pub median_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Fastest run.
    pub min_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
    /// The first call (warm-up included): on a prepared graph it chooses the paths for the
    /// input's shape and fills the buffer pool.
    pub first_ms: f64,
}

impl Latency {
    /// Images per second at the median latency.
    pub fn images_per_second(&self) -> f64 {
        self.input_shape[0] as f64 / (self.median_ms / 1e3)
    }
}

/// Times `net` on a random input of shape `input` (`[batch, C, H, W]`) on `device`
/// ([`Inference::plain`] times the graph exactly as built, [`Inference::new`] as prepared).
/// `progress` is called after each run (warm-up included) with the number of runs done.
pub fn measure(
    net: &Inference,
    input: [usize; 4],
    device: &Device,
    warmup: usize,
    runs: usize,
    mut progress: impl FnMut(usize),
) -> Result<Latency> {
    if runs == 0 || input[0] == 0 {
        return Err(CoreError::BadInput {
            got: input.to_vec(),
            expected: "at least one run and one image".into(),
        });
    }
    net.graph().shapes(&input[1..])?.check_batch(input[0])?;
    let x = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), device);
    let sync = || {
        device
            .sync()
            .map_err(|e| CoreError::io("<device>", format!("{e:?}")))
    };
    sync()?;
    let mut times = Vec::with_capacity(runs);
    let mut first_ms = 0.0;
    for i in 0..warmup + runs {
        let start = Instant::now();
        let out = net.forward(x.clone());
        sync()?;
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        drop(out);
        if i == 0 {
            first_ms = elapsed;
        }
        if i >= warmup {
            times.push(elapsed);
        }
        progress(i + 1);
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    Ok(Latency {
        input_shape: input,
        runs,
        median_ms: median,
        mean_ms: times.iter().sum::<f64>() / n as f64,
        min_ms: times[0],
        max_ms: times[n - 1],
        first_ms,
    })
}
