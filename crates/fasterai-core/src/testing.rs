//! Helpers for tests, examples and benchmarks: small models and non-trivial weights.

use burn::module::{Param, RunningState};
use burn::tensor::{Device, Distribution, Tensor};

use crate::graph::ops::merge::Add;
use crate::graph::{Graph, GraphBuilder, GraphSpec, InitScheme, Layer, LayerSpec};

/// Gives every batch norm random affine parameters and running statistics (γ ∈ [0.5, 1.5],
/// β ~ 0.2·N(0, 1), mean ~ 0.5·N(0, 1), var ∈ [0.5, 2]), as a trained network would have, so
/// that lossless transforms are tested on more than the identity a fresh batch norm computes.
pub fn randomize_batch_norms(net: &mut Graph, device: &Device) {
    for node in &mut net.nodes {
        if let Layer::BatchNorm2d(bn) = &mut node.layer {
            let n = bn.gamma.dims()[0];
            let uniform = |lo, hi| Tensor::<1>::random([n], Distribution::Uniform(lo, hi), device);
            let normal = |std| Tensor::<1>::random([n], Distribution::Normal(0.0, std), device);
            bn.gamma = Param::from_tensor(uniform(0.5, 1.5));
            bn.beta = Param::from_tensor(normal(0.2));
            bn.running_mean = RunningState::new(normal(0.5));
            bn.running_var = RunningState::new(uniform(0.5, 2.0));
        }
    }
}

/// Builds `spec` with PyTorch's default initialisation and random batch-norm statistics.
pub fn random_graph(spec: &GraphSpec, device: &Device) -> Graph {
    let mut net = Graph::from_spec(spec, InitScheme::PyTorchDefault, device);
    randomize_batch_norms(&mut net, device);
    net
}

/// A small VGG-like network for `[channels, 16, 16]` images: two conv/BN/ReLU/pool stages, a
/// flatten and two linear layers, with random weights and batch-norm statistics.
pub fn tiny_cnn(channels: usize, classes: usize, device: &Device) -> Graph {
    let (conv, bn, pool) = (
        LayerSpec::conv3x3,
        LayerSpec::batch_norm,
        LayerSpec::max_pool2(false),
    );
    let layers = [
        conv(channels, 8),
        bn(8),
        LayerSpec::relu(),
        pool.clone(),
        conv(8, 16),
        bn(16),
        LayerSpec::relu(),
        pool,
        LayerSpec::flatten(),
        LayerSpec::linear(16 * 4 * 4, 32),
        LayerSpec::relu(),
        LayerSpec::dropout(0.5),
        LayerSpec::linear(32, classes),
    ];
    let mut g = GraphBuilder::new();
    for (i, op) in layers.into_iter().enumerate() {
        g.then(i.to_string(), op);
    }
    random_graph(&g.build(), device)
}

/// A one-block vision transformer for `[channels, 16, 16]` images: 4×4 patches (16 tokens and
/// a class token) of width 16, two heads, an MLP of 32, stochastic depth on both residual
/// branches, the class token to a linear head; PyTorch's default initialisation.
pub fn tiny_vit(channels: usize, classes: usize, device: &Device) -> Graph {
    use crate::graph::ops::{
        ClassTokenSpec, Conv2dSpec, GELU, ImageToTokens, LayerNormSpec, MultiheadAttentionSpec,
        PositionEmbeddingSpec, SelectToken, StochasticDepthSpec,
    };
    let (d, p) = (16, "encoder.layers.encoder_layer_0");
    let norm = || LayerSpec::LayerNorm(LayerNormSpec::new(d, 1e-6));
    let drop = || LayerSpec::StochasticDepth(StochasticDepthSpec { p: 0.2 });
    let mut g = GraphBuilder::new();
    let patches = Conv2dSpec {
        padding: [0, 0],
        ..Conv2dSpec::new(channels, d, 4, 4).with_bias(true)
    };
    g.then("conv_proj", LayerSpec::Conv2d(patches));
    g.then(
        "conv_proj.tokens",
        LayerSpec::ImageToTokens(ImageToTokens {}),
    );
    g.then(
        "class_token",
        LayerSpec::ClassToken(ClassTokenSpec { dim: d }),
    );
    let tokens = PositionEmbeddingSpec { tokens: 17, dim: d };
    let x = g.then(
        "encoder.pos_embedding",
        LayerSpec::PositionEmbedding(tokens),
    );
    g.then(format!("{p}.ln_1"), norm());
    let attention = MultiheadAttentionSpec::new(d, 2);
    g.then(
        format!("{p}.self_attention"),
        LayerSpec::MultiheadAttention(attention),
    );
    let branch = g.then(format!("{p}.drop_path"), drop());
    let y = g.node(format!("{p}.add"), LayerSpec::Add(Add {}), &[&branch, &x]);
    g.then(format!("{p}.ln_2"), norm());
    let mlp = [
        LayerSpec::linear(d, 32),
        LayerSpec::GELU(GELU::default()),
        LayerSpec::linear(32, d),
    ];
    g.chain(&format!("{p}.mlp"), mlp);
    let branch = g.then(format!("{p}.drop_path_1"), drop());
    g.node(format!("{p}.add_1"), LayerSpec::Add(Add {}), &[&branch, &y]);
    g.then("encoder.ln", norm());
    g.then(
        "class_output",
        LayerSpec::SelectToken(SelectToken { index: 0 }),
    );
    g.then("heads.head", LayerSpec::linear(d, classes));
    random_graph(&g.build(), device)
}

/// A small residual network for `[channels, 8, 8]` images: a stem, one basic block with an
/// identity shortcut, one with a strided 1×1 projection, global pooling and a linear head,
/// with random weights and batch-norm statistics. Paths follow torchvision's ResNet.
pub fn tiny_resnet(channels: usize, classes: usize, device: &Device) -> Graph {
    let mut g = GraphBuilder::new();
    g.then("conv1", LayerSpec::conv(channels, 8, 3, 1));
    g.then("bn1", LayerSpec::batch_norm(8));
    let mut x = g.then("relu", LayerSpec::relu());
    for (block, (cin, cout, stride)) in [(8, 8, 1), (8, 16, 2)].into_iter().enumerate() {
        let p = format!("layer1.{block}");
        g.then(format!("{p}.conv1"), LayerSpec::conv(cin, cout, 3, stride));
        g.then(format!("{p}.bn1"), LayerSpec::batch_norm(cout));
        g.then(format!("{p}.relu"), LayerSpec::relu());
        g.then(format!("{p}.conv2"), LayerSpec::conv(cout, cout, 3, 1));
        let main = g.then(format!("{p}.bn2"), LayerSpec::batch_norm(cout));
        let shortcut = if stride != 1 || cin != cout {
            g.node(
                format!("{p}.downsample.0"),
                LayerSpec::conv(cin, cout, 1, stride),
                &[&x],
            );
            g.then(format!("{p}.downsample.1"), LayerSpec::batch_norm(cout))
        } else {
            x.clone()
        };
        g.node(
            format!("{p}.add"),
            LayerSpec::Add(Add {}),
            &[&main, &shortcut],
        );
        x = g.then(format!("{p}.relu_out"), LayerSpec::relu());
    }
    g.then("avgpool", LayerSpec::global_avg_pool());
    g.then("flatten", LayerSpec::flatten());
    g.then("fc", LayerSpec::linear(16, classes));
    random_graph(&g.build(), device)
}

/// The `shared/` folder beside the workspace (reference vectors, datasets), or
/// `$FASTERAI_SHARED` if set. `None` when it is absent.
pub fn shared_dir() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("FASTERAI_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
        });
    dir.is_dir().then_some(dir)
}

/// `shared/data/<name>` (the real datasets). Returns `None` (and says so) when it is absent,
/// unless `FASTERAI_REQUIRE_SHARED=1`, where absence is a failure (CI sets it).
///
/// # Panics
/// If it is required and missing.
pub fn shared_data(name: &str) -> Option<std::path::PathBuf> {
    let dir = shared_dir()
        .map(|d| d.join("data").join(name))
        .filter(|d| d.is_dir());
    if dir.is_none() {
        assert!(
            std::env::var("FASTERAI_REQUIRE_SHARED").as_deref() != Ok("1"),
            "shared/data/{name} is required (FASTERAI_REQUIRE_SHARED=1) but missing"
        );
        eprintln!("skipping: shared/data/{name} not found");
    }
    dir
}

/// Tensors and scalar results from `shared/reference/<name>.safetensors` (PyTorch / tensorly
/// reference vectors; see that folder's README).
pub struct Reference {
    tensors: std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>,
    /// The `info` JSON of the file's metadata (scalar results).
    pub info: serde_json::Value,
}

impl Reference {
    /// Opens a reference file. Returns `None` (and says so) when `shared/` is absent, unless
    /// `FASTERAI_REQUIRE_SHARED=1`, where absence is a failure (CI sets it).
    ///
    /// # Panics
    /// If the file exists but cannot be parsed, or is required and missing.
    pub fn open(name: &str) -> Option<Reference> {
        let Some(path) =
            shared_dir().map(|d| d.join("reference").join(format!("{name}.safetensors")))
        else {
            assert!(
                std::env::var("FASTERAI_REQUIRE_SHARED").as_deref() != Ok("1"),
                "shared/reference is required (FASTERAI_REQUIRE_SHARED=1) but absent"
            );
            eprintln!("skipping: shared/reference/{name}.safetensors not found");
            return None;
        };
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("valid header");
        let info = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("info"))
            .map(|s| serde_json::from_str(s).expect("info is JSON"))
            .unwrap_or(serde_json::Value::Null);
        let mut tensors = std::collections::HashMap::new();
        for (name, view) in st.tensors() {
            let values: Vec<f64> = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                    .collect(),
                safetensors::Dtype::F64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                other => panic!("{name}: unsupported dtype {other:?}"),
            };
            tensors.insert(name.to_string(), (view.shape().to_vec(), values));
        }
        Some(Reference { tensors, info })
    }

    /// Shape and values (as f64) of a tensor.
    ///
    /// # Panics
    /// If there is no such tensor.
    pub fn values(&self, name: &str) -> (&[usize], &[f64]) {
        let (shape, values) = self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("no tensor `{name}` in reference"));
        (shape, values)
    }

    /// A tensor as a float32 Burn tensor of rank `D` on `device`.
    pub fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = self.values(name);
        let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        Tensor::from_data(burn::tensor::TensorData::new(data, shape.to_vec()), device)
    }

    /// A scalar from the `info` metadata.
    pub fn scalar(&self, key: &str) -> f64 {
        self.info[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no scalar `{key}` in reference info"))
    }
}

/// `max|a − b| / max|b|` over two tensors of the same shape.
pub fn relative_max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let scale: f32 = b.clone().abs().max().into_scalar();
    let diff: f32 = (a - b).abs().max().into_scalar();
    diff / scale.max(f32::MIN_POSITIVE)
}

/// A small deterministic generator (SplitMix64), so random test graphs need no dependency.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One block of a [`BranchedPlan`]; widths are output channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Conv → BN → ReLU → Conv → BN, plus the block's input, then ReLU.
    Residual,
    /// A 1×1 branch of `width` and a 3×3 branch of `other` channels, concatenated.
    Concat {
        /// Channels of the 1×1 branch.
        width: usize,
        /// Channels of the 3×3 branch.
        other: usize,
    },
    /// Expand ×2, depthwise conv, squeeze-excitation gate of `squeeze` channels, project.
    Inverted {
        /// Channels after the projection.
        width: usize,
        /// Channels inside the gate.
        squeeze: usize,
    },
    /// A stride-2 conv (a [`Block::Late`] once the map is 2×2).
    Down {
        /// Output channels.
        width: usize,
    },
    /// Conv → ReLU → BN: a zero filter becomes a constant, not a zero.
    Late {
        /// Output channels.
        width: usize,
    },
}

/// The recipe of a small branched CNN for `[in_channels, 8, 8]` inputs, built from the blocks
/// real models use (see [`Block`]): a stem, the blocks, global pooling or a flatten, a
/// classifier. Property tests draw plans; [`random_branched_spec`] draws one from a seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchedPlan {
    /// Input channels.
    pub in_channels: usize,
    /// Channels of the stem conv.
    pub stem: usize,
    /// The blocks, in order.
    pub blocks: Vec<Block>,
    /// Global average pooling before the classifier (else a flatten of the whole map).
    pub pool: bool,
    /// Classifier outputs.
    pub classes: usize,
}

/// A random [`BranchedPlan`]'s graph from a seed (2–4 blocks, widths 3–8).
pub fn random_branched_spec(seed: u64) -> (GraphSpec, [usize; 3]) {
    let mut rng = SplitMix(seed);
    let in_channels = 1 + rng.below(3);
    let stem = 4 + rng.below(5);
    let blocks = (0..2 + rng.below(3))
        .map(|_| {
            let width = 3 + rng.below(6);
            match rng.below(5) {
                0 => Block::Residual,
                1 => Block::Concat {
                    width,
                    other: 2 + rng.below(4),
                },
                2 => Block::Inverted {
                    width,
                    squeeze: 2 + rng.below(3),
                },
                3 => Block::Down { width },
                _ => Block::Late { width },
            }
        })
        .collect();
    let pool = rng.below(2) == 0;
    let classes = 3 + rng.below(4);
    branched_spec(&BranchedPlan {
        in_channels,
        stem,
        blocks,
        pool,
        classes,
    })
}

/// The graph of `plan` and its input shape.
pub fn branched_spec(plan: &BranchedPlan) -> (GraphSpec, [usize; 3]) {
    use crate::graph::ops::{Concat, Conv2dSpec, Hardsigmoid, Hardswish, Mul, ReLU6};
    let input = [plan.in_channels, 8, 8];
    let mut g = GraphBuilder::new();
    let mut c = plan.stem;
    let (mut side, relu, bn) = (8, LayerSpec::relu, LayerSpec::batch_norm);
    g.then("stem.conv", LayerSpec::conv(input[0], c, 3, 1));
    g.then("stem.bn", bn(c));
    let mut x = g.then("stem.act", relu());
    for (b, block) in plan.blocks.iter().enumerate() {
        let p = format!("block{b}");
        x = match *block {
            Block::Residual => {
                g.chain(
                    &format!("{p}.main"),
                    [
                        LayerSpec::conv(c, c, 3, 1),
                        bn(c),
                        relu(),
                        LayerSpec::conv(c, c, 3, 1),
                        bn(c),
                    ],
                );
                let main = g.cursor().to_string();
                g.node(format!("{p}.add"), LayerSpec::Add(Add {}), &[&main, &x]);
                g.then(format!("{p}.act"), relu())
            }
            Block::Concat { width, other } => {
                g.set_cursor(&x);
                let left = g.chain(
                    &format!("{p}.left"),
                    [LayerSpec::conv(c, width, 1, 1), bn(width), relu()],
                );
                g.set_cursor(&x);
                let right = g.chain(
                    &format!("{p}.right"),
                    [LayerSpec::conv(c, other, 3, 1), bn(other), relu()],
                );
                c = width + other;
                g.node(
                    format!("{p}.cat"),
                    LayerSpec::Concat(Concat {}),
                    &[&left, &right],
                )
            }
            Block::Inverted { width, squeeze } => {
                let e = c * 2;
                g.chain(
                    &format!("{p}.expand"),
                    [
                        LayerSpec::conv(c, e, 1, 1),
                        bn(e),
                        LayerSpec::ReLU6(ReLU6 {}),
                    ],
                );
                g.chain(
                    &format!("{p}.dw"),
                    [
                        LayerSpec::Conv2d(Conv2dSpec::new(e, e, 3, 1).with_groups(e)),
                        bn(e),
                        LayerSpec::Hardswish(Hardswish {}),
                    ],
                );
                let features = g.cursor().to_string();
                let with_bias =
                    |i, o| LayerSpec::Conv2d(Conv2dSpec::new(i, o, 1, 1).with_bias(true));
                let gate = g.chain(
                    &format!("{p}.se"),
                    [
                        LayerSpec::global_avg_pool(),
                        with_bias(e, squeeze),
                        relu(),
                        with_bias(squeeze, e),
                        LayerSpec::Hardsigmoid(Hardsigmoid {}),
                    ],
                );
                g.node(
                    format!("{p}.scale"),
                    LayerSpec::Mul(Mul {}),
                    &[&features, &gate],
                );
                g.chain(
                    &format!("{p}.project"),
                    [LayerSpec::conv(e, width, 1, 1), bn(width)],
                );
                c = width;
                g.cursor().to_string()
            }
            Block::Down { width } if side > 2 => {
                side /= 2;
                g.chain(
                    &format!("{p}.down"),
                    [LayerSpec::conv(c, width, 3, 2), bn(width), relu()],
                );
                c = width;
                g.cursor().to_string()
            }
            Block::Down { width } | Block::Late { width } => {
                g.chain(
                    &format!("{p}.late"),
                    [LayerSpec::conv(c, width, 3, 1), relu(), bn(width)],
                );
                c = width;
                g.cursor().to_string()
            }
        };
    }
    let features = if plan.pool {
        g.then("pool", LayerSpec::global_avg_pool());
        c
    } else {
        c * side * side
    };
    g.then("flatten", LayerSpec::flatten());
    g.then("fc", LayerSpec::linear(features, plan.classes));
    (g.build(), input)
}
