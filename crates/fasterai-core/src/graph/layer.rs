//! The live layer enum: Burn modules (with trainable `Param`s) plus the stateless steps between.

use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::sequential::Sequential;
use super::spec::{LayerSpec, NamedSpec};

/// What flows between layers: an image batch `[N, C, H, W]` or a flat batch `[N, F]`.
#[derive(Debug, Clone)]
pub enum Activation {
    /// `[N, C, H, W]`.
    Spatial(Tensor<4>),
    /// `[N, F]`.
    Flat(Tensor<2>),
}

impl Activation {
    /// Shape including the batch dimension.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Activation::Spatial(x) => x.dims().to_vec(),
            Activation::Flat(x) => x.dims().to_vec(),
        }
    }

    /// The flat tensor (`[N, F]`), or `None` for an image batch.
    pub fn into_flat(self) -> Option<Tensor<2>> {
        match self {
            Activation::Flat(x) => Some(x),
            Activation::Spatial(_) => None,
        }
    }

    /// The image tensor (`[N, C, H, W]`), or `None` for a flat batch.
    pub fn into_spatial(self) -> Option<Tensor<4>> {
        match self {
            Activation::Spatial(x) => Some(x),
            Activation::Flat(_) => None,
        }
    }

    /// Both kinds flattened to `[N, F]` (a no-op for flat batches).
    pub fn flatten(self) -> Tensor<2> {
        match self {
            Activation::Spatial(x) => x.flatten(1, 3),
            Activation::Flat(x) => x,
        }
    }
}

impl From<Tensor<4>> for Activation {
    fn from(x: Tensor<4>) -> Self {
        Activation::Spatial(x)
    }
}

impl From<Tensor<2>> for Activation {
    fn from(x: Tensor<2>) -> Self {
        Activation::Flat(x)
    }
}

/// One layer of a model graph. Stateless steps (`Relu`, `Flatten`) carry no data.
///
/// Parameters are addressed with PyTorch's dotted paths: the enum adds no path segment, so a
/// convolution at `features.0` owns `features.0.weight` and `features.0.bias`.
#[derive(Debug, Clone)]
pub enum Layer {
    /// 2-D convolution (`weight: [out, in / groups, kh, kw]`).
    Conv2d(Conv2d),
    /// Batch normalisation over channels (`gamma`, `beta`, running mean and variance).
    BatchNorm2d(BatchNorm),
    /// Fully connected layer. Burn stores `weight` as `[in, out]` (PyTorch: `[out, in]`).
    Linear(Linear),
    /// Rectified linear unit.
    Relu,
    /// Max pooling.
    MaxPool2d(MaxPool2d),
    /// Adaptive average pooling to a fixed output size.
    AdaptiveAvgPool2d(AdaptiveAvgPool2d),
    /// Dropout (identity in evaluation mode).
    Dropout(Dropout),
    /// `[N, C, H, W]` to `[N, C·H·W]`.
    Flatten,
    /// A nested container.
    Sequential(Sequential),
}

/// How a freshly built layer's weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitScheme {
    /// PyTorch's defaults (Kaiming-uniform with `a = √5` for conv and linear weights).
    #[default]
    PyTorchDefault,
    /// torchvision's VGG scheme: conv weights Kaiming-normal (fan-out, ReLU gain), linear
    /// weights `N(0, 0.01)`, all biases zero.
    Vgg,
}

impl Layer {
    /// Builds a layer with fresh weights from its specification.
    ///
    /// The spec should have passed [`LayerSpec::validate`]; Burn panics on zero sizes.
    pub fn from_spec(spec: &LayerSpec, scheme: InitScheme, device: &Device) -> Layer {
        match spec {
            &LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => {
                let mut config = Conv2dConfig::new([in_channels, out_channels], kernel_size)
                    .with_stride(stride)
                    .with_dilation(dilation)
                    .with_groups(groups)
                    .with_bias(bias)
                    .with_padding(PaddingConfig2d::Explicit(
                        padding[0], padding[1], padding[0], padding[1],
                    ));
                if scheme == InitScheme::Vgg {
                    config = config.with_initializer(Initializer::KaimingNormal {
                        gain: std::f64::consts::SQRT_2,
                        fan_out_only: true,
                    });
                }
                let mut conv = config.init(device);
                if scheme == InitScheme::Vgg {
                    conv.bias = conv.bias.map(|b| b.map(|b| b.zeros_like()));
                }
                Layer::Conv2d(conv)
            }
            &LayerSpec::BatchNorm2d {
                num_features,
                eps,
                momentum,
            } => Layer::BatchNorm2d(
                BatchNormConfig::new(num_features)
                    .with_epsilon(eps)
                    .with_momentum(momentum)
                    .init(device),
            ),
            &LayerSpec::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let mut config = LinearConfig::new(in_features, out_features).with_bias(bias);
                if scheme == InitScheme::Vgg {
                    config = config.with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: 0.01,
                    });
                }
                let mut linear = config.init(device);
                if scheme == InitScheme::Vgg {
                    linear.bias = linear.bias.map(|b| b.map(|b| b.zeros_like()));
                }
                Layer::Linear(linear)
            }
            LayerSpec::ReLU => Layer::Relu,
            &LayerSpec::MaxPool2d {
                kernel_size,
                stride,
                padding,
                dilation,
                ceil_mode,
            } => Layer::MaxPool2d(
                MaxPool2dConfig::new(kernel_size)
                    .with_strides(stride)
                    .with_dilation(dilation)
                    .with_ceil_mode(ceil_mode)
                    .with_padding(PaddingConfig2d::Explicit(
                        padding[0], padding[1], padding[0], padding[1],
                    ))
                    .init(),
            ),
            &LayerSpec::AdaptiveAvgPool2d { output_size } => {
                Layer::AdaptiveAvgPool2d(AdaptiveAvgPool2dConfig::new(output_size).init())
            }
            &LayerSpec::Dropout { p } => Layer::Dropout(DropoutConfig::new(p).init()),
            LayerSpec::Flatten => Layer::Flatten,
            LayerSpec::Sequential { children } => {
                let mut seq = Sequential::new();
                for NamedSpec { name, layer } in children {
                    seq.push(name.clone(), Layer::from_spec(layer, scheme, device));
                }
                Layer::Sequential(seq)
            }
        }
    }

    /// The layer's specification, read off its current weights (so it follows any surgery).
    pub fn spec(&self) -> LayerSpec {
        match self {
            Layer::Conv2d(conv) => {
                let [out_channels, in_per_group, kh, kw] = conv.weight.dims();
                LayerSpec::Conv2d {
                    in_channels: in_per_group * conv.groups,
                    out_channels,
                    kernel_size: [kh, kw],
                    stride: conv.stride,
                    padding: symmetric_padding(&conv.padding),
                    dilation: conv.dilation,
                    groups: conv.groups,
                    bias: conv.bias.is_some(),
                }
            }
            Layer::BatchNorm2d(bn) => LayerSpec::BatchNorm2d {
                num_features: bn.gamma.dims()[0],
                eps: bn.epsilon,
                momentum: bn.momentum,
            },
            Layer::Linear(linear) => {
                let [in_features, out_features] = linear.weight.dims();
                LayerSpec::Linear {
                    in_features,
                    out_features,
                    bias: linear.bias.is_some(),
                }
            }
            Layer::Relu => LayerSpec::ReLU,
            Layer::MaxPool2d(pool) => LayerSpec::MaxPool2d {
                kernel_size: pool.kernel_size,
                stride: pool.stride,
                padding: symmetric_padding(&pool.padding),
                dilation: pool.dilation,
                ceil_mode: pool.ceil_mode,
            },
            Layer::AdaptiveAvgPool2d(pool) => LayerSpec::AdaptiveAvgPool2d {
                output_size: pool.output_size,
            },
            Layer::Dropout(dropout) => LayerSpec::Dropout { p: dropout.prob },
            Layer::Flatten => LayerSpec::Flatten,
            Layer::Sequential(seq) => seq.spec(),
        }
    }

    /// Type name, as PyTorch prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv2d(_) => "Conv2d",
            Layer::BatchNorm2d(_) => "BatchNorm2d",
            Layer::Linear(_) => "Linear",
            Layer::Relu => "ReLU",
            Layer::MaxPool2d(_) => "MaxPool2d",
            Layer::AdaptiveAvgPool2d(_) => "AdaptiveAvgPool2d",
            Layer::Dropout(_) => "Dropout",
            Layer::Flatten => "Flatten",
            Layer::Sequential(_) => "Sequential",
        }
    }

    /// Runs the layer.
    ///
    /// # Panics
    /// If the activation kind does not suit the layer (a `Linear` fed an image batch). Check
    /// shapes first with [`LayerSpec::output_shape`] or use
    /// [`Sequential::try_forward`](super::Sequential::try_forward).
    pub fn forward(&self, x: Activation) -> Activation {
        use Activation::{Flat, Spatial};
        match (self, x) {
            (Layer::Conv2d(m), Spatial(x)) => Spatial(m.forward(x)),
            (Layer::BatchNorm2d(m), Spatial(x)) => Spatial(m.forward(x)),
            (Layer::Linear(m), Flat(x)) => Flat(m.forward(x)),
            (Layer::Relu, Spatial(x)) => Spatial(relu(x)),
            (Layer::Relu, Flat(x)) => Flat(relu(x)),
            (Layer::MaxPool2d(m), Spatial(x)) => Spatial(m.forward(x)),
            (Layer::AdaptiveAvgPool2d(m), Spatial(x)) => Spatial(m.forward(x)),
            (Layer::Dropout(m), Spatial(x)) => Spatial(m.forward(x)),
            (Layer::Dropout(m), Flat(x)) => Flat(m.forward(x)),
            (Layer::Flatten, Spatial(x)) => Flat(x.flatten(1, 3)),
            (Layer::Sequential(m), x) => m.forward(x),
            (layer, x) => panic!(
                "{} cannot take an activation of shape {:?}",
                layer.kind(),
                x.dims()
            ),
        }
    }
}

/// Reads `[pad_h, pad_w]` back from the explicit symmetric padding this crate creates.
fn symmetric_padding(padding: &PaddingConfig2d) -> [usize; 2] {
    match padding {
        PaddingConfig2d::Explicit(top, left, _, _) => [*top, *left],
        // Layers are only built through `Layer::from_spec`, which always uses explicit padding.
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Same => panic!("`Same` padding is not representable in a fasterai model"),
    }
}

/// Applies `$body` to the Burn module inside each data-carrying variant; `$empty` otherwise.
macro_rules! each_module {
    ($layer:expr, $m:ident => $body:expr, $empty:expr) => {
        match $layer {
            Layer::Conv2d($m) => $body,
            Layer::BatchNorm2d($m) => $body,
            Layer::Linear($m) => $body,
            Layer::MaxPool2d($m) => $body,
            Layer::AdaptiveAvgPool2d($m) => $body,
            Layer::Dropout($m) => $body,
            Layer::Sequential($m) => $body,
            Layer::Relu | Layer::Flatten => $empty,
        }
    };
}

/// Like [`each_module!`] but rebuilds the same variant from the transformed module.
macro_rules! map_module {
    ($layer:expr, $m:ident => $body:expr) => {
        match $layer {
            Layer::Conv2d($m) => Layer::Conv2d($body),
            Layer::BatchNorm2d($m) => Layer::BatchNorm2d($body),
            Layer::Linear($m) => Layer::Linear($body),
            Layer::MaxPool2d($m) => Layer::MaxPool2d($body),
            Layer::AdaptiveAvgPool2d($m) => Layer::AdaptiveAvgPool2d($body),
            Layer::Dropout($m) => Layer::Dropout($body),
            Layer::Sequential($m) => Layer::Sequential($body),
            stateless @ (Layer::Relu | Layer::Flatten) => stateless,
        }
    };
}

// Hand-written rather than derived so that the enum adds no segment to parameter paths.
impl Module for Layer {
    fn collect_devices(&self, devices: Devices) -> Devices {
        each_module!(self, m => m.collect_devices(devices), devices)
    }

    fn fork(self, device: &Device) -> Self {
        map_module!(self, m => m.fork(device))
    }

    fn to_device(self, device: &Device) -> Self {
        map_module!(self, m => m.to_device(device))
    }

    fn train(self) -> Self {
        map_module!(self, m => m.train())
    }

    fn valid(&self) -> Self {
        // Cloning a layer clones tensor handles, not tensor data.
        map_module!(self.clone(), m => m.valid())
    }

    fn materialize(self) -> Self {
        map_module!(self, m => m.materialize())
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        each_module!(self, m => m.visit(visitor), ())
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        map_module!(self, m => m.map(mapper))
    }
}
