//! Element-wise work: the activations the engine folds into a kernel's output pass, that pass
//! itself (`act(x + shift[c] + residual)`), and stand-alone sums, products and batch norms.

use rayon::prelude::*;

/// Elements below which an element-wise pass stays on one thread.
pub(crate) const PAR_MIN: usize = 1 << 15;

/// An activation applied in a kernel's output pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    None,
    Relu,
    Relu6,
    Silu,
    Sigmoid,
    Hardsigmoid,
    Hardswish,
    /// `x · Φ(x)`, the exact GELU.
    Gelu,
    /// GELU's tanh approximation.
    GeluTanh,
}

impl Act {
    /// The same formulas as the graph's ops (`graph/ops/activation.rs`); NaN passes through
    /// each, as through Burn's (`f32::max` would drop it).
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::None => x,
            Act::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Silu => x / (1.0 + (-x).exp()),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Hardsigmoid => (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Act::Hardswish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Act::Gelu => gelu(x),
            Act::GeluTanh => gelu_tanh(x),
        }
    }

    /// Applies the activation to every element, in parallel when there are many.
    pub fn apply_all(self, xs: &mut [f32]) {
        if self == Act::None {
            return;
        }
        if xs.len() < PAR_MIN {
            self.apply_slice(xs);
        } else {
            xs.par_chunks_mut(PAR_MIN / 4)
                .for_each(|c| self.apply_slice(c));
        }
    }

    /// Applies the activation to `xs` on this thread: one plain loop per activation inside a
    /// function compiled for the instruction set in use ([`Isa`](super::simd::Isa)),
    /// the exponential by [`exp`] so that it vectorises.
    pub fn apply_slice(self, xs: &mut [f32]) {
        struct Op<'a>(Act, &'a mut [f32]);
        impl pulp::WithSimd for Op<'_> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) {
                let Op(act, xs) = self;
                match act {
                    Act::None => {}
                    Act::Relu => {
                        for x in xs {
                            *x = Act::Relu.apply(*x);
                        }
                    }
                    Act::Relu6 => {
                        for x in xs {
                            *x = Act::Relu6.apply(*x);
                        }
                    }
                    Act::Hardsigmoid => {
                        for x in xs {
                            *x = Act::Hardsigmoid.apply(*x);
                        }
                    }
                    Act::Hardswish => {
                        for x in xs {
                            *x = Act::Hardswish.apply(*x);
                        }
                    }
                    Act::Silu => {
                        for x in xs {
                            *x /= 1.0 + exp(-*x);
                        }
                    }
                    Act::Sigmoid => {
                        for x in xs {
                            *x = 1.0 / (1.0 + exp(-*x));
                        }
                    }
                    Act::Gelu => {
                        for x in xs {
                            *x = gelu(*x);
                        }
                    }
                    Act::GeluTanh => {
                        for x in xs {
                            *x = gelu_tanh(*x);
                        }
                    }
                }
            }
        }
        if self != Act::None {
            super::simd::dispatch(Op(self, xs));
        }
    }
}

/// `eˣ` in branch-free arithmetic the compiler vectorises: `x = k·ln 2 + r` (ln 2 in two parts,
/// so that `r` is exact), `eʳ` by its degree-7 Taylor polynomial on `|r| ≤ ln 2 / 2`, `2ᵏ` built
/// in the exponent bits; within a few ulp of `f32::exp`, ±∞ and NaN as `f32::exp`.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Beyond these e^x is 0 or ∞ in f32 (the clamp keeps the exponent bits in range).
    const HI: f32 = 88.72284;
    const LO: f32 = -103.27893;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let c = x.clamp(LO, HI);
    // Round to nearest by the 1.5·2²³ trick (`f32::round` is a libm call, and a float-to-int
    // cast checks for NaN: both block vectorisation); |c·log₂e| < 2²² keeps it exact, and k is
    // read back from the mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = c * std::f32::consts::LOG2_E + SHIFTER;
    let kf = shifted - SHIFTER;
    let r = (c - kf * LN2_HI) - kf * LN2_LO;
    const C: [f32; 8] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
    let p = C[0]
        + r * (C[1] + r * (C[2] + r * (C[3] + r * (C[4] + r * (C[5] + r * (C[6] + r * C[7]))))));
    // 2^k in two factors so that k down to -150 stays representable (subnormals).
    let k = (shifted.to_bits() as i32).wrapping_sub(SHIFTER.to_bits() as i32);
    let (k1, k2) = (k >> 1, k - (k >> 1));
    let two = |e: i32| f32::from_bits(((e + 127).clamp(0, 255) as u32) << 23);
    let y = p * two(k1) * two(k2);
    if x > HI {
        f32::INFINITY
    } else if x < LO {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// The exact GELU, `x/2 · erfc(−x/√2)`, in arithmetic that vectorises: erfc by the Chebyshev
/// fit of Numerical Recipes (`erfcc`, relative error below 1.2·10⁻⁷ for every argument), so
/// that the tail `x → −∞` keeps its relative accuracy (`1 + erf` would cancel).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    let z = -x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    const C: [f32; 10] = [
        -1.265_512_2,
        1.000_023_7,
        0.374_091_96,
        0.096_784_18,
        -0.186_288_06,
        0.278_868_07,
        -1.135_204,
        1.488_515_9,
        -0.822_152_23,
        0.170_872_77,
    ];
    let poly = C[0]
        + t * (C[1]
            + t * (C[2]
                + t * (C[3]
                    + t * (C[4] + t * (C[5] + t * (C[6] + t * (C[7] + t * (C[8] + t * C[9]))))))));
    let tail = t * exp(poly - a * a); // erfc(|z|)
    let erfc = if z >= 0.0 { tail } else { 2.0 - tail };
    0.5 * x * erfc
}

/// GELU's tanh form, `x/2 · (1 + tanh u) = x · σ(2u)` with `u = √(2/π)(x + 0.044715 x³)`.
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // √(2/π)
    let u = K * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp(-2.0 * u))
}

/// What a kernel does to each output value of channel `c` before storing it:
/// `act(x + shift[c] + residual)`. (A batch norm's scale is folded into the kernel's weights.)
#[derive(Debug, Clone)]
pub(crate) struct Epilogue {
    /// Per output channel; `None` means 0.
    pub shift: Option<Vec<f32>>,
    pub act: Act,
}

impl Epilogue {
    #[inline]
    pub fn shift(&self, channel: usize) -> f32 {
        self.shift.as_ref().map_or(0.0, |s| s[channel])
    }

    /// Applies the epilogue to `values` of one output channel, adding `residual` (same length)
    /// first when the kernel's output feeds a sum.
    #[inline]
    pub fn apply(&self, channel: usize, values: &mut [f32], residual: Option<&[f32]>) {
        let shift = self.shift(channel);
        match residual {
            Some(r) => values
                .iter_mut()
                .zip(r)
                .for_each(|(v, r)| *v = *v + shift + r),
            None if shift == 0.0 => {}
            None => values.iter_mut().for_each(|v| *v += shift),
        }
        self.act.apply_slice(values);
    }

    /// Applies the epilogue to a `[N, C, plane]` buffer, one task per plane.
    pub fn apply_planes(
        &self,
        y: &mut [f32],
        channels: usize,
        plane: usize,
        residual: Option<&[f32]>,
    ) {
        if plane == 0 {
            return;
        }
        if y.len() < PAR_MIN {
            return self.apply_planes_here(y, channels, plane, residual);
        }
        y.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(nc, values)| {
                let r = residual.map(|r| &r[nc * plane..][..plane]);
                self.apply(nc % channels, values, r);
            });
    }

    /// [`apply_planes`](Self::apply_planes) on this thread (inside a task already in parallel).
    pub fn apply_planes_here(
        &self,
        y: &mut [f32],
        channels: usize,
        plane: usize,
        residual: Option<&[f32]>,
    ) {
        for (nc, values) in y.chunks_mut(plane.max(1)).enumerate() {
            let r = residual.map(|r| &r[nc * plane..][..plane]);
            self.apply(nc % channels, values, r);
        }
    }
}

/// `y[n, c, ·] = act(x · scale[c] + shift[c])` in place: a batch norm no convolution absorbed.
pub(crate) fn affine(
    y: &mut [f32],
    channels: usize,
    plane: usize,
    scale: &[f32],
    shift: &[f32],
    act: Act,
) {
    if plane == 0 {
        return;
    }
    let run = |(nc, values): (usize, &mut [f32])| {
        let (s, t) = (scale[nc % channels], shift[nc % channels]);
        values.iter_mut().for_each(|v| *v = act.apply(*v * s + t));
    };
    if y.len() < PAR_MIN {
        y.chunks_mut(plane).enumerate().for_each(run);
    } else {
        y.par_chunks_mut(plane).enumerate().for_each(run);
    }
}

/// `acc += x` element-wise.
pub(crate) fn add_into(acc: &mut [f32], x: &[f32]) {
    if acc.len() < PAR_MIN {
        acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
    } else {
        acc.par_chunks_mut(PAR_MIN / 4)
            .zip(x.par_chunks(PAR_MIN / 4))
            .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
    }
}

/// `acc *= x` where `x` has one value per plane of `acc` (`[N, C, 1, 1]` against
/// `[N, C, H, W]`: a squeeze-and-excitation gate), or the same shape (`plane` = 1).
pub(crate) fn mul_planes(acc: &mut [f32], x: &[f32], plane: usize) {
    if plane == 0 {
        return;
    }
    let run = |(i, values): (usize, &mut [f32])| {
        let g = x[i];
        values.iter_mut().for_each(|v| *v *= g);
    };
    if plane == 1 {
        acc.iter_mut().zip(x).for_each(|(a, b)| *a *= b);
    } else if acc.len() < PAR_MIN {
        acc.chunks_mut(plane).enumerate().for_each(run);
    } else {
        acc.par_chunks_mut(plane).enumerate().for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use fasterai_core::graph::ops::activation::erfc;

    use super::{exp, gelu, gelu_tanh};

    #[test]
    fn both_gelus_match_double_precision_formulas() {
        // Worst relative errors: exact form for |x| ≤ 4, exact form beyond, tanh form.
        let mut worst = [0f64; 3];
        for i in -12_000..=12_000 {
            let x = i as f32 * 1e-3; // [-12, 12]
            let xd = x as f64;
            let exact = 0.5 * xd * erfc(-xd / std::f64::consts::SQRT_2);
            let u = (2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd);
            let tanh = xd / (1.0 + (-2.0 * u).exp()); // = x/2 · (1 + tanh u), without cancelling
            let rel = |got: f32, want: f64| (got as f64 - want).abs() / want.abs().max(1e-30);
            let exact_at = if x.abs() <= 4.0 { 0 } else { 1 };
            worst[exact_at] = worst[exact_at].max(rel(gelu(x), exact));
            if tanh.abs() > f32::MIN_POSITIVE as f64 {
                worst[2] = worst[2].max(rel(gelu_tanh(x), tanh));
            }
        }
        // In the tails (gelu(−12) ≈ −2·10⁻³²) the f32 rounding of the exponent sets the error;
        // the form x/2 · (1 + erf) loses every digit there.
        assert!(
            worst[0] < 2e-6 && worst[1] < 3e-5 && worst[2] < 2e-5,
            "errors {worst:?}"
        );
        for f in [gelu, gelu_tanh] {
            assert!(f(f32::NAN).is_nan());
            assert_eq!(f(f32::INFINITY), f32::INFINITY);
            assert_eq!(f(0.0), 0.0);
        }
    }

    #[test]
    fn the_vectorisable_exp_matches_the_standard_one() {
        let mut worst = 0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 5e-4; // [-100, 100]
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            if want > f32::MAX as f64 {
                assert_eq!(got, f64::INFINITY, "e^{x}");
            } else if want > 1e-37 {
                worst = worst.max((got - want).abs() / want);
            } else {
                assert!(got.abs() <= 2e-37, "e^{x} = {got}");
            }
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }
}
