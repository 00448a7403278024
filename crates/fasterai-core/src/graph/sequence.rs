//! What a decoder pass knows besides its input: where its tokens sit in their sequences, which
//! keys are padding, and the keys and values of earlier passes (the key/value cache), so that
//! generating `n` tokens costs `n` one-token passes instead of `n` growing ones.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// Where the tokens of one pass sit in their sequences.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    /// Tokens every sequence already holds (in the cache): this pass's tokens are at
    /// `past, past + 1, …`.
    pub past: usize,
    /// Per-sample positions `[N, T]`, where sequences differ (left-padded prompts): overrides
    /// `past`.
    pub explicit: Option<Tensor<2, Int>>,
}

impl Positions {
    /// The position of each token of an `[n, t]` pass.
    pub fn ids(&self, n: usize, t: usize, device: &Device) -> Tensor<2, Int> {
        if let Some(p) = &self.explicit {
            return p.clone();
        }
        let row: Vec<i64> = (self.past as i64..(self.past + t) as i64).collect();
        Tensor::<1, Int>::from_data(TensorData::new(row, [t]), device)
            .reshape([1, t])
            .expand([n, t])
    }
}

/// One attention node's keys and values so far, `[N, kv_heads, past, head_dim]` each.
pub type KeyValues = (Tensor<4>, Tensor<4>);

/// What sequence ops read during one pass.
pub struct Step<'a> {
    /// The tokens' positions.
    pub positions: &'a Positions,
    /// `[N, past + T]`, true where a key is padding (never attended to); `None`: none is.
    pub padding: Option<&'a Tensor<2, Bool>>,
    /// The node's cache entry, when the pass keeps one: read, then extended by this pass.
    pub cache: Option<&'a mut Option<KeyValues>>,
}

/// The state a decoder carries from pass to pass: positions, padding and every attention
/// node's keys and values. Start with [`Decoding::new`], hand it to
/// [`Graph::forward_decoding`](crate::graph::Graph::forward_decoding) once per pass.
#[derive(Debug, Clone, Default)]
pub struct Decoding {
    /// Tokens already processed per sequence.
    pub past: usize,
    /// `[N, past]`: which earlier tokens were padding (`None`: none were).
    pub padding: Option<Tensor<2, Bool>>,
    /// Each sequence's next position (left-padded prompts start later); `None`: `past`.
    pub next_position: Option<Vec<i64>>,
    /// Per node (by index), its keys and values; `None` for other nodes.
    pub cache: Vec<Option<KeyValues>>,
    /// Whether to keep keys and values at all (a one-off pass need not).
    pub keep_cache: bool,
}

impl Decoding {
    /// A fresh state that keeps the key/value cache.
    pub fn new() -> Self {
        Decoding {
            keep_cache: true,
            ..Default::default()
        }
    }
}

impl Decoding {
    /// The positions of a pass of `[n, t]` tokens with optional left `padding` (`[n·t]`), and
    /// the state moved on past them (padding and each sequence's next position).
    ///
    /// Positions follow `transformers`: a sequence's first real token is at 0 whatever
    /// padding precedes it (padding tokens get position 1; nothing attends to them).
    pub(crate) fn advance(
        &mut self,
        n: usize,
        t: usize,
        padding: Option<&[bool]>,
        device: &Device,
    ) -> Positions {
        let padded = padding.is_some() || self.padding.is_some();
        let mut positions = Positions {
            past: self.past,
            explicit: None,
        };
        if padded {
            let fresh = vec![false; n * t];
            let pad = padding.unwrap_or(&fresh);
            let next = self
                .next_position
                .get_or_insert_with(|| vec![self.past as i64; n]);
            let mut ids = Vec::with_capacity(n * t);
            for (s, next) in next.iter_mut().enumerate() {
                for &is_pad in &pad[s * t..(s + 1) * t] {
                    if is_pad {
                        ids.push(1);
                    } else {
                        ids.push(*next);
                        *next += 1;
                    }
                }
            }
            positions.explicit = Some(
                Tensor::<1, Int>::from_data(TensorData::new(ids, [n * t]), device).reshape([n, t]),
            );
            let pad = Tensor::<1, Bool>::from_data(TensorData::new(pad.to_vec(), [n * t]), device)
                .reshape([n, t]);
            self.padding = Some(match self.padding.take() {
                Some(old) => Tensor::cat(vec![old, pad], 1),
                None if self.past > 0 => {
                    let real = vec![false; n * self.past];
                    let real = Tensor::<1, Bool>::from_data(
                        TensorData::new(real, [n * self.past]),
                        device,
                    )
                    .reshape([n, self.past]);
                    Tensor::cat(vec![real, pad], 1)
                }
                None => pad,
            });
        }
        self.past += t;
        positions
    }
}
