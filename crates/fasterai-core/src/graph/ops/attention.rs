//! Multi-head self-attention as one op: what `torch.nn.MultiheadAttention` computes (packed
//! `in_proj` for q, k and v, `out_proj`), kept whole so that later passes see heads.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::module::{attention, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::rotary::{RotarySpec, rotate};
use super::{all_zero, select_dim, tokens};
use crate::graph::activation::Activation;
use crate::graph::coupling::GroupKind;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{Channels, InitScheme, LiveOp, Op, count};
use crate::graph::sequence::{Positions, Step};

/// Self-attention over tokens `[T, embed_dim]` → `[T, embed_dim]`:
/// `out_proj(concat_h softmax(q_h k_hᵀ · scale) v_h)` with `[q, k, v] = in_proj(x)`.
///
/// The widths of q, k and v (all heads together) are stored apart from `embed_dim`, and the
/// softmax scale is stored rather than derived, so that removing head dimensions later keeps
/// the function the model was trained with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiheadAttentionSpec {
    /// Width of the tokens read and written.
    pub embed_dim: usize,
    /// Number of heads.
    pub num_heads: usize,
    /// Width of the queries, all heads together.
    pub query_dim: usize,
    /// Width of the keys, all key/value heads together (a head's key is as wide as its query:
    /// they meet in a dot product).
    pub key_dim: usize,
    /// Width of the values, all key/value heads together; `out_proj` reads one value per
    /// query head, `value_dim · num_heads / kv_heads` features.
    pub value_dim: usize,
    /// Biases on `in_proj` and `out_proj`.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Factor on `q · k` before the softmax (`1/√head_dim` when built).
    pub scale: f64,
    /// Each token attends only to itself and the tokens before it (decoders).
    #[serde(default)]
    pub causal: bool,
    /// Key/value heads, when fewer than query heads (grouped-query attention: each serves
    /// `num_heads / kv_heads` query heads); `None`: one per query head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<usize>,
    /// Bias on `out_proj` where it differs from `bias` (Qwen2: q, k and v biased, the output
    /// not); `None`: as `bias`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_bias: Option<bool>,
    /// Rotary position encoding of queries and keys (Llama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotary: Option<RotarySpec>,
}

fn yes() -> bool {
    true
}

impl MultiheadAttentionSpec {
    /// `nn.MultiheadAttention(embed_dim, num_heads)` (bias, no mask): q, k and v as wide as
    /// the tokens, scale `1/√(embed_dim / num_heads)`.
    pub fn new(embed_dim: usize, num_heads: usize) -> Self {
        let head_dim = embed_dim.checked_div(num_heads).unwrap_or(0);
        Self {
            embed_dim,
            num_heads,
            query_dim: embed_dim,
            key_dim: embed_dim,
            value_dim: embed_dim,
            bias: true,
            scale: 1.0 / (head_dim.max(1) as f64).sqrt(),
            causal: false,
            kv_heads: None,
            out_bias: None,
            rotary: None,
        }
    }

    /// Key/value heads (query heads unless grouped).
    pub fn key_value_heads(&self) -> usize {
        self.kv_heads.unwrap_or(self.num_heads)
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.key_value_heads().max(1)
    }

    /// Width `out_proj` reads: one value per query head.
    pub fn out_proj_in(&self) -> usize {
        self.value_dim.saturating_mul(self.group_size())
    }

    /// Whether `out_proj` has a bias.
    pub fn has_out_bias(&self) -> bool {
        self.out_bias.unwrap_or(self.bias)
    }

    /// With a causal mask.
    pub fn with_causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// Rows of the packed `in_proj_weight`: q, then k, then v.
    pub fn in_proj_rows(&self) -> usize {
        self.query_dim + self.key_dim + self.value_dim
    }
}

impl Op for MultiheadAttentionSpec {
    fn kind(&self) -> &'static str {
        "MultiheadAttention"
    }

    fn validate(&self) -> Result<(), String> {
        let (e, h) = (self.embed_dim, self.num_heads);
        let kv = self.key_value_heads();
        let (q, k, v) = (self.query_dim, self.key_dim, self.value_dim);
        if e == 0 || h == 0 || kv == 0 || q == 0 || k == 0 || v == 0 {
            return Err(format!(
                "widths and head counts must be positive, got embed_dim {e}, {h} heads, {kv} \
                 key/value heads, q/k/v {q}/{k}/{v}"
            ));
        }
        if h % kv != 0 {
            return Err(format!(
                "{h} query heads do not split into groups over {kv} key/value heads"
            ));
        }
        for (name, width, heads) in [("query", q, h), ("key", k, kv), ("value", v, kv)] {
            if width % heads != 0 {
                return Err(format!(
                    "the {name} width {width} does not split into {heads} heads"
                ));
            }
        }
        if q / h != k / kv {
            return Err(format!(
                "query heads are {} wide but key heads {}: each query meets each key in a dot \
                 product, so their widths must match",
                q / h,
                k / kv
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(format!("scale {} must be positive", self.scale));
        }
        if let Some(rotary) = &self.rotary {
            rotary.validate(q / h)?;
        }
        Ok(())
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs[0] {
            [t, d] if *d == self.embed_dim => Ok(vec![*t, self.embed_dim]),
            [_, d] => Err(format!(
                "attention reads tokens of {} features, got {d}",
                self.embed_dim
            )),
            _ => Err(format!("expected tokens [T, {}]", self.embed_dim)),
        }
    }

    fn macs(&self, inputs: &[&[usize]], _output: &[usize]) -> u64 {
        let t = inputs[0].first().copied().unwrap_or(0);
        let (e, q, v) = (self.embed_dim, self.query_dim, self.out_proj_in());
        // in_proj, q·kᵀ, attention · v (per query head), out_proj.
        [
            count(&[t, e, self.in_proj_rows()]),
            count(&[t, t, q]),
            count(&[t, t, v]),
            count(&[t, v, e]),
        ]
        .iter()
        .fold(0usize, |n, &m| n.saturating_add(m)) as u64
    }

    fn params(&self) -> usize {
        let bias = if self.bias { 1 } else { 0 };
        let out_bias = if self.has_out_bias() { 1 } else { 0 };
        let rows = self.in_proj_rows();
        [
            count(&[rows, self.embed_dim]),
            bias * rows,
            count(&[self.out_proj_in(), self.embed_dim]),
            out_bias * self.embed_dim,
        ]
        .iter()
        .fold(0usize, |n, &m| n.saturating_add(m))
    }

    fn detail(&self) -> String {
        let head = self.query_dim / self.num_heads.max(1);
        let causal = if self.causal { ", causal" } else { "" };
        let grouped = match self.kv_heads {
            Some(kv) if kv != self.num_heads => format!(", {kv} kv heads"),
            _ => String::new(),
        };
        let rotary = if self.rotary.is_some() {
            ", rotary"
        } else {
            ""
        };
        format!(
            "{}, {} heads × {head}{grouped}{causal}{rotary}",
            self.embed_dim, self.num_heads
        )
    }

    fn channels(&self) -> Channels {
        // Reads every input feature (in_proj), writes new ones (out_proj).
        Channels::Transform
    }

    fn inner_units(&self) -> Vec<(GroupKind, usize)> {
        // Grouped heads and rotated dimensions are not removable one by one yet.
        if self.group_size() != 1 || self.rotary.is_some() {
            return Vec::new();
        }
        let h = self.num_heads.max(1);
        vec![
            (GroupKind::Head, self.num_heads),
            (GroupKind::QueryKeyDim, self.query_dim / h),
            (GroupKind::ValueDim, self.value_dim / h),
        ]
    }

    fn build(&self, scheme: InitScheme, device: &Device) -> Layer {
        let (e, rows) = (self.embed_dim, self.in_proj_rows());
        // PyTorch's MultiheadAttention: in_proj Xavier-uniform, out_proj Linear's default,
        // both biases zero.
        let weight = match scheme {
            InitScheme::Zeros => Initializer::Zeros,
            _ => Initializer::XavierUniform { gain: 1.0 },
        };
        let mut out_proj = LinearConfig::new(self.out_proj_in(), e).with_bias(self.has_out_bias());
        if scheme == InitScheme::Zeros {
            out_proj = out_proj.with_initializer(Initializer::Zeros);
        }
        let mut out_proj = out_proj.init(device);
        out_proj.bias = out_proj.bias.map(|b| b.map(|b| b.zeros_like()));
        Layer::MultiheadAttention(MultiheadAttention {
            in_proj_weight: weight.init_with([rows, e], Some(e), Some(rows), device),
            in_proj_bias: self.bias.then(|| Initializer::Zeros.init([rows], device)),
            out_proj,
            num_heads: self.num_heads,
            kv_heads: self.key_value_heads(),
            scale: self.scale,
            causal: self.causal,
            rotary: self.rotary,
        })
    }
}

/// A live attention op, with PyTorch's parameter names.
#[derive(Module, Debug)]
pub struct MultiheadAttention {
    /// `[q + k + v, embed_dim]`, PyTorch's layout (q rows, then k, then v).
    pub in_proj_weight: Param<Tensor<2>>,
    /// `[q + k + v]`.
    pub in_proj_bias: Option<Param<Tensor<1>>>,
    /// Values (all heads) to `embed_dim`.
    pub out_proj: Linear,
    /// Number of heads.
    #[module(skip)]
    pub num_heads: usize,
    /// Factor on `q · k`.
    #[module(skip)]
    pub scale: f64,
    /// Causal mask.
    #[module(skip)]
    pub causal: bool,
    /// Key/value heads (as many as `num_heads` unless grouped).
    #[module(skip)]
    pub kv_heads: usize,
    /// Rotary encoding of q and k.
    #[module(skip)]
    pub rotary: Option<RotarySpec>,
}

impl MultiheadAttention {
    /// Widths of q, k and v (all their heads), read off the weights.
    fn widths(&self) -> (usize, usize, usize) {
        let [rows, _] = self.in_proj_weight.lazy_shape().dims();
        let [out_in, _] = self.out_proj.weight.lazy_shape().dims();
        let (h, kv) = (self.num_heads, self.kv_heads.max(1));
        let v = out_in * kv / h.max(1);
        // q / h = k / kv, q + k = rows − v.
        let q = (rows - v) * h / (h + kv);
        (q, rows - v - q, v)
    }

    /// Each head's attention-weighted values over `[N, T, embed_dim]`: `[N, heads, T, head_v]`.
    fn context(&self, x: Tensor<3>) -> Tensor<4> {
        let positions = Positions::default();
        let step = Step {
            positions: &positions,
            padding: None,
            cache: None,
        };
        self.context_in(x, step)
    }

    /// [`context`](Self::context) at given positions, with padding and a key/value cache.
    fn context_in(&self, x: Tensor<3>, step: Step<'_>) -> Tensor<4> {
        let [n, t, _] = x.dims();
        let (q, k, v) = self.widths();
        let (h, kv) = (self.num_heads, self.kv_heads.max(1));
        let weight = self.in_proj_weight.val().transpose();
        let qkv = linear(x, weight, self.in_proj_bias.as_ref().map(Param::val));
        let heads = |start: usize, width: usize, count: usize| {
            qkv.clone()
                .narrow(2, start, width)
                .reshape([n, t, count, width / count])
                .swap_dims(1, 2)
        };
        let (mut queries, mut keys) = (heads(0, q, h), heads(q, k, kv));
        let mut values = heads(q + k, v, kv);
        if let Some(rotary) = &self.rotary {
            let device = queries.device();
            let ids = step.positions.ids(n, t, &device);
            let (cos, sin) = rotary.tables(ids, q / h, &device);
            queries = rotate(queries, &cos, &sin);
            keys = rotate(keys, &cos, &sin);
        }
        let past = match step.cache {
            Some(slot) => {
                let past = slot.as_ref().map_or(0, |(k, _)| k.dims()[2]);
                if let Some((old_k, old_v)) = slot.take() {
                    keys = Tensor::cat(vec![old_k, keys], 2);
                    values = Tensor::cat(vec![old_v, values], 2);
                }
                *slot = Some((keys.clone(), values.clone()));
                past
            }
            None => 0,
        };
        let group = h / kv;
        let repeat = |x: Tensor<4>| {
            if group == 1 {
                return x;
            }
            let [n, kv, s, d] = x.dims();
            x.unsqueeze_dim::<5>(2)
                .expand([n, kv, group, s, d])
                .reshape([n, kv * group, s, d])
        };
        let mask = self.mask(n, t, past, step.padding, &queries.device());
        let options = AttentionModuleOptions {
            scale: Some(self.scale),
            softcap: None,
            // A built mask already holds the causal part.
            is_causal: self.causal && mask.is_none(),
        };
        attention(queries, repeat(keys), repeat(values), mask, None, options)
    }

    /// `[N, 1, T, past + T]`, true where query `i` must not see key `j`: keys that are padding,
    /// and (causal) keys after the query's own position. `None` when the plain causal flag
    /// (or nothing) says it.
    fn mask(
        &self,
        n: usize,
        t: usize,
        past: usize,
        padding: Option<&Tensor<2, Bool>>,
        device: &Device,
    ) -> Option<Tensor<4, Bool>> {
        if padding.is_none() && (past == 0 || !self.causal || t == 1) {
            return None;
        }
        let keys = past + t;
        let mut mask: Option<Tensor<4, Bool>> = None;
        if self.causal && t > 1 {
            let later: Vec<bool> = (0..t)
                .flat_map(|i| (0..keys).map(move |j| j > past + i))
                .collect();
            let later = Tensor::<2, Bool>::from_data(TensorData::new(later, [t, keys]), device);
            mask = Some(later.reshape([1, 1, t, keys]).expand([n, 1, t, keys]));
        }
        if let Some(pad) = padding {
            let pad = pad.clone().reshape([n, 1, 1, keys]).expand([n, 1, t, keys]);
            mask = Some(match mask {
                Some(m) => m.bool_or(pad),
                None => pad,
            });
        }
        mask
    }

    /// Self-attention over `[N, T, embed_dim]`.
    pub fn attend(&self, x: Tensor<3>) -> Tensor<3> {
        let context = self.context(x);
        self.project(context)
    }

    /// Heads' contexts `[N, heads, T, head_v]` through `out_proj`.
    fn project(&self, context: Tensor<4>) -> Tensor<3> {
        let [n, h, t, d] = context.dims();
        let context = context.swap_dims(1, 2).reshape([n, t, h * d]);
        self.out_proj.forward(context)
    }

    /// How much each head writes: the root mean square over the `N · T` tokens of `x` of the
    /// norm of the head's term in the output (its values through its `out_proj` columns, bias
    /// aside). A head that writes nothing scores 0.
    pub fn head_output_norms(&self, x: Tensor<3>) -> Vec<f32> {
        let [n, t, _] = x.dims();
        let h = self.num_heads;
        let [v, e] = self.out_proj.weight.dims();
        // out_proj in Burn's [in, out] layout: rows of head k are k·v/h .. (k+1)·v/h.
        let per_head = self.out_proj.weight.val().reshape([1, h, v / h, e]);
        let terms = self.context(x).matmul(per_head); // [N, heads, T, embed]
        let tokens = (n * t).max(1) as f32;
        let sums = terms.square().sum_dim(3).sum_dim(2).sum_dim(0).reshape([h]);
        crate::linalg::host_values(sums)
            .into_iter()
            .map(|s| (s / tokens).sqrt())
            .collect()
    }
}

impl LiveOp for MultiheadAttention {
    fn spec(&self) -> LayerSpec {
        let [_, embed_dim] = self.in_proj_weight.lazy_shape().dims();
        let (q, k, v) = self.widths();
        let bias = self.in_proj_bias.is_some();
        let out_bias = self.out_proj.bias.is_some();
        LayerSpec::MultiheadAttention(MultiheadAttentionSpec {
            embed_dim,
            num_heads: self.num_heads,
            query_dim: q,
            key_dim: k,
            value_dim: v,
            bias,
            scale: self.scale,
            causal: self.causal,
            kv_heads: (self.kv_heads != self.num_heads).then_some(self.kv_heads),
            out_bias: (out_bias != bias).then_some(out_bias),
            rotary: self.rotary,
        })
    }

    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        Activation::Tokens(self.attend(tokens(inputs)))
    }

    fn forward_in(&self, inputs: Vec<Activation>, step: Step<'_>) -> Activation {
        let context = self.context_in(tokens(inputs), step);
        Activation::Tokens(self.project(context))
    }

    fn select_channels(&mut self, inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        if let Some(keep) = inputs {
            let w = select_dim(self.in_proj_weight.val(), 1, keep);
            self.in_proj_weight = Param::from_tensor(w);
        }
        if outputs.is_some() {
            self.out_proj.select_channels(None, outputs);
        }
    }

    fn constant_channels(
        &self,
        _inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        // An output whose out_proj column is zero is its bias whatever the tokens are.
        let [v, _] = self.out_proj.weight.dims();
        self.out_proj.constant_channels(&[vec![None; v]], &[], &[])
    }

    fn select_inner(&mut self, keep: &[Vec<bool>]) {
        let [heads, qk_dims, v_dims] = keep else {
            return;
        };
        // Row r of a q, k or v block belongs to head r / width at index r % width.
        let rows = |dims: &[bool]| -> Vec<bool> {
            heads
                .iter()
                .flat_map(|&h| dims.iter().map(move |&d| h && d))
                .collect()
        };
        let (q, v) = (rows(qk_dims), rows(v_dims));
        let packed: Vec<bool> = [&q, &q, &v].into_iter().flatten().copied().collect();
        self.in_proj_weight = Param::from_tensor(select_dim(self.in_proj_weight.val(), 0, &packed));
        if let Some(b) = &self.in_proj_bias {
            self.in_proj_bias = Some(Param::from_tensor(select_dim(b.val(), 0, &packed)));
        }
        self.out_proj.select_channels(Some(&v), None);
        // Only ungrouped attention offers inner units: key/value heads follow query heads.
        self.num_heads = heads.iter().filter(|h| **h).count();
        self.kv_heads = self.num_heads;
    }

    fn silent_inner(&self) -> Vec<Vec<bool>> {
        let (qk, _, v) = self.widths();
        let h = self.num_heads.max(1);
        let (dq, dv) = (qk / h, v / h);
        let [_, e] = self.in_proj_weight.dims();
        let w = crate::linalg::host_values(self.in_proj_weight.val());
        let b = self
            .in_proj_bias
            .as_ref()
            .map(|b| crate::linalg::host_values(b.val()));
        // out_proj in Burn's [in, out] layout: input row r is one value feature.
        let wo = crate::linalg::host_values(self.out_proj.weight.val());
        let eo = wo.len() / v.max(1);
        // Packed row r (weight and bias) is zero: that q, k or v feature is 0 for every token.
        let row_zero =
            |r: usize| all_zero(&w[r * e..(r + 1) * e]) && b.as_ref().is_none_or(|b| b[r] == 0.0);
        let out_zero = |c: usize| all_zero(&wo[c * eo..(c + 1) * eo]);
        // A value feature adds nothing when it is 0 or out_proj never reads it.
        let value_silent = |c: usize| row_zero(2 * qk + c) || out_zero(c);
        // A q·k term is 0 when either side is.
        let qk_silent = |c: usize| row_zero(c) || row_zero(qk + c);
        let heads = (0..h)
            .map(|head| (0..dv).all(|d| value_silent(head * dv + d)))
            .collect();
        let qk_dims = (0..dq)
            .map(|d| (0..h).all(|head| qk_silent(head * dq + d)))
            .collect();
        let v_dims = (0..dv)
            .map(|d| (0..h).all(|head| value_silent(head * dv + d)))
            .collect();
        vec![heads, qk_dims, v_dims]
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData};

    use super::*;
    use crate::linalg::host_values;

    /// Self-attention computed on the host in f64, loop by loop: an independent reference.
    fn reference(x: &[f32], [n, t, e]: [usize; 3], a: &MultiheadAttention) -> Vec<f64> {
        let w = host_values(a.in_proj_weight.val()); // [3e, e]
        let b = host_values(a.in_proj_bias.as_ref().unwrap().val());
        let wo = host_values(a.out_proj.weight.val()); // Burn: [in, out]
        let bo = host_values(a.out_proj.bias.as_ref().unwrap().val());
        let h = a.num_heads;
        let hd = e / h;
        let mut out = vec![0f64; n * t * e];
        for s in 0..n {
            let row = |k: usize| &x[(s * t + k) * e..(s * t + k + 1) * e];
            // qkv[k][r] = Σ_c w[r, c] x[k, c] + b[r]
            let qkv: Vec<Vec<f64>> = (0..t)
                .map(|k| {
                    (0..3 * e)
                        .map(|r| {
                            (0..e)
                                .map(|c| (w[r * e + c] * row(k)[c]) as f64)
                                .sum::<f64>()
                                + b[r] as f64
                        })
                        .collect()
                })
                .collect();
            let mut context = vec![vec![0f64; e]; t];
            for head in 0..h {
                for i in 0..t {
                    let visible = if a.causal { i + 1 } else { t };
                    let scores: Vec<f64> = (0..visible)
                        .map(|j| {
                            (0..hd)
                                .map(|d| qkv[i][head * hd + d] * qkv[j][e + head * hd + d])
                                .sum::<f64>()
                                * a.scale
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = exp.iter().sum();
                    for d in 0..hd {
                        context[i][head * hd + d] = (0..visible)
                            .map(|j| exp[j] / sum * qkv[j][2 * e + head * hd + d])
                            .sum();
                    }
                }
            }
            for i in 0..t {
                for o in 0..e {
                    out[(s * t + i) * e + o] = (0..e)
                        .map(|c| context[i][c] * wo[c * e + o] as f64)
                        .sum::<f64>()
                        + bo[o] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn attention_matches_a_hand_computation_with_and_without_a_causal_mask() {
        let device = Device::flex();
        let (n, t, e, h) = (2, 5, 8, 2);
        for causal in [false, true] {
            let spec = MultiheadAttentionSpec::new(e, h).with_causal(causal);
            let Layer::MultiheadAttention(mut a) = spec.build(InitScheme::PyTorchDefault, &device)
            else {
                unreachable!()
            };
            // Biases random too (built as zeros).
            let rows = spec.in_proj_rows();
            let random =
                |shape: Vec<usize>| Tensor::random(shape, Distribution::Normal(0.0, 0.5), &device);
            a.in_proj_bias = Some(Param::from_tensor(random(vec![rows])));
            a.out_proj.bias = Some(Param::from_tensor(random(vec![e])));
            let x = Tensor::<3>::random([n, t, e], Distribution::Normal(0.0, 1.0), &device);
            let xs = host_values(x.clone());
            let ours = host_values(a.attend(x));
            let expected = reference(&xs, [n, t, e], &a);
            let scale = expected.iter().fold(0f64, |m, v| m.max(v.abs()));
            let diff = ours
                .iter()
                .zip(&expected)
                .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
            assert!(diff <= 1e-5 * scale, "causal {causal}: {diff} vs {scale}");
        }
    }

    #[test]
    fn counts_follow_pytorch_and_surgery_updates_the_spec() {
        // nn.MultiheadAttention(768, 12): 4·768² + 4·768 parameters.
        let spec = MultiheadAttentionSpec::new(768, 12);
        assert_eq!(spec.params(), 2_362_368);
        assert_eq!(spec.scale, 0.125);
        // One token sequence of 197: projections plus the two activation products.
        let macs = spec.macs(&[&[197, 768]], &[197, 768]);
        assert_eq!(
            macs,
            197 * 768 * 2304 + 2 * 197 * 197 * 768 + 197 * 768 * 768
        );
        let device = Device::flex();
        let mut live = MultiheadAttentionSpec::new(8, 2).build(InitScheme::Zeros, &device);
        let keep: Vec<bool> = (0..8).map(|c| c != 3).collect();
        live.live_mut().select_channels(Some(&keep), Some(&keep));
        let LayerSpec::MultiheadAttention(s) = live.spec() else {
            unreachable!()
        };
        // Reads and writes 7 features; q/k/v widths and the stored scale are untouched.
        assert_eq!((s.embed_dim, s.query_dim, s.value_dim), (7, 8, 8));
        assert_eq!(s.scale, 0.5);
        let x = Tensor::<3>::from_data(TensorData::new(vec![1f32; 7 * 3], [1, 3, 7]), &device);
        assert_eq!(live.forward_one(x).dims(), vec![1, 3, 7]);
    }

    #[test]
    fn silent_heads_and_head_dims_are_found_and_removed_without_changing_outputs() {
        let device = Device::flex();
        let (e, h, hd) = (8, 2, 4);
        let spec = MultiheadAttentionSpec::new(e, h);
        let Layer::MultiheadAttention(mut a) = spec.build(InitScheme::PyTorchDefault, &device)
        else {
            unreachable!()
        };
        let rows = spec.in_proj_rows();
        let mut w = host_values(a.in_proj_weight.val());
        let mut b: Vec<f32> = (0..rows).map(|r| 0.1 * r as f32 - 1.0).collect();
        let mut wo = host_values(a.out_proj.weight.val()); // [in = v, out = e]
        // Head 1 silent: its v rows (and biases) zero.
        for r in 2 * e + hd..3 * e {
            w[r * e..(r + 1) * e].fill(0.0);
            b[r] = 0.0;
        }
        // q·k dim 2 silent: q rows of head 0 and k rows of head 1 zero.
        for r in [2, e + hd + 2] {
            w[r * e..(r + 1) * e].fill(0.0);
            b[r] = 0.0;
        }
        // v dim 3 silent: out_proj never reads it in either head.
        for c in [3, hd + 3] {
            wo[c * e..(c + 1) * e].fill(0.0);
        }
        // A q row zero but with a bias is not silent: dim 1 stays.
        w[e..2 * e].fill(0.0);
        let matrix = |v: Vec<f32>, shape: [usize; 2]| {
            Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), &device))
        };
        a.in_proj_weight = matrix(w, [rows, e]);
        a.out_proj.weight = matrix(wo, [e, e]);
        a.in_proj_bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [rows]),
            &device,
        )));
        let silent = a.silent_inner();
        assert_eq!(
            silent,
            vec![
                vec![false, true],
                vec![false, false, true, false],
                vec![false, false, false, true]
            ]
        );
        let x = Tensor::<3>::random([2, 5, e], Distribution::Normal(0.0, 1.0), &device);
        let before = host_values(a.attend(x.clone()));
        let keep: Vec<Vec<bool>> = silent
            .iter()
            .map(|s| s.iter().map(|z| !z).collect())
            .collect();
        a.select_inner(&keep);
        let LayerSpec::MultiheadAttention(s) = a.spec() else {
            unreachable!()
        };
        // One head of 3 q/k dims and 3 v dims; the scale of 4-wide heads is kept.
        assert_eq!((s.num_heads, s.query_dim, s.value_dim), (1, 3, 3));
        assert_eq!(s.scale, 0.5);
        assert_eq!(s.params(), 9 * 8 + 9 + 3 * 8 + 8);
        let after = host_values(a.attend(x));
        let diff = after
            .iter()
            .zip(&before)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-5, "{diff}");
    }

    #[test]
    fn head_output_norms_match_the_output_a_head_adds() {
        let device = Device::flex();
        let (e, h) = (8, 2);
        let spec = MultiheadAttentionSpec::new(e, h);
        let Layer::MultiheadAttention(a) = spec.build(InitScheme::PyTorchDefault, &device) else {
            unreachable!()
        };
        let x = Tensor::<3>::random([3, 5, e], Distribution::Normal(0.0, 1.0), &device);
        let norms = a.head_output_norms(x.clone());
        // Head k's term is the output minus the output with head k's out_proj rows zeroed.
        let full = a.attend(x.clone());
        for k in 0..h {
            let mut without = a.clone();
            let mut wo = host_values(a.out_proj.weight.val());
            wo[k * 4 * e..(k + 1) * 4 * e].fill(0.0);
            without.out_proj.weight =
                Param::from_tensor(Tensor::from_data(TensorData::new(wo, [e, e]), &device));
            let term = full.clone() - without.attend(x.clone());
            let rms = (host_values(term.square().sum()).iter().sum::<f32>() / 15.0).sqrt();
            assert!(
                (norms[k] - rms).abs() <= 1e-5 * rms.max(1.0),
                "{k}: {} vs {rms}",
                norms[k]
            );
        }
    }
}
