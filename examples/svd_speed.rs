//! Truncated SVD of VGG16's largest weight shape (4096×25088): LAPACK's full SVD (`gesdd`)
//! against the Gram-matrix path and `Auto` (Gram, or Full where Gram could lose accuracy), at
//! k = 2048 and k = 256, on two spectra, in one run, with the relative reconstruction error of
//! each.
//!
//! ```text
//! cargo run --release -p fasterai --example svd_speed            # full size (slow: full SVD)
//! cargo run --release -p fasterai --example svd_speed -- 1024 6272   # a quarter in each dimension
//! ```

use std::time::Instant;

use fasterai::core::linalg::{SvdMethod, truncated_svd};
use ndarray::Array2;

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let (m, n) = match args[..] {
        [m, n] => (m, n),
        _ => (4096, 25088),
    };
    let mut state = 42u64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    // Uniform noise: a flat spectrum like an untrained weight (the issue's error 0.575 at
    // k = m/2); and a decaying low-rank spectrum under 1 % noise, whose tiny discarded tail
    // is the Gram path's hard case.
    let flat = Array2::from_shape_fn((m, n), |_| noise());
    let r = m.min(n) / 8;
    let left = Array2::from_shape_fn((m, r), |(_, j)| {
        noise() * (-(j as f32) / (r as f32 / 4.0)).exp()
    });
    let right = Array2::from_shape_fn((r, n), |_| noise());
    let decaying = left.dot(&right) + Array2::from_shape_fn((m, n), |_| 0.01 * noise());
    for (name, a) in [("flat", flat), ("decaying", decaying)] {
        println!("{name} matrix {m}×{n}");
        let norm2: f64 = a.iter().map(|&v| (v as f64).powi(2)).sum();
        for k in [m.min(n) / 2, m.min(n) / 16] {
            let mut runs = Vec::new();
            for method in [SvdMethod::Full, SvdMethod::Gram, SvdMethod::Auto] {
                let start = Instant::now();
                let low = truncated_svd(&a, k, method)?;
                let secs = start.elapsed().as_secs_f64();
                // Measured on the residual itself: the norms' difference cancels when the
                // tail holds little energy.
                let residual = &a - &low.left.dot(&low.right);
                let error =
                    (residual.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / norm2).sqrt();
                runs.push((method, secs, error));
            }
            let (_, full_secs, full_error) = runs[0];
            for (method, secs, error) in runs {
                println!(
                    "  k = {k:>5}  {:<5} {secs:>7.2} s  ({:>4.1}× Full)  relative error {error:.6}  (differs from Full's by {:.1e})",
                    format!("{method:?}"),
                    full_secs / secs,
                    (error - full_error).abs() / full_error
                );
            }
        }
    }
    Ok(())
}
