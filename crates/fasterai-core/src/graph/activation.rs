//! What flows between ops: an image batch, a token sequence or a flat batch. Without the batch
//! dimension their shapes have three, two and one entries, which is how shapes alone tell them
//! apart ([`channel_axis`]).

use burn::tensor::Tensor;

/// An image batch `[N, C, H, W]`, a token sequence `[N, T, D]` or a flat batch `[N, F]`.
#[derive(Debug, Clone)]
pub enum Activation {
    /// `[N, C, H, W]`.
    Spatial(Tensor<4>),
    /// `[N, T, D]`: `T` tokens of `D` features each (a transformer's hidden states).
    Tokens(Tensor<3>),
    /// `[N, F]`.
    Flat(Tensor<2>),
}

/// The axis of a per-sample shape (no batch dimension) that holds its channels: `C` of
/// `[C, H, W]`, `D` of tokens `[T, D]`, `F` of `[F]`. Channel coupling and pruning act on it.
pub fn channel_axis(shape: &[usize]) -> usize {
    if shape.len() == 2 { 1 } else { 0 }
}

/// The number of channels of a per-sample shape (see [`channel_axis`]; 1 for a scalar).
pub fn channel_count(shape: &[usize]) -> usize {
    shape.get(channel_axis(shape)).copied().unwrap_or(1)
}

impl Activation {
    /// Shape including the batch dimension.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Activation::Spatial(x) => x.dims().to_vec(),
            Activation::Tokens(x) => x.dims().to_vec(),
            Activation::Flat(x) => x.dims().to_vec(),
        }
    }

    /// The device the value is on.
    pub fn device(&self) -> burn::tensor::Device {
        match self {
            Activation::Spatial(x) => x.device(),
            Activation::Tokens(x) => x.device(),
            Activation::Flat(x) => x.device(),
        }
    }

    /// Whether the value carries gradients (an autodiff tensor).
    pub fn is_autodiff(&self) -> bool {
        match self {
            Activation::Spatial(x) => x.is_autodiff(),
            Activation::Tokens(x) => x.is_autodiff(),
            Activation::Flat(x) => x.is_autodiff(),
        }
    }

    /// The flat tensor (`[N, F]`), or `None` for the other kinds.
    pub fn into_flat(self) -> Option<Tensor<2>> {
        match self {
            Activation::Flat(x) => Some(x),
            _ => None,
        }
    }

    /// The image tensor (`[N, C, H, W]`), or `None` for the other kinds.
    pub fn into_spatial(self) -> Option<Tensor<4>> {
        match self {
            Activation::Spatial(x) => Some(x),
            _ => None,
        }
    }

    /// The token sequence (`[N, T, D]`), or `None` for the other kinds.
    pub fn into_tokens(self) -> Option<Tensor<3>> {
        match self {
            Activation::Tokens(x) => Some(x),
            _ => None,
        }
    }

    /// Every kind flattened to `[N, F]` (a no-op for flat batches).
    pub fn flatten(self) -> Tensor<2> {
        match self {
            Activation::Spatial(x) => x.flatten(1, 3),
            Activation::Tokens(x) => x.flatten(1, 2),
            Activation::Flat(x) => x,
        }
    }

    /// Applies the same element-wise function to any kind (one closure per rank: Rust closures
    /// are not generic over it).
    pub fn map(
        self,
        f4: impl FnOnce(Tensor<4>) -> Tensor<4>,
        f3: impl FnOnce(Tensor<3>) -> Tensor<3>,
        f2: impl FnOnce(Tensor<2>) -> Tensor<2>,
    ) -> Self {
        match self {
            Activation::Spatial(x) => Activation::Spatial(f4(x)),
            Activation::Tokens(x) => Activation::Tokens(f3(x)),
            Activation::Flat(x) => Activation::Flat(f2(x)),
        }
    }
}

impl From<Tensor<4>> for Activation {
    fn from(x: Tensor<4>) -> Self {
        Activation::Spatial(x)
    }
}

impl From<Tensor<3>> for Activation {
    fn from(x: Tensor<3>) -> Self {
        Activation::Tokens(x)
    }
}

impl From<Tensor<2>> for Activation {
    fn from(x: Tensor<2>) -> Self {
        Activation::Flat(x)
    }
}
