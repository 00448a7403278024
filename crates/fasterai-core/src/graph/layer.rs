//! The op registry: [`LayerSpec`] (hyper-parameters, what files store) and [`Layer`] (live, with
//! weights), one variant per op. Adding an op: a file in `ops/` and one line here.

use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::activation::Activation;
use super::op::{Arity, Channels, InitScheme, LiveOp, Op};
use super::ops::activation::{
    DropoutSpec, GELU, Hardsigmoid, Hardswish, ReLU, ReLU6, SiLU, Sigmoid, Softmax,
    StochasticDepth, StochasticDepthSpec,
};
use super::ops::attention::{MultiheadAttention, MultiheadAttentionSpec};
use super::ops::batch_norm::BatchNorm2dSpec;
use super::ops::conv::Conv2dSpec;
use super::ops::embedding::{
    Embedding, EmbeddingSpec, LearnedPositions, LearnedPositionsSpec, TiedLinear,
};
use super::ops::linear::LinearSpec;
use super::ops::merge::{Add, Concat, Mul};
use super::ops::norm::{LayerNorm, LayerNormSpec, RmsNormSpec, RootMeanSquareNorm};
use super::ops::pool::{AdaptiveAvgPool2dSpec, AvgPool2dSpec, MaxPool2dSpec};
use super::ops::quant::FakeQuantize;
use super::ops::shape::{Flatten, Identity};
use super::ops::token::{
    ClassToken, ClassTokenSpec, ImageToTokens, PositionEmbedding, PositionEmbeddingSpec,
    SelectToken, TokenMean,
};
use crate::error::{CoreError, Result};
use crate::limits::{self, MAX_SAMPLE_ELEMENTS, MAX_SIZE};
use crate::linalg::{host_values, shared_host_values};

macro_rules! registry {
    (
        with_weights { $($(#[$wdoc:meta])* $wvar:ident($wspec:ty => $wlive:ty),)* }
        stateless { $($(#[$sdoc:meta])* $svar:ident($sspec:ty),)* }
    ) => {
        /// One op with its hyper-parameters. Serialised as `{"type": "Conv2d", ...fields}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum LayerSpec {
            $($(#[$wdoc])* $wvar($wspec),)*
            $($(#[$sdoc])* $svar($sspec),)*
        }

        /// One live op. Ops with weights hold the Burn module (trainable `Param`s); the others
        /// hold their spec. Parameters are addressed with PyTorch's dotted paths: the enum adds
        /// no path segment, so a convolution at `features.0` owns `features.0.weight`.
        #[derive(Debug, Clone)]
        pub enum Layer {
            $($(#[$wdoc])* $wvar($wlive),)*
            $($(#[$sdoc])* $svar($sspec),)*
        }

        impl LayerSpec {
            /// The op's behaviour (shapes, parameters, MACs, channel flow).
            pub fn op(&self) -> &dyn Op {
                match self {
                    $(LayerSpec::$wvar(s) => s,)*
                    $(LayerSpec::$svar(s) => s,)*
                }
            }
        }

        impl Layer {
            /// The live op's behaviour (forward, channel surgery).
            pub fn live(&self) -> &dyn LiveOp {
                match self {
                    $(Layer::$wvar(m) => m,)*
                    $(Layer::$svar(s) => s,)*
                }
            }

            /// Mutable access to the live op.
            pub fn live_mut(&mut self) -> &mut dyn LiveOp {
                match self {
                    $(Layer::$wvar(m) => m,)*
                    $(Layer::$svar(s) => s,)*
                }
            }
        }

        // Hand-written rather than derived so that the enum adds no segment to parameter paths.
        impl Module for Layer {
            fn collect_devices(&self, devices: Devices) -> Devices {
                match self {
                    $(Layer::$wvar(m) => m.collect_devices(devices),)*
                    _ => devices,
                }
            }
            fn fork(self, device: &Device) -> Self {
                match self {
                    $(Layer::$wvar(m) => Layer::$wvar(m.fork(device)),)*
                    other => other,
                }
            }
            fn to_device(self, device: &Device) -> Self {
                match self {
                    $(Layer::$wvar(m) => Layer::$wvar(m.to_device(device)),)*
                    other => other,
                }
            }
            fn train(self) -> Self {
                match self {
                    $(Layer::$wvar(m) => Layer::$wvar(m.train()),)*
                    other => other,
                }
            }
            fn valid(&self) -> Self {
                match self {
                    $(Layer::$wvar(m) => Layer::$wvar(m.valid()),)*
                    other => other.clone(),
                }
            }
            fn materialize(self) -> Self {
                match self {
                    $(Layer::$wvar(m) => Layer::$wvar(m.materialize()),)*
                    other => other,
                }
            }
            fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
                match self {
                    $(Layer::$wvar(m) => m.visit(visitor),)*
                    _ => {}
                }
            }
            fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
                match self {
                    $(Layer::$wvar(m) => Layer::$wvar(m.map(mapper)),)*
                    other => other,
                }
            }
        }
    };
}

registry! {
    with_weights {
        /// 2-D convolution, grouped and depthwise included (`weight: [out, in / groups, kh, kw]`).
        Conv2d(Conv2dSpec => Conv2d),
        /// Batch normalisation over channels (`gamma`, `beta`, running mean and variance).
        BatchNorm2d(BatchNorm2dSpec => BatchNorm),
        /// Fully connected layer.
        Linear(LinearSpec => Linear),
        /// Dropout (identity in evaluation mode).
        Dropout(DropoutSpec => Dropout),
        /// Layer normalisation over the last dimension.
        LayerNorm(LayerNormSpec => LayerNorm),
        /// Multi-head self-attention (packed q/k/v projection, output projection).
        MultiheadAttention(MultiheadAttentionSpec => MultiheadAttention),
        /// A learned token put in front of the sequence.
        ClassToken(ClassTokenSpec => ClassToken),
        /// A learned embedding added to every position of the sequence.
        PositionEmbedding(PositionEmbeddingSpec => PositionEmbedding),
        /// Drops a sample's whole value while training (identity in evaluation mode).
        StochasticDepth(StochasticDepthSpec => StochasticDepth),
        /// Token ids to vectors, one learned row per id.
        Embedding(EmbeddingSpec => Embedding),
        /// A learned vector per position added to the tokens (GPT-2's `wpe`).
        LearnedPositions(LearnedPositionsSpec => LearnedPositions),
        /// Root-mean-square normalisation over the last dimension (Llama).
        RMSNorm(RmsNormSpec => RootMeanSquareNorm),
    }
    stateless {
        /// Rectified linear unit.
        ReLU(ReLU),
        /// ReLU clipped at 6.
        ReLU6(ReLU6),
        /// `x · σ(x)`.
        SiLU(SiLU),
        /// Logistic sigmoid.
        Sigmoid(Sigmoid),
        /// Piecewise-linear sigmoid.
        Hardsigmoid(Hardsigmoid),
        /// `x · hardsigmoid(x)`.
        Hardswish(Hardswish),
        /// Gaussian error linear unit (exact or tanh form).
        GELU(GELU),
        /// Softmax over channels.
        Softmax(Softmax),
        /// Max pooling.
        MaxPool2d(MaxPool2dSpec),
        /// Average pooling.
        AvgPool2d(AvgPool2dSpec),
        /// Adaptive average pooling to a fixed output size (global when 1×1).
        AdaptiveAvgPool2d(AdaptiveAvgPool2dSpec),
        /// `[N, C, H, W]` to `[N, C·H·W]`.
        Flatten(Flatten),
        /// Passes its input on.
        Identity(Identity),
        /// Element-wise sum.
        Add(Add),
        /// Element-wise product (broadcast over H×W).
        Mul(Mul),
        /// Channel concatenation.
        Concat(Concat),
        /// `[N, C, H, W]` to tokens `[N, H·W, C]`.
        ImageToTokens(ImageToTokens),
        /// One token of the sequence, `[N, T, D]` to `[N, D]`.
        SelectToken(SelectToken),
        /// The mean over tokens, `[N, T, D]` to `[N, D]`.
        TokenMean(TokenMean),
        /// An activation rounded to an integer grid and back (quantized models).
        FakeQuantize(FakeQuantize),
        /// The language-model head that reads the token table back (tied weights).
        TiedLinear(TiedLinear),
    }
}

impl LayerSpec {
    /// `Conv2d(in, out, kernel_size=3, padding=1)` with bias: VGG's convolution.
    pub fn conv3x3(in_channels: usize, out_channels: usize) -> Self {
        LayerSpec::Conv2d(Conv2dSpec::new(in_channels, out_channels, 3, 1).with_bias(true))
    }

    /// A convolution with `padding = kernel / 2` and no bias.
    pub fn conv(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> Self {
        LayerSpec::Conv2d(Conv2dSpec::new(in_channels, out_channels, kernel, stride))
    }

    /// `BatchNorm2d(num_features)` with PyTorch's defaults (ε = 1e-5, momentum 0.1).
    pub fn batch_norm(num_features: usize) -> Self {
        LayerSpec::BatchNorm2d(BatchNorm2dSpec::new(num_features))
    }

    /// `MaxPool2d(kernel_size=2, stride=2)`, optionally with `ceil_mode`.
    pub fn max_pool2(ceil_mode: bool) -> Self {
        LayerSpec::MaxPool2d(MaxPool2dSpec {
            ceil_mode,
            ..MaxPool2dSpec::new(2, 2, 0)
        })
    }

    /// `Linear(in, out)` with bias.
    pub fn linear(in_features: usize, out_features: usize) -> Self {
        LayerSpec::Linear(LinearSpec::new(in_features, out_features))
    }

    /// `ReLU`.
    pub fn relu() -> Self {
        LayerSpec::ReLU(ReLU {})
    }

    /// `Flatten`.
    pub fn flatten() -> Self {
        LayerSpec::Flatten(Flatten {})
    }

    /// `Dropout(p)`.
    pub fn dropout(p: f64) -> Self {
        LayerSpec::Dropout(DropoutSpec { p })
    }

    /// Global average pooling (`AdaptiveAvgPool2d(1)`).
    pub fn global_avg_pool() -> Self {
        LayerSpec::AdaptiveAvgPool2d(AdaptiveAvgPool2dSpec {
            output_size: [1, 1],
        })
    }

    /// Type name, as PyTorch prints it.
    pub fn kind(&self) -> &'static str {
        self.op().kind()
    }

    /// Number of inputs the op takes.
    pub fn arity(&self) -> Arity {
        self.op().arity()
    }

    /// How channels flow through the op.
    pub fn channels(&self) -> Channels {
        self.op().channels()
    }

    /// Trainable parameters of this op.
    pub fn own_params(&self) -> usize {
        self.op().params()
    }

    /// Checks the hyper-parameters: every size at most [`MAX_SIZE`], every float finite, then
    /// the op's own rules; errors name the node.
    pub fn validate(&self, path: &str) -> Result<()> {
        let invalid = |reason: String| CoreError::InvalidLayer {
            path: path.to_string(),
            reason,
        };
        let fields = serde_json::to_value(self).map_err(|e| invalid(e.to_string()))?;
        check_numbers(&fields, "").map_err(invalid)?;
        self.op().validate().map_err(invalid)
    }

    /// Output shape (no batch dimension) and multiply-accumulates per sample for inputs of
    /// shapes `inputs`; errors name the node.
    pub fn output_shape(&self, path: &str, inputs: &[&[usize]]) -> Result<(Vec<usize>, u64)> {
        let op = self.op();
        let mismatch = |reason: String| CoreError::ShapeMismatch {
            path: path.to_string(),
            kind: op.kind(),
            got: inputs.first().map(|s| s.to_vec()).unwrap_or_default(),
            reason,
        };
        let count_ok = match op.arity() {
            Arity::One => inputs.len() == 1,
            Arity::Many => inputs.len() >= 2,
        };
        if !count_ok {
            return Err(mismatch(format!(
                "takes {} input(s), got {}",
                if op.arity() == Arity::One {
                    "one"
                } else {
                    "two or more"
                },
                inputs.len()
            )));
        }
        let output = op.output_shape(inputs).map_err(mismatch)?;
        check_sample_shape(&output).map_err(|reason| CoreError::InvalidLayer {
            path: path.to_string(),
            reason: format!("its output {reason}"),
        })?;
        let macs = op.macs(inputs, &output);
        Ok((output, macs))
    }
}

/// Every integer of a layer's fields (its sizes: channels, kernel, stride, padding, heads...)
/// at most [`MAX_SIZE`], every float finite. One rule over the serialised fields holds for every
/// op, present and future, so no op can forget it.
fn check_numbers(value: &serde_json::Value, field: &str) -> std::result::Result<(), String> {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)) {
                if i.unsigned_abs() > MAX_SIZE as u128 {
                    return Err(format!(
                        "`{field}` = {n} is beyond the largest size, {MAX_SIZE}"
                    ));
                }
            } else if !n.as_f64().is_some_and(f64::is_finite) {
                return Err(format!("`{field}` = {n} is not a finite number"));
            }
            Ok(())
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(|v| check_numbers(v, field)),
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| check_numbers(v, k)),
        _ => Ok(()),
    }
}

/// A per-sample activation shape (model input or a node's output): no empty axis and at most
/// [`MAX_SAMPLE_ELEMENTS`] elements.
pub fn check_sample_shape(shape: &[usize]) -> std::result::Result<(), String> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(format!("shape {shape:?} is empty"));
    }
    match limits::product(shape) {
        Some(n) if n <= MAX_SAMPLE_ELEMENTS => Ok(()),
        _ => Err(format!(
            "shape {shape:?} has more than {MAX_SAMPLE_ELEMENTS} elements per sample"
        )),
    }
}

impl Layer {
    /// Builds a layer with fresh weights from its specification (which should have passed
    /// [`LayerSpec::validate`]: Burn panics on zero sizes).
    pub fn from_spec(spec: &LayerSpec, scheme: InitScheme, device: &Device) -> Layer {
        spec.op().build(scheme, device)
    }

    /// The layer's specification, read off its current weights.
    pub fn spec(&self) -> LayerSpec {
        self.live().spec()
    }

    /// Type name, as PyTorch prints it.
    pub fn kind(&self) -> &'static str {
        self.spec().kind()
    }

    /// An embedding's table `[vocabulary, D]` as a flat value (what a tied head reads).
    ///
    /// # Panics
    /// If the layer is not an [`Embedding`]; [`GraphSpec::check`](super::GraphSpec::check)
    /// refuses a tied head that names anything else.
    pub fn table(&self) -> Activation {
        match self {
            Layer::Embedding(e) => Activation::Flat(e.weight.val()),
            other => panic!("a {} has no token table", other.spec().kind()),
        }
    }

    /// Runs the op on already shape-checked inputs.
    pub fn forward(&self, inputs: Vec<Activation>) -> Activation {
        self.live().forward(inputs)
    }

    /// Runs a one-input op.
    pub fn forward_one(&self, x: impl Into<Activation>) -> Activation {
        self.live().forward(vec![x.into()])
    }

    /// The weight of a Conv2d or Linear in PyTorch's layout (`[out, ...]`), with its shape.
    pub fn torch_weight(&self) -> Option<(Vec<usize>, Vec<f32>)> {
        match self {
            Layer::Conv2d(c) => {
                Some((c.weight.dims().to_vec(), shared_host_values(c.weight.val())))
            }
            Layer::Linear(l) => {
                // A transposed view: copied once into a buffer of its own.
                let [i, o] = l.weight.dims();
                Some((vec![o, i], host_values(l.weight.val().transpose())))
            }
            _ => None,
        }
    }

    /// Replaces the weight of a Conv2d or Linear by `values` in PyTorch's layout, keeping its
    /// parameter id (optimiser state such as momentum stays attached) and its gradient tracking
    /// on an autodiff device. False for other layers.
    pub fn set_torch_weight(&mut self, values: Vec<f32>) -> bool {
        match self {
            Layer::Conv2d(c) => {
                let dims = c.weight.dims();
                c.weight = c.weight.clone().map(|old| {
                    leaf(Tensor::<4>::from_data(
                        TensorData::new(values, dims),
                        &old.device(),
                    ))
                });
                true
            }
            Layer::Linear(l) => {
                let [i, o] = l.weight.dims();
                l.weight = l.weight.clone().map(|old| {
                    let t = Tensor::<2>::from_data(TensorData::new(values, [o, i]), &old.device());
                    leaf(t.transpose())
                });
                true
            }
            _ => false,
        }
    }
}

/// A new value for a parameter: a gradient-tracking leaf when training (autodiff device).
pub fn leaf<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.is_autodiff() {
        t.set_require_grad(true)
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_pytorch_names_and_unknown_type_is_an_error() {
        let specs = vec![
            LayerSpec::linear(4, 2),
            LayerSpec::relu(),
            LayerSpec::conv3x3(3, 8),
        ];
        let json = serde_json::to_string(&specs).unwrap();
        assert!(json.contains(r#"{"type":"ReLU"}"#), "{json}");
        assert!(
            json.contains(r#""type":"Linear","in_features":4"#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<Vec<LayerSpec>>(&json).unwrap(),
            specs
        );
        let err = serde_json::from_str::<LayerSpec>(r#"{"type":"Conv3d"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `Conv3d`"),
            "{err}"
        );
        let err = serde_json::from_str::<LayerSpec>(r#"{"type":"ReLU","x":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn shape_errors_name_the_layer() {
        let conv = LayerSpec::conv3x3(3, 8);
        let err = conv
            .output_shape("features.0", &[&[1, 28, 28]])
            .unwrap_err();
        assert!(err.to_string().contains("features.0"), "{err}");
        let (out, macs) = conv.output_shape("features.0", &[&[3, 32, 32]]).unwrap();
        assert_eq!(out, vec![8, 32, 32]);
        assert_eq!(macs, 8 * 32 * 32 * 27);
        let add = LayerSpec::Add(Add {});
        let err = add
            .output_shape("layer1.0.add", &[&[8, 4, 4], &[8, 2, 2]])
            .unwrap_err();
        assert!(err.to_string().contains("layer1.0.add"), "{err}");
        let err = add.output_shape("a", &[&[8, 4, 4]]).unwrap_err();
        assert!(err.to_string().contains("two or more"), "{err}");
        let mul = LayerSpec::Mul(Mul {});
        assert_eq!(
            mul.output_shape("se", &[&[8, 4, 4], &[8, 1, 1]]).unwrap().0,
            vec![8, 4, 4]
        );
        let cat = LayerSpec::Concat(Concat {});
        assert_eq!(
            cat.output_shape("c", &[&[8, 4, 4], &[3, 4, 4]]).unwrap().0,
            vec![11, 4, 4]
        );
        assert!(cat.output_shape("c", &[&[8, 4, 4], &[3, 2, 4]]).is_err());
    }
}
