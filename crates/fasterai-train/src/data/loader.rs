//! Batches of normalised (and, for training, augmented) float tensors from an [`ImageSet`].
//!
//! Burn's `DataLoader` would need a `Dataset` and a `Batcher` around the same few lines, and
//! its own shuffling; an iterator with one seeded RNG for order, crops and flips keeps runs
//! reproducible from `TrainConfig::seed` alone.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::ImageSet;

/// Per-channel `(x/255 − mean) / std`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    /// Channel means, in 0–1 units.
    pub mean: Vec<f32>,
    /// Channel standard deviations, in 0–1 units.
    pub std: Vec<f32>,
}

impl Normalize {
    /// The same statistics for every one of `channels`.
    pub fn uniform(channels: usize, mean: f32, std: f32) -> Self {
        Self {
            mean: vec![mean; channels],
            std: vec![std; channels],
        }
    }
}

/// Training-time augmentation (the usual CIFAR recipe): a random `H×W` crop of the image
/// zero-padded by `pad` on each side, and a horizontal flip with probability ½.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Augment {
    /// Padding of the random crop (0: no cropping).
    pub pad: usize,
    /// Random horizontal flips.
    pub flip: bool,
}

/// One batch: images `[B, C, H, W]`, targets `[B]`.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised images.
    pub images: Tensor<4>,
    /// Class indices.
    pub targets: Tensor<1, Int>,
    /// The same class indices on the host.
    pub labels: Vec<u8>,
}

/// An iterator of [`Batch`]es over an [`ImageSet`] (the last batch may be smaller).
pub struct Batches<'a> {
    set: &'a ImageSet,
    order: Vec<usize>,
    next: usize,
    batch_size: usize,
    normalize: Normalize,
    augment: Option<(Augment, StdRng)>,
    device: Device,
}

impl ImageSet {
    /// Batches in order, without augmentation (evaluation).
    pub fn batches(
        &self,
        batch_size: usize,
        normalize: &Normalize,
        device: &Device,
    ) -> Batches<'_> {
        Batches {
            set: self,
            order: (0..self.len()).collect(),
            next: 0,
            batch_size: batch_size.max(1),
            normalize: normalize.clone(),
            augment: None,
            device: device.clone(),
        }
    }

    /// Batches in an order shuffled by `seed`, augmented (training).
    pub fn shuffled_batches(
        &self,
        batch_size: usize,
        normalize: &Normalize,
        augment: Augment,
        seed: u64,
        device: &Device,
    ) -> Batches<'_> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut batches = self.batches(batch_size, normalize, device);
        batches.order.shuffle(&mut rng);
        batches.augment = Some((augment, rng));
        batches
    }
}

impl Batches<'_> {
    /// Number of batches in total.
    pub fn count(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    fn write_image(&mut self, index: usize, out: &mut Vec<f32>) {
        let [c, h, w] = self.set.shape();
        let image = self.set.image(index);
        let (pad, dy, dx, flip) = match &mut self.augment {
            Some((a, rng)) => (
                a.pad,
                rng.random_range(0..=2 * a.pad),
                rng.random_range(0..=2 * a.pad),
                a.flip && rng.random::<bool>(),
            ),
            None => (0, 0, 0, false),
        };
        for ch in 0..c {
            let (mean, std) = (self.normalize.mean[ch], self.normalize.std[ch]);
            let plane = &image[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                // Source row/column in the padded image, then in the original.
                let sy = (y + dy).wrapping_sub(pad);
                for x in 0..w {
                    let x = if flip { w - 1 - x } else { x };
                    let sx = (x + dx).wrapping_sub(pad);
                    let raw = if sy < h && sx < w {
                        plane[sy * w + sx]
                    } else {
                        0
                    };
                    out.push((raw as f32 / 255.0 - mean) / std);
                }
            }
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let indices: Vec<usize> = self.order[self.next..end].to_vec();
        self.next = end;
        let [c, h, w] = self.set.shape();
        let mut data = Vec::with_capacity(indices.len() * c * h * w);
        for &i in &indices {
            self.write_image(i, &mut data);
        }
        let labels: Vec<u8> = indices.iter().map(|&i| self.set.labels()[i]).collect();
        let images = Tensor::from_data(
            TensorData::new(data, [indices.len(), c, h, w]),
            &self.device,
        );
        let targets = Tensor::from_data(
            TensorData::new(
                labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
                [labels.len()],
            ),
            &self.device,
        );
        Some(Batch {
            images,
            targets,
            labels,
        })
    }
}
