//! Element-wise work: the activations the engine folds into a kernel's output pass, that pass
//! itself (`act(x + shift[c] + residual)`), and stand-alone sums, products and batch norms.

use rayon::prelude::*;

/// Elements below which an element-wise pass stays on one thread.
const PAR_MIN: usize = 1 << 15;

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
        }
    }

    /// Applies the activation to every element.
    pub fn apply_all(self, xs: &mut [f32]) {
        if self == Act::None {
            return;
        }
        if xs.len() < PAR_MIN {
            xs.iter_mut().for_each(|x| *x = self.apply(*x));
        } else {
            xs.par_chunks_mut(PAR_MIN / 4)
                .for_each(|c| c.iter_mut().for_each(|x| *x = self.apply(*x)));
        }
    }
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
        let (shift, act) = (self.shift(channel), self.act);
        match residual {
            Some(r) => values
                .iter_mut()
                .zip(r)
                .for_each(|(v, r)| *v = act.apply(*v + shift + r)),
            None if shift == 0.0 && act == Act::None => {}
            None => values.iter_mut().for_each(|v| *v = act.apply(*v + shift)),
        }
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
        let run = |(nc, values): (usize, &mut [f32])| {
            let r = residual.map(|r| &r[nc * plane..][..plane]);
            self.apply(nc % channels, values, r);
        };
        if y.len() < PAR_MIN {
            y.chunks_mut(plane).enumerate().for_each(run);
        } else {
            y.par_chunks_mut(plane).enumerate().for_each(run);
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
