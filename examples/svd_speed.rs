//! Truncated SVD of VGG16's largest weight shape (4096×25088): LAPACK's full SVD (`gesdd`)
//! against the exact Gram-matrix path, at k = 2048 and k = 256, in one run, with the relative
//! reconstruction error of each.
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
    // A trained-looking spectrum: decaying singular values plus noise, from a seeded LCG.
    let mut state = 42u64;
    let mut noise = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let r = m.min(n) / 8;
    let left = Array2::from_shape_fn((m, r), |(_, j)| {
        noise() * (-(j as f32) / (r as f32 / 4.0)).exp()
    });
    let right = Array2::from_shape_fn((r, n), |_| noise());
    let a = left.dot(&right) + Array2::from_shape_fn((m, n), |_| 0.01 * noise());
    println!("matrix {m}×{n}");
    for k in [m.min(n) / 2, m.min(n) / 16] {
        let mut errors = Vec::new();
        for method in [SvdMethod::Gram, SvdMethod::Full] {
            let start = Instant::now();
            let low = truncated_svd(&a, k, method)?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "  k = {k:>5}  {method:?}: {secs:>7.2} s   relative error {:.6}",
                low.relative_error
            );
            errors.push((secs, low.relative_error));
        }
        let ((fast, e_fast), (full, e_full)) = (errors[0], errors[1]);
        println!(
            "  k = {k:>5}  speed-up {:.1}×, error difference {:.2e} relative",
            full / fast,
            (e_fast - e_full).abs() / e_full
        );
    }
    Ok(())
}
