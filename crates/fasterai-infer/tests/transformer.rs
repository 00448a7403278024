//! The transformer kernels (token ops, layer norm, attention, GELU in a Linear's output pass,
//! softmax) against the graph's own ops, on every instruction set, NaN and infinities included.

use burn::module::Param;
use burn::tensor::{Distribution, Tensor};
use fasterai_core::graph::ops::activation::{GELU, GeluApproximation, Softmax};
use fasterai_core::graph::ops::attention::MultiheadAttentionSpec;
use fasterai_core::graph::ops::merge::Add;
use fasterai_core::graph::ops::norm::LayerNormSpec;
use fasterai_core::graph::ops::token::{
    ClassTokenSpec, ImageToTokens, PositionEmbeddingSpec, SelectToken, TokenMean,
};
use fasterai_core::prelude::*;
use fasterai_core::testing::{random_graph, relative_max_diff};
use fasterai_infer::PathChoice;

use crate::{assert_same_non_finite, both, flex, for_each_isa, normal, with_non_finite};

/// Image `[dim, h, w]` → tokens → class token → positions → a pre-norm encoder block (attention
/// with `heads`, MLP with both GELUs, residual sums) → softmax → norm → a readout, with every
/// learned value random (layer norms' γ and β included).
fn encoder(dim: usize, heads: usize, [h, w]: [usize; 2], causal: bool, mean: bool) -> Graph {
    let tokens = h * w + 1;
    let norm = || LayerSpec::LayerNorm(LayerNormSpec::new(dim, 1e-6));
    let gelu = |approximate| LayerSpec::GELU(GELU { approximate });
    let mut g = GraphBuilder::new();
    g.then("tokens", LayerSpec::ImageToTokens(ImageToTokens {}));
    g.then("class", LayerSpec::ClassToken(ClassTokenSpec { dim }));
    let x = g.then(
        "positions",
        LayerSpec::PositionEmbedding(PositionEmbeddingSpec { tokens, dim }),
    );
    g.then("ln_1", norm());
    let attention = MultiheadAttentionSpec::new(dim, heads).with_causal(causal);
    let a = g.then("attention", LayerSpec::MultiheadAttention(attention));
    let x = g.node("add", LayerSpec::Add(Add {}), &[&a, &x]);
    g.then("ln_2", norm());
    g.then("fc1", LayerSpec::linear(dim, 2 * dim));
    g.then("gelu", gelu(GeluApproximation::None));
    g.then("fc2", LayerSpec::linear(2 * dim, dim));
    let m = g.then("gelu_tanh", gelu(GeluApproximation::Tanh));
    g.node("add_1", LayerSpec::Add(Add {}), &[&m, &x]);
    g.then("softmax", LayerSpec::Softmax(Softmax {}));
    g.then("ln", norm());
    if mean {
        g.then("readout", LayerSpec::TokenMean(TokenMean {}));
    } else {
        g.then("readout", LayerSpec::SelectToken(SelectToken { index: 1 }));
    }
    let device = flex();
    let mut net = random_graph(&g.build(), &device);
    for node in &mut net.nodes {
        match &mut node.layer {
            Layer::LayerNorm(ln) => {
                ln.gamma = Some(Param::from_tensor(random([dim])));
                ln.beta = Some(Param::from_tensor(random([dim])));
            }
            Layer::ClassToken(t) => t.value = Param::from_tensor(random([1, 1, dim])),
            Layer::PositionEmbedding(p) => {
                p.value = Param::from_tensor(random([1, tokens, dim]));
            }
            _ => {}
        }
    }
    net
}

fn random<const D: usize>(dims: [usize; D]) -> Tensor<D> {
    Tensor::random(dims, Distribution::Normal(0.0, 1.0), &flex())
}

#[test]
fn transformer_kernels_equal_the_graph_on_every_instruction_set() {
    // 300 tokens split the scores into two query blocks (causal blocks see fewer keys).
    let cases = [
        (12, 3, [5, 7], false, false),
        (12, 3, [5, 7], true, true),
        (8, 2, [15, 20], false, true),
        (8, 2, [15, 20], true, false),
        (6, 1, [1, 1], true, false),
    ];
    for_each_isa(|isa| {
        for (dim, heads, hw, causal, mean) in cases {
            let net = encoder(dim, heads, hw, causal, mean);
            let what = format!("{isa:?} dim {dim} heads {heads} {hw:?} causal {causal}");
            let x = normal([2, dim, hw[0], hw[1]]);
            let (prepared, fast, reference) = both(&net, x, PathChoice::Rules);
            let err = relative_max_diff(fast, reference);
            assert!(err < 1e-4, "{what}: {err}");
            let report = prepared.report();
            assert!(report.as_built.is_empty(), "{what}: {:?}", report.as_built);
            assert_eq!(report.fused_nodes, 2, "{what}: both GELUs in their Linears");
            // NaN and ±∞ spread through attention to every token: equal in both.
            let x = with_non_finite([2, dim, hw[0], hw[1]]);
            let (_, fast, reference) = both(&net, x, PathChoice::Rules);
            assert_same_non_finite(fast, reference, &format!("{what} non-finite"));
        }
    });
}

#[test]
fn layer_norm_gelu_and_softmax_keep_non_finite_values_where_the_graph_does() {
    // Without attention a NaN or infinity stays in its token's row.
    let dim = 16;
    let mut g = GraphBuilder::new();
    g.then("tokens", LayerSpec::ImageToTokens(ImageToTokens {}));
    g.then("ln", LayerSpec::LayerNorm(LayerNormSpec::new(dim, 1e-5)));
    g.then("gelu", LayerSpec::GELU(GELU::default()));
    g.then("fc", LayerSpec::linear(dim, dim));
    g.then(
        "gelu_tanh",
        LayerSpec::GELU(GELU {
            approximate: GeluApproximation::Tanh,
        }),
    );
    g.then("softmax", LayerSpec::Softmax(Softmax {}));
    g.then("mean", LayerSpec::TokenMean(TokenMean {}));
    let net = random_graph(&g.build(), &flex());
    for_each_isa(|isa| {
        let x = with_non_finite([3, dim, 6, 5]);
        let (_, fast, reference) = both(&net, x, PathChoice::Rules);
        assert_same_non_finite(fast, reference, &format!("{isa:?}"));
    });
}
