//! Element-wise activations (and softmax over channels), dropout and stochastic depth:
//! per-channel, no parameters.

use burn::module::{Flag, Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{
    gelu, gelu_approximate, hard_sigmoid, hard_swish, relu, relu6, sigmoid, silu, softmax,
};
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{InitScheme, LiveOp, Op, map_constants};

/// Declares a parameter-free element-wise activation: its spec is also its live form.
macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $tensor_fn:expr, $scalar_fn:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {}

        impl Op for $name {
            fn kind(&self) -> &'static str {
                stringify!($name)
            }
            fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
                Ok(inputs[0].to_vec())
            }
            fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
                Layer::$name(*self)
            }
        }

        impl LiveOp for $name {
            fn spec(&self) -> LayerSpec {
                LayerSpec::$name(*self)
            }
            fn forward(&self, inputs: Vec<Activation>) -> Activation {
                let x = inputs.into_iter().next().expect("one input");
                x.map(|t| $tensor_fn(t), |t| $tensor_fn(t), |t| $tensor_fn(t))
            }
            fn constant_channels(
                &self,
                inputs: &[Vec<Option<f32>>],
                _shapes: &[&[usize]],
                _output: &[usize],
            ) -> Vec<Option<f32>> {
                map_constants(inputs, $scalar_fn)
            }
        }
    };
}

activation!(
    /// `torch.nn.ReLU`.
    ReLU, relu, |x: f32| x.max(0.0)
);
activation!(
    /// `torch.nn.ReLU6`: `min(max(x, 0), 6)`.
    ReLU6, relu6, |x: f32| x.clamp(0.0, 6.0)
);
activation!(
    /// `torch.nn.SiLU` (swish): `x · σ(x)`.
    SiLU, silu, |x: f32| x / (1.0 + (-x).exp())
);
activation!(
    /// `torch.nn.Sigmoid`.
    Sigmoid, sigmoid, |x: f32| 1.0 / (1.0 + (-x).exp())
);
activation!(
    /// `torch.nn.Hardsigmoid`: `relu6(x + 3) / 6`.
    Hardsigmoid, |t| hard_sigmoid(t, 1.0 / 6.0, 0.5), |x: f32| (x / 6.0 + 0.5).clamp(0.0, 1.0)
);
activation!(
    /// `torch.nn.Hardswish`: `x · relu6(x + 3) / 6`.
    Hardswish, hard_swish, |x: f32| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)
);

/// `torch.nn.Dropout` (identity in evaluation mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    /// Probability of zeroing an element while training.
    pub p: f64,
}

impl Op for DropoutSpec {
    fn kind(&self) -> &'static str {
        "Dropout"
    }
    fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(format!("dropout probability {} must be in [0, 1)", self.p));
        }
        Ok(())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }
    fn detail(&self) -> String {
        format!("p={}", self.p)
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::Dropout(DropoutConfig::new(self.p).init())
    }
}

impl LiveOp for Dropout {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Dropout(DropoutSpec { p: self.prob })
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = inputs.into_iter().next().expect("one input");
        x.map(
            |t| Dropout::forward(self, t),
            |t| Dropout::forward(self, t),
            |t| Dropout::forward(self, t),
        )
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        // Evaluation semantics: the identity.
        inputs[0].clone()
    }
}

/// Which GELU: the exact erf form or the tanh approximation (PyTorch's `approximate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeluApproximation {
    /// `x · Φ(x)` with the exact Gaussian CDF (`approximate='none'`).
    #[default]
    None,
    /// `x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))` (`approximate='tanh'`).
    Tanh,
}

/// `torch.nn.GELU(approximate)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GELU {
    /// The exact form or the tanh approximation.
    #[serde(default)]
    pub approximate: GeluApproximation,
}

impl GELU {
    fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.approximate {
            GeluApproximation::None => gelu(x),
            GeluApproximation::Tanh => gelu_approximate(x),
        }
    }

    fn scalar(&self, x: f32) -> f32 {
        let x = x as f64;
        let y = match self.approximate {
            GeluApproximation::None => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
            GeluApproximation::Tanh => {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            }
        };
        y as f32
    }
}

/// The error function to ~1e-15 (Maclaurin series near 0, continued fraction in the tail), for
/// the constants that pruning pushes through a GELU.
fn erf(x: f64) -> f64 {
    if x < 0.0 {
        -erf(-x)
    } else if x < 2.5 {
        erf_series(x)
    } else {
        1.0 - erfc_tail(x)
    }
}

/// The complementary error function `1 − erf(x)` to double precision, its relative accuracy
/// kept in the tail (`erfc(8) ≈ 10⁻²⁹`), where `1 − erf` would round to 0: a reference for
/// float kernels.
pub fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        2.0 - erfc(-x)
    } else if x < 2.5 {
        1.0 - erf_series(x)
    } else {
        erfc_tail(x)
    }
}

/// Maclaurin series: 2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n+1)), for `0 ≤ x < 2.5`.
fn erf_series(x: f64) -> f64 {
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

/// erfc by its continued fraction (Lentz), for `x ≥ 2.5`.
fn erfc_tail(x: f64) -> f64 {
    let mut f = x;
    let (mut c, mut d) = (x, 0.0);
    for k in 1..200 {
        let a = k as f64 / 2.0;
        d = x + a * d;
        d = 1.0 / d;
        c = x + a / c;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / (f * std::f64::consts::PI.sqrt())
}

impl Op for GELU {
    fn kind(&self) -> &'static str {
        "GELU"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }
    fn detail(&self) -> String {
        match self.approximate {
            GeluApproximation::None => String::new(),
            GeluApproximation::Tanh => "tanh".into(),
        }
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::GELU(*self)
    }
}

impl LiveOp for GELU {
    fn spec(&self) -> LayerSpec {
        LayerSpec::GELU(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = inputs.into_iter().next().expect("one input");
        x.map(|t| self.apply(t), |t| self.apply(t), |t| self.apply(t))
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        map_constants(inputs, |x| self.scalar(x))
    }
}

/// `torch.nn.Softmax` over the channels (`dim=1` of an image or flat batch, the last dim of
/// tokens). Channel `c` stays channel `c`, but every output depends on every input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Softmax {}

impl Op for Softmax {
    fn kind(&self) -> &'static str {
        "Softmax"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::Softmax(*self)
    }
}

impl LiveOp for Softmax {
    fn spec(&self) -> LayerSpec {
        LayerSpec::Softmax(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = inputs.into_iter().next().expect("one input");
        x.map(|t| softmax(t, 1), |t| softmax(t, 2), |t| softmax(t, 1))
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        // Known only when every channel is: then so is the softmax of the constants.
        let all: Option<Vec<f32>> = inputs[0].iter().copied().collect();
        let Some(x) = all else {
            return vec![None; inputs[0].len()];
        };
        let max = x.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.iter().map(|v| Some(v / sum)).collect()
    }
}

/// Stochastic depth (`torchvision.ops.StochasticDepth(p, "row")`): while training, each
/// sample's whole value is dropped with probability `p` and the rest scaled by `1/(1 − p)`;
/// the identity at inference. Put on a residual branch, it drops the branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StochasticDepthSpec {
    /// Probability of dropping a sample's value while training.
    pub p: f64,
}

impl Op for StochasticDepthSpec {
    fn kind(&self) -> &'static str {
        "StochasticDepth"
    }
    fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(format!("drop probability {} must be in [0, 1)", self.p));
        }
        Ok(())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }
    fn detail(&self) -> String {
        format!("p={}", self.p)
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::StochasticDepth(StochasticDepth {
            p: self.p,
            training: Param::from_bool(true),
        })
    }
}

/// A live stochastic-depth op.
#[derive(Module, Debug)]
pub struct StochasticDepth {
    /// Drop probability.
    #[module(skip)]
    pub p: f64,
    /// Whether it behaves as in training (cleared by `valid()`, as for Burn's dropout).
    pub training: Param<Flag>,
}

impl StochasticDepth {
    fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if !self.training.is_enabled() || !x.device().is_autodiff() || self.p == 0.0 {
            return x;
        }
        let mut shape = [1usize; D];
        shape[0] = x.dims()[0];
        let keep = Tensor::<D>::random(shape, Distribution::Bernoulli(1.0 - self.p), &x.device());
        x * keep / (1.0 - self.p)
    }
}

impl LiveOp for StochasticDepth {
    fn spec(&self) -> LayerSpec {
        LayerSpec::StochasticDepth(StochasticDepthSpec { p: self.p })
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = inputs.into_iter().next().expect("one input");
        x.map(|t| self.apply(t), |t| self.apply(t), |t| self.apply(t))
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        inputs[0].clone()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::linalg::host_values;

    #[test]
    fn erf_and_both_gelus_match_known_values() {
        // erf from tables (Abramowitz & Stegun, 15 digits).
        for (x, e) in [
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (3.0, 0.999_977_909_503_001_4),
            (-2.0, -0.995_322_265_018_952_7),
        ] {
            assert!((erf(x) - e).abs() < 1e-13, "erf({x}) = {}", erf(x));
        }
        let device = Device::flex();
        let xs = [-3.0f32, -1.0, -0.1, 0.0, 0.7, 2.5];
        for approximate in [GeluApproximation::None, GeluApproximation::Tanh] {
            let g = GELU { approximate };
            let t = Tensor::<2>::from_data(TensorData::new(xs.to_vec(), [1, 6]), &device);
            let y = host_values(g.forward(vec![Activation::Flat(t)]).flatten());
            for (x, y) in xs.iter().zip(&y) {
                assert!((g.scalar(*x) - y).abs() < 1e-6, "{approximate:?} {x}: {y}");
            }
        }
        // PyTorch: gelu(1.0) = 0.8413447, gelu(1.0, approximate='tanh') = 0.8411920.
        assert!((GELU::default().scalar(1.0) - 0.841_344_7).abs() < 1e-6);
        let tanh = GELU {
            approximate: GeluApproximation::Tanh,
        };
        assert!((tanh.scalar(1.0) - 0.841_192).abs() < 1e-6);
        let json = serde_json::to_string(&LayerSpec::GELU(tanh)).unwrap();
        assert_eq!(json, r#"{"type":"GELU","approximate":"tanh"}"#);
    }

    #[test]
    fn softmax_runs_over_channels_of_each_kind() {
        let device = Device::flex();
        let tokens = Tensor::<3>::from_data(
            TensorData::new(vec![0f32, 1.0, 2.0, 5.0, 5.0, 5.0], [1, 2, 3]),
            &device,
        );
        let y = host_values(
            Softmax {}
                .forward(vec![Activation::Tokens(tokens)])
                .flatten(),
        );
        let e: f32 = 1.0 + 1f32.exp() + 2f32.exp();
        let expected = [
            1.0 / e,
            1f32.exp() / e,
            2f32.exp() / e,
            1.0 / 3.0,
            1.0 / 3.0,
            1.0 / 3.0,
        ];
        for (a, b) in y.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6);
        }
        let constants = Softmax {}.constant_channels(&[vec![Some(0.0), Some(0.0)]], &[], &[]);
        assert_eq!(constants, vec![Some(0.5), Some(0.5)]);
        assert_eq!(
            Softmax {}.constant_channels(&[vec![Some(0.0), None]], &[], &[]),
            vec![None, None]
        );
    }

    #[test]
    fn stochastic_depth_drops_whole_samples_in_training_only() {
        let device = Device::flex().autodiff();
        let spec = StochasticDepthSpec { p: 0.5 };
        let layer = spec.build(InitScheme::PyTorchDefault, &device);
        let x = Tensor::<3>::ones([64, 3, 4], &device);
        let y = host_values(layer.forward(vec![Activation::Tokens(x.clone())]).flatten());
        // Each sample is all 0 or all 2 (kept and scaled by 1/(1 − p)).
        let samples: Vec<&[f32]> = y.chunks(12).collect();
        assert!(samples.iter().all(|s| s.iter().all(|v| *v == s[0])));
        assert!(samples.iter().all(|s| s[0] == 0.0 || s[0] == 2.0));
        let dropped = samples.iter().filter(|s| s[0] == 0.0).count();
        assert!((16..=48).contains(&dropped), "{dropped} of 64 dropped");
        // Evaluation mode (and plain devices): the identity.
        let Layer::StochasticDepth(sd) = layer else {
            unreachable!()
        };
        let eval = Layer::StochasticDepth(sd.valid());
        let y = host_values(eval.forward(vec![Activation::Tokens(x)]).flatten());
        assert!(y.iter().all(|v| *v == 1.0));
        assert!(StochasticDepthSpec { p: 1.0 }.validate().is_err());
    }
}
