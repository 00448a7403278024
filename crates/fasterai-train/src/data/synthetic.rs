//! A generated dataset for demos and quick tests: each class is a fixed random pattern of 4×4
//! coloured blocks, and each image that pattern shifted by a few pixels under noise, so a small
//! CNN learns it in seconds and accuracy well above chance shows that training works.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{ImageSet, Result};

/// `n` images of `shape` in `classes` classes (balanced), reproducible from `seed`.
pub fn synthetic(n: usize, classes: usize, shape: [usize; 3], seed: u64) -> Result<ImageSet> {
    let [c, h, w] = shape;
    // Patterns come from a seed of their own, so train and validation sets drawn with
    // different seeds share them.
    let mut pattern_rng = StdRng::seed_from_u64(0x5eed);
    const GRID: usize = 4;
    let patterns: Vec<Vec<f32>> = (0..classes)
        .map(|_| {
            (0..c * GRID * GRID)
                .map(|_| pattern_rng.random::<f32>())
                .collect()
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * c * h * w);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = i % classes.max(1);
        let (dy, dx) = (rng.random_range(0..=h / 8), rng.random_range(0..=w / 8));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let (gy, gx) = ((y + dy) % h * GRID / h, (x + dx) % w * GRID / w);
                    let v = 0.7 * patterns[label][(ch * GRID + gy) * GRID + gx]
                        + 0.3 * rng.random::<f32>();
                    pixels.push((v * 255.0) as u8);
                }
            }
        }
        labels.push(label as u8);
    }
    let names = (0..classes).map(|k| format!("class{k}")).collect();
    ImageSet::new(pixels, labels, shape, names)
}
