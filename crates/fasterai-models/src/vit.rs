//! Vision transformers laid out as torchvision's `VisionTransformer`: `conv_proj` (patch
//! embedding), `class_token`, `encoder.pos_embedding`, `encoder.layers.encoder_layer_{i}`
//! (`ln_1`, `self_attention`, `ln_2`, `mlp.0`/`mlp.3`), `encoder.ln`, `heads.head`.

use fasterai_core::graph::ops::activation::{GELU, StochasticDepthSpec};
use fasterai_core::graph::ops::attention::MultiheadAttentionSpec;
use fasterai_core::graph::ops::conv::Conv2dSpec;
use fasterai_core::graph::ops::merge::Add;
use fasterai_core::graph::ops::norm::LayerNormSpec;
use fasterai_core::graph::ops::token::{
    ClassTokenSpec, ImageToTokens, PositionEmbeddingSpec, SelectToken,
};
use fasterai_core::graph::{GraphBuilder, GraphSpec, LayerSpec};

use crate::ModelsError;
use crate::blocks::residual;

/// torchvision's `VisionTransformer(image_size, patch_size, num_layers, num_heads, hidden_dim,
/// mlp_dim)`: the image size and classes come with the model ([`crate::Builtin`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitConfig {
    /// Side of the square patches (the patch convolution's kernel and stride).
    pub patch: usize,
    /// Encoder blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Token width.
    pub hidden: usize,
    /// Width of each block's MLP.
    pub mlp: usize,
    /// Stochastic depth on each residual branch, rising linearly from 0 in the first block to
    /// this in the last (0: none, as in torchvision; the identity at inference either way).
    pub drop_path: f64,
}

impl VitConfig {
    /// ViT-B/16 (Dosovitskiy et al. 2021): 12 blocks of 12 heads, width 768, MLP 3072.
    pub const B_16: VitConfig = VitConfig {
        patch: 16,
        layers: 12,
        heads: 12,
        hidden: 768,
        mlp: 3072,
        drop_path: 0.0,
    };

    /// ViT-B/32: ViT-B with 32×32 patches.
    pub const B_32: VitConfig = VitConfig {
        patch: 32,
        ..Self::B_16
    };

    /// The usual "ViT-Tiny on CIFAR" shape for 32×32 images: patch 4 (64 patches and the class
    /// token), 6 blocks of 3 heads of 64, width 192, MLP 384 (ratio 2 rather than 4: half the
    /// MLP time on a CPU), stochastic depth up to 0.1.
    pub const CIFAR: VitConfig = VitConfig {
        patch: 4,
        layers: 6,
        heads: 3,
        hidden: 192,
        mlp: 384,
        drop_path: 0.1,
    };

    /// The graph for images `[c, h, w]` with `classes` outputs.
    pub fn spec(&self, input: [usize; 3], classes: usize) -> Result<GraphSpec, ModelsError> {
        spec(*self, input, classes)
    }
}

/// Layer-norm ε of torchvision's ViT.
const EPS: f64 = 1e-6;

fn spec(
    config: VitConfig,
    [c, h, w]: [usize; 3],
    classes: usize,
) -> Result<GraphSpec, ModelsError> {
    let VitConfig {
        patch,
        layers,
        heads,
        hidden,
        mlp,
        drop_path,
    } = config;
    if patch == 0 || h % patch != 0 || w % patch != 0 {
        return Err(ModelsError::InvalidConfig(format!(
            "a {h}×{w} image does not split into {patch}×{patch} patches"
        )));
    }
    let tokens = (h / patch) * (w / patch) + 1;
    let mut g = GraphBuilder::new();
    let conv = Conv2dSpec {
        padding: [0, 0],
        ..Conv2dSpec::new(c, hidden, patch, patch).with_bias(true)
    };
    g.then("conv_proj", LayerSpec::Conv2d(conv));
    g.then(
        "conv_proj.tokens",
        LayerSpec::ImageToTokens(ImageToTokens {}),
    );
    g.then(
        "class_token",
        LayerSpec::ClassToken(ClassTokenSpec { dim: hidden }),
    );
    g.then(
        "encoder.pos_embedding",
        LayerSpec::PositionEmbedding(PositionEmbeddingSpec {
            tokens,
            dim: hidden,
        }),
    );
    g.then("encoder.dropout", LayerSpec::dropout(0.0));
    let norm = || LayerSpec::LayerNorm(LayerNormSpec::new(hidden, EPS));
    for i in 0..layers {
        let p = format!("encoder.layers.encoder_layer_{i}");
        // Stochastic depth rises linearly over the blocks (Huang et al. 2016).
        let drop = drop_path * i as f64 / (layers.max(2) - 1) as f64;
        let branch_end = |g: &mut GraphBuilder, name: &str| {
            if drop > 0.0 {
                g.then(
                    format!("{p}.{name}"),
                    LayerSpec::StochasticDepth(StochasticDepthSpec { p: drop }),
                );
            }
        };
        let input = g.cursor().to_string();
        g.then(format!("{p}.ln_1"), norm());
        g.then(
            format!("{p}.self_attention"),
            LayerSpec::MultiheadAttention(MultiheadAttentionSpec::new(hidden, heads)),
        );
        g.then(format!("{p}.dropout"), LayerSpec::dropout(0.0));
        branch_end(&mut g, "drop_path");
        let x = residual(&mut g, &p, &input);
        g.then(format!("{p}.ln_2"), norm());
        g.chain(
            &format!("{p}.mlp"),
            [
                LayerSpec::linear(hidden, mlp),
                LayerSpec::GELU(GELU::default()),
                LayerSpec::dropout(0.0),
                LayerSpec::linear(mlp, hidden),
                LayerSpec::dropout(0.0),
            ],
        );
        branch_end(&mut g, "drop_path_1");
        let y = g.cursor().to_string();
        g.node(format!("{p}.add_1"), LayerSpec::Add(Add {}), &[&y, &x]);
    }
    g.then("encoder.ln", norm());
    g.then(
        "class_output",
        LayerSpec::SelectToken(SelectToken { index: 0 }),
    );
    g.then("heads.head", LayerSpec::linear(hidden, classes));
    Ok(g.build())
}
