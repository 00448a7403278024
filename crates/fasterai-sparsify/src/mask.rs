//! From element scores to a 0/1 mask: average the scores over each group of a granularity,
//! then keep the best groups (per layer, or against one global threshold), or keep `n` of
//! every `m` consecutive weights (N:M semi-structured sparsity).

use crate::{Result, SparsifyError};

/// Groups of a weight of `shape` when the scores are reduced over `reduced` dimensions.
#[derive(Debug, Clone)]
pub struct Groups {
    shape: Vec<usize>,
    reduced: Vec<usize>,
}

impl Groups {
    /// `shape` in PyTorch layout; `reduced` from
    /// [`Granularity::reduced_dims`](crate::Granularity::reduced_dims).
    pub fn new(shape: &[usize], reduced: &[usize]) -> Self {
        Self {
            shape: shape.to_vec(),
            reduced: reduced.to_vec(),
        }
    }

    /// Number of groups.
    pub fn count(&self) -> usize {
        self.shape
            .iter()
            .enumerate()
            .filter(|(d, _)| !self.reduced.contains(d))
            .map(|(_, n)| n)
            .product()
    }

    /// Weights per group.
    pub fn size(&self) -> usize {
        self.reduced.iter().map(|&d| self.shape[d]).product()
    }

    /// The group of the element at row-major `index`.
    pub fn group_of(&self, mut index: usize) -> usize {
        let mut group = 0;
        let mut stride = 1;
        for d in (0..self.shape.len()).rev() {
            let i = index % self.shape[d];
            index /= self.shape[d];
            if !self.reduced.contains(&d) {
                group += i * stride;
                stride *= self.shape[d];
            }
        }
        group
    }

    /// The group of every element, in row-major order: an odometer over the shape, so no
    /// division per element (calling `group_of` per weight was most of the scoring time on VGG16).
    fn element_groups(&self) -> impl Iterator<Item = usize> + '_ {
        let rank = self.shape.len();
        let mut strides = vec![0; rank];
        let mut stride = 1;
        for d in (0..rank).rev() {
            if !self.reduced.contains(&d) {
                strides[d] = stride;
                stride *= self.shape[d];
            }
        }
        let mut index = vec![0; rank];
        let mut group = 0;
        (0..self.shape.iter().product::<usize>()).map(move |_| {
            let current = group;
            for d in (0..rank).rev() {
                index[d] += 1;
                group += strides[d];
                if index[d] < self.shape[d] {
                    break;
                }
                group -= strides[d] * self.shape[d];
                index[d] = 0;
            }
            current
        })
    }

    /// Mean score of every group.
    pub fn mean_scores(&self, scores: &[f32]) -> Vec<f64> {
        let mut sums = vec![0.0f64; self.count()];
        for (&s, g) in scores.iter().zip(self.element_groups()) {
            sums[g] += s as f64;
        }
        let size = self.size() as f64;
        sums.iter_mut().for_each(|s| *s /= size);
        sums
    }

    /// Number of groups with a nonzero value in `values`.
    pub fn nonzero(&self, values: &[f32]) -> usize {
        let mut nonzero = vec![false; self.count()];
        for (&v, g) in values.iter().zip(self.element_groups()) {
            nonzero[g] |= v != 0.0;
        }
        nonzero.iter().filter(|&&n| n).count()
    }

    /// The element mask of a per-group decision.
    pub fn expand(&self, keep: &[bool]) -> Vec<f32> {
        self.element_groups()
            .map(|g| if keep[g] { 1.0 } else { 0.0 })
            .collect()
    }
}

/// Groups to remove for `sparsity` of `n`: `floor(sparsity·n)`, adjusted so the number kept
/// is a multiple of `round_to` (at least `round_to`, at most `n`).
pub fn groups_to_remove(n: usize, sparsity: f64, round_to: usize) -> usize {
    let remove = (sparsity * n as f64 + 1e-9).floor() as usize;
    if round_to <= 1 {
        return remove.min(n);
    }
    let keep = n - remove.min(n);
    let rounded = ((keep as f64 / round_to as f64).round() as usize * round_to)
        .max(round_to)
        .min(n);
    n - rounded
}

/// Keeps all but the `remove` lowest-scoring groups (ties: the earlier group is removed first,
/// so results are deterministic).
pub fn keep_best(scores: &[f64], remove: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut keep = vec![true; scores.len()];
    for &i in order.iter().take(remove) {
        keep[i] = false;
    }
    keep
}

/// One threshold over the scores of several layers: the groups below the `floor(sparsity·N)`-th
/// smallest of all `N` are removed. Returns the number to remove from each layer.
pub fn global_removals(layers: &[Vec<f64>], sparsity: f64) -> Vec<usize> {
    let mut all: Vec<(f64, usize, usize)> = layers
        .iter()
        .enumerate()
        .flat_map(|(l, s)| s.iter().enumerate().map(move |(i, &v)| (v, l, i)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let remove = (sparsity * all.len() as f64 + 1e-9).floor() as usize;
    let mut counts = vec![0; layers.len()];
    for &(_, l, _) in all.iter().take(remove) {
        counts[l] += 1;
    }
    counts
}

/// N:M semi-structured mask: in every run of `m` consecutive weights along each output's
/// inputs (`in·kh·kw` for a conv), the `n` best-scoring are kept.
pub fn n_of_m(scores: &[f32], shape: &[usize], n: usize, m: usize) -> Result<Vec<f32>> {
    let row: usize = shape[1..].iter().product();
    if m == 0 || n == 0 || n > m {
        return Err(SparsifyError::Config(format!("{n}:{m} needs 0 < n ≤ m")));
    }
    if !row.is_multiple_of(m) {
        return Err(SparsifyError::Config(format!(
            "{n}:{m} sparsity needs the input size per output ({row}) to be a multiple of {m}"
        )));
    }
    let mut mask = vec![0.0; scores.len()];
    for (block, out) in scores.chunks(m).zip(mask.chunks_mut(m)) {
        for i in keep_best(&block.iter().map(|&v| v as f64).collect::<Vec<_>>(), m - n)
            .iter()
            .enumerate()
            .filter(|(_, k)| **k)
            .map(|(i, _)| i)
        {
            out[i] = 1.0;
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_odometer_agrees_with_group_of() {
        let shape = [3, 4, 2, 5];
        let reductions: [&[usize]; 6] = [&[], &[0], &[1, 2, 3], &[2, 3], &[0, 2], &[0, 1, 2, 3]];
        for reduced in reductions {
            let groups = Groups::new(&shape, reduced);
            let fast: Vec<usize> = groups.element_groups().collect();
            let slow: Vec<usize> = (0..fast.len()).map(|i| groups.group_of(i)).collect();
            assert_eq!(fast.len(), 120);
            assert_eq!(fast, slow, "reduced {reduced:?}");
        }
    }
}
