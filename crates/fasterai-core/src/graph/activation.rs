//! What flows between ops: an image batch or a flat batch.

use burn::tensor::Tensor;

/// An image batch `[N, C, H, W]` or a flat batch `[N, F]`.
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

    /// Applies the same element-wise function to either kind.
    pub fn map(
        self,
        f4: impl FnOnce(Tensor<4>) -> Tensor<4>,
        f2: impl FnOnce(Tensor<2>) -> Tensor<2>,
    ) -> Self {
        match self {
            Activation::Spatial(x) => Activation::Spatial(f4(x)),
            Activation::Flat(x) => Activation::Flat(f2(x)),
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
