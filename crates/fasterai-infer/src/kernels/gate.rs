//! The squeeze-and-excitation gate (MobileNetV3, EfficientNet) in one step: each channel's
//! mean, two small matrix-vector products with their activations, and the channels scaled in
//! place, instead of five graph ops each with its own output (two of them 1×1 convolutions on
//! a 1×1 map, a matrix product's whole dispatch for a few thousand multiply-adds).

use burn::nn::conv::Conv2d;
use rayon::prelude::*;

use super::eltwise::{Act, PAR_MIN, mul_planes};
use super::simd::{dot_of, sum_of, vectorize};
use fasterai_core::graph::ops::Conv2dSpec;
use fasterai_core::linalg::shared_host_values as host_values;

/// One fully connected layer of the gate: a 1×1 convolution's `[out, in]` weight and its bias.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    act: Act,
}

impl Dense {
    /// `conv` as a matrix when it is a plain 1×1 convolution (the gate's map is 1×1).
    fn of(conv: &Conv2d, spec: &Conv2dSpec, act: Act) -> Option<Self> {
        let plain = spec.kernel_size == [1, 1]
            && spec.stride == [1, 1]
            && spec.padding == [0, 0]
            && spec.groups == 1;
        plain.then(|| Self {
            weight: host_values(conv.weight.val()),
            bias: conv
                .bias
                .as_ref()
                .map_or_else(|| vec![0.0; spec.out_channels], |b| host_values(b.val())),
            inputs: spec.in_channels,
            act,
        })
    }

    fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// `y = act(W · x + b)`.
    #[inline(always)]
    fn run(&self, x: &[f32], y: &mut [f32]) {
        for ((y, row), b) in y
            .iter_mut()
            .zip(self.weight.chunks_exact(self.inputs))
            .zip(&self.bias)
        {
            *y = self.act.apply(dot_of(row, x) + b);
        }
    }
}

/// `x · gate(fc2(act(fc1(mean(x)))))`, per sample and channel.
pub(crate) struct GateKernel {
    squeeze: Dense,
    excite: Dense,
}

impl GateKernel {
    /// The gate of `fc1` (then `act`) and `fc2` (then `gate`), when both are plain 1×1
    /// convolutions whose sizes chain.
    pub fn new(
        fc1: (&Conv2d, &Conv2dSpec),
        act: Act,
        fc2: (&Conv2d, &Conv2dSpec),
        gate: Act,
    ) -> Option<Self> {
        let squeeze = Dense::of(fc1.0, fc1.1, act)?;
        let excite = Dense::of(fc2.0, fc2.1, gate)?;
        (excite.inputs == squeeze.outputs() && excite.outputs() == squeeze.inputs)
            .then_some(Self { squeeze, excite })
    }

    /// The channels the gate takes.
    pub fn channels(&self) -> usize {
        self.squeeze.inputs
    }

    /// Gates `x` (`[N, channels, plane]`) in place.
    pub fn run(&self, x: &mut [f32], plane: usize) {
        let channels = self.channels();
        if plane == 0 || channels == 0 {
            return;
        }
        let len = channels * plane;
        if x.len() < PAR_MIN {
            x.chunks_exact_mut(len)
                .for_each(|sample| self.sample(sample, plane, false));
        } else if x.len() > len {
            // A batch: one sample per task.
            x.par_chunks_exact_mut(len)
                .for_each(|sample| self.sample(sample, plane, false));
        } else {
            self.sample(x, plane, true);
        }
    }

    /// Gates one sample; `par`: its means taken over the threads.
    fn sample(&self, sample: &mut [f32], plane: usize, par: bool) {
        let mean = |p: &[f32]| vectorize(|| sum_of(p, |v| v)) / plane as f32;
        let means: Vec<f32> = if par {
            sample.par_chunks(plane).map(mean).collect()
        } else {
            sample.chunks(plane).map(mean).collect()
        };
        let mut hidden = vec![0f32; self.squeeze.outputs()];
        let mut gates = vec![0f32; self.channels()];
        vectorize(|| {
            self.squeeze.run(&means, &mut hidden);
            self.excite.run(&hidden, &mut gates);
        });
        mul_planes(sample, &gates, plane);
    }
}
