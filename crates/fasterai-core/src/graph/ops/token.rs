//! Token-sequence ops of a vision transformer: an image's patches as tokens, learned tokens and
//! position embeddings, and back to one vector per sample (one token, or the mean).

use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{image, select_dim, tokens};
use crate::graph::activation::Activation;
use crate::graph::layer::{Layer, LayerSpec};
use crate::graph::op::{InitScheme, LiveOp, Op, count, spatial};
use crate::linalg::host_values;

/// The per-sample tokens `[T, D]` of a one-input op's input, or an error naming what it got.
fn token_shape(inputs: &[&[usize]]) -> Result<[usize; 2], String> {
    inputs[0]
        .try_into()
        .map_err(|_| "expected tokens [tokens, features]".to_string())
}

/// An image's pixels as tokens: `[C, H, W]` → `[H·W, C]`, row by row (what a ViT does after
/// its strided patch convolution: `x.reshape(n, c, h·w).permute(0, 2, 1)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageToTokens {}

impl Op for ImageToTokens {
    fn kind(&self) -> &'static str {
        "ImageToTokens"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [c, h, w] = spatial(inputs)?;
        Ok(vec![
            h.checked_mul(w).ok_or("the token count overflows")?,
            c,
        ])
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::ImageToTokens(*self)
    }
}

impl LiveOp for ImageToTokens {
    fn spec(&self) -> LayerSpec {
        LayerSpec::ImageToTokens(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = image(inputs);
        let [n, c, h, w] = x.dims();
        Activation::Tokens(x.reshape([n, c, h * w]).swap_dims(1, 2))
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

/// Declares a live op that is one learned `[1, T, D]` tensor stored under the node's own path
/// (torchvision's `class_token`, `encoder.pos_embedding`): the Module impl adds no field name.
macro_rules! learned_tokens {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            /// `[1, T, D]`.
            pub value: Param<Tensor<3>>,
        }

        impl Module for $name {
            fn collect_devices(&self, devices: Devices) -> Devices {
                Module::collect_devices(&self.value, devices)
            }
            fn fork(self, device: &Device) -> Self {
                Self { value: Module::fork(self.value, device) }
            }
            fn to_device(self, device: &Device) -> Self {
                Self { value: Module::to_device(self.value, device) }
            }
            fn train(self) -> Self {
                Self { value: Module::train(self.value) }
            }
            fn valid(&self) -> Self {
                Self { value: Module::valid(&self.value) }
            }
            fn materialize(self) -> Self {
                Self { value: Module::materialize(self.value) }
            }
            fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
                Module::visit(&self.value, visitor)
            }
            fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
                Self { value: Module::map(self.value, mapper) }
            }
        }

        impl $name {
            /// `[tokens, features]` of the stored value.
            pub fn shape(&self) -> [usize; 2] {
                let [_, t, d] = self.value.lazy_shape().dims();
                [t, d]
            }

            fn select_features(&mut self, keep: &[bool]) {
                self.value = Param::from_tensor(select_dim(self.value.val(), 2, keep));
            }
        }
    };
}

learned_tokens!(
    /// A live class token.
    ClassToken
);
learned_tokens!(
    /// A live position embedding.
    PositionEmbedding
);

/// Output channel `c` of a learned value combined with the input: known when the input's
/// channel is constant and the value's column `c` is one number over all its tokens.
fn constant_with(
    input: &[Option<f32>],
    value: &Param<Tensor<3>>,
    combine: impl Fn(f32, f32) -> Option<f32>,
) -> Vec<Option<f32>> {
    let [_, t, d] = value.lazy_shape().dims();
    let values = host_values(value.val());
    (0..d)
        .map(|c| {
            let first = values[c];
            let uniform = (0..t).all(|k| values[k * d + c] == first);
            input[c].filter(|_| uniform).and_then(|x| combine(x, first))
        })
        .collect()
}

/// A learned token put in front of the sequence: `[T, D]` → `[T + 1, D]` (ViT's class token,
/// `torch.cat([class_token.expand(n, -1, -1), x], dim=1)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassTokenSpec {
    /// Token width.
    pub dim: usize,
}

impl Op for ClassTokenSpec {
    fn kind(&self) -> &'static str {
        "ClassToken"
    }
    fn validate(&self) -> Result<(), String> {
        if self.dim == 0 {
            return Err("dim must be positive".into());
        }
        Ok(())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [t, d] = token_shape(inputs)?;
        if d != self.dim {
            return Err(format!(
                "the class token has {} features, the tokens {d}",
                self.dim
            ));
        }
        Ok(vec![t + 1, d])
    }
    fn params(&self) -> usize {
        self.dim
    }
    fn detail(&self) -> String {
        format!("1×{}", self.dim)
    }
    fn build(&self, _scheme: InitScheme, device: &Device) -> Layer {
        // torchvision starts it at zero.
        let value = Initializer::Zeros.init([1, 1, self.dim], device);
        Layer::ClassToken(ClassToken { value })
    }
}

impl LiveOp for ClassToken {
    fn spec(&self) -> LayerSpec {
        LayerSpec::ClassToken(ClassTokenSpec {
            dim: self.shape()[1],
        })
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = tokens(inputs);
        let [n, _, d] = x.dims();
        let token = self.value.val().expand([n, 1, d]);
        Activation::Tokens(Tensor::cat(vec![token, x], 1))
    }
    fn select_channels(&mut self, _inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        if let Some(keep) = outputs {
            self.select_features(keep);
        }
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        constant_with(&inputs[0], &self.value, |x, token| {
            (x == token).then_some(x)
        })
    }
}

/// A learned `[T, D]` added to the tokens (ViT's `encoder.pos_embedding`). The token count is
/// fixed: it follows from the image size and patch size the model was built for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionEmbeddingSpec {
    /// Number of tokens.
    pub tokens: usize,
    /// Token width.
    pub dim: usize,
}

impl Op for PositionEmbeddingSpec {
    fn kind(&self) -> &'static str {
        "PositionEmbedding"
    }
    fn validate(&self) -> Result<(), String> {
        if self.tokens == 0 || self.dim == 0 {
            return Err("tokens and dim must be positive".into());
        }
        Ok(())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [t, d] = token_shape(inputs)?;
        if t != self.tokens {
            return Err(format!(
                "the position embedding holds {} tokens but the sequence has {t}: the image \
                 size must be the one the model was built for",
                self.tokens
            ));
        }
        if d != self.dim {
            return Err(format!(
                "the position embedding has {} features, the tokens {d}",
                self.dim
            ));
        }
        Ok(vec![t, d])
    }
    fn params(&self) -> usize {
        count(&[self.tokens, self.dim])
    }
    fn detail(&self) -> String {
        format!("{}×{}", self.tokens, self.dim)
    }
    fn build(&self, scheme: InitScheme, device: &Device) -> Layer {
        let init = match scheme {
            InitScheme::Zeros => Initializer::Zeros,
            _ => Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            },
        };
        let value = init.init([1, self.tokens, self.dim], device);
        Layer::PositionEmbedding(PositionEmbedding { value })
    }
}

impl LiveOp for PositionEmbedding {
    fn spec(&self) -> LayerSpec {
        let [tokens, dim] = self.shape();
        LayerSpec::PositionEmbedding(PositionEmbeddingSpec { tokens, dim })
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        Activation::Tokens(tokens(inputs) + self.value.val())
    }
    fn select_channels(&mut self, _inputs: Option<&[bool]>, outputs: Option<&[bool]>) {
        if let Some(keep) = outputs {
            self.select_features(keep);
        }
    }
    fn constant_channels(
        &self,
        inputs: &[Vec<Option<f32>>],
        _shapes: &[&[usize]],
        _output: &[usize],
    ) -> Vec<Option<f32>> {
        constant_with(&inputs[0], &self.value, |x, e| Some(x + e))
    }
}

/// One token of the sequence as the sample's vector: `[T, D]` → `[D]` (`x[:, index]`; ViT
/// classifies from its class token, index 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectToken {
    /// Which token.
    pub index: usize,
}

impl Op for SelectToken {
    fn kind(&self) -> &'static str {
        "SelectToken"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [t, d] = token_shape(inputs)?;
        if self.index >= t {
            return Err(format!(
                "token {} does not exist in a sequence of {t}",
                self.index
            ));
        }
        Ok(vec![d])
    }
    fn detail(&self) -> String {
        format!("token {}", self.index)
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::SelectToken(*self)
    }
}

impl LiveOp for SelectToken {
    fn spec(&self) -> LayerSpec {
        LayerSpec::SelectToken(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = tokens(inputs);
        let [n, _, d] = x.dims();
        Activation::Flat(x.narrow(1, self.index, 1).reshape([n, d]))
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

/// The mean over tokens: `[T, D]` → `[D]` (`x.mean(dim=1)`, global average pooling of a
/// transformer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenMean {}

impl Op for TokenMean {
    fn kind(&self) -> &'static str {
        "TokenMean"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [_, d] = token_shape(inputs)?;
        Ok(vec![d])
    }
    fn build(&self, _scheme: InitScheme, _device: &Device) -> Layer {
        Layer::TokenMean(*self)
    }
}

impl LiveOp for TokenMean {
    fn spec(&self) -> LayerSpec {
        LayerSpec::TokenMean(*self)
    }
    fn forward(&self, inputs: Vec<Activation>) -> Activation {
        let x = tokens(inputs);
        let [n, _, d] = x.dims();
        Activation::Flat(x.mean_dim(1).reshape([n, d]))
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
    fn an_image_becomes_tokens_row_by_row_and_a_class_token_goes_first() {
        let device = Device::flex();
        // [1, 2, 2, 2]: channel 0 = 0..4, channel 1 = 10..14.
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![0f32, 1., 2., 3., 10., 11., 12., 13.], [1, 2, 2, 2]),
            &device,
        );
        let t = ImageToTokens {}.forward(vec![Activation::Spatial(x)]);
        assert_eq!(t.dims(), vec![1, 4, 2]);
        let values = host_values(t.clone().flatten());
        assert_eq!(values, vec![0., 10., 1., 11., 2., 12., 3., 13.]);
        let cls = ClassToken {
            value: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![-1f32, -2.], [1, 1, 2]),
                &device,
            )),
        };
        let with = cls.forward(vec![t]);
        assert_eq!(with.dims(), vec![1, 5, 2]);
        let with_values = host_values(with.clone().flatten());
        assert_eq!(&with_values[..4], &[-1., -2., 0., 10.]);
        let first = SelectToken { index: 0 }.forward(vec![with.clone()]);
        assert_eq!(host_values(first.flatten()), vec![-1., -2.]);
        let mean = TokenMean {}.forward(vec![with]);
        let expected = [(-1. + 6.) / 5., (-2. + 46.) / 5.];
        for (a, b) in host_values(mean.flatten()).iter().zip(expected) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!(SelectToken { index: 5 }.output_shape(&[&[5, 2]]).is_err());
        assert_eq!(
            ClassTokenSpec { dim: 2 }.output_shape(&[&[4, 2]]).unwrap(),
            vec![5, 2]
        );
    }

    #[test]
    fn position_embedding_checks_the_token_count_and_knows_constant_channels() {
        let spec = PositionEmbeddingSpec { tokens: 3, dim: 2 };
        let err = spec.output_shape(&[&[5, 2]]).unwrap_err();
        assert!(err.contains("3 tokens") && err.contains("5"), "{err}");
        let device = Device::flex();
        let pe = PositionEmbedding {
            value: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1f32, 0., 1., 5., 1., 7.], [1, 3, 2]),
                &device,
            )),
        };
        // Column 0 is 1 at every position: a constant input channel stays constant.
        let c = pe.constant_channels(&[vec![Some(2.0), Some(2.0)]], &[], &[]);
        assert_eq!(c, vec![Some(3.0), None]);
    }
}
