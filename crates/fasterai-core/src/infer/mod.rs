//! Inference on a prepared graph: fused convolutions on the CPU.
//!
//! [`Graph::forward`] runs each node as a Burn op, which on the flex backend means a separate
//! pass over memory for a convolution's bias, its batch norm and its activation, and an im2col
//! buffer nine times the input for every 3×3 convolution. [`Inference`] prepares a graph once
//! for a device and runs:
//! - `Conv2d [→ BatchNorm2d] [→ ReLU | ReLU6]` chains, where each value has no other reader, as
//!   one convolution whose output pass applies the batch norm (evaluation mode: `x·scale + shift`
//!   per channel) and the activation: batch-norm folding without changing the weights;
//! - stride-1 3×3 convolutions by Winograd F(4×4, 3×3) (`infer/winograd.rs`), 4× fewer
//!   multiply-adds than the direct convolution;
//! - max pooling without the argmax indices Burn's CPU kernel computes;
//! - one-image `Linear` layers split by output columns over the cores;
//! - every other node as the graph does.
//!
//! Results equal [`Graph::forward`]'s up to float rounding (the sums run in another order;
//! tested to 1e-5 relative). On devices other than flex, and for inputs that track gradients,
//! [`Inference::forward`] is [`Graph::forward`]: the fused kernels compute on host memory and do
//! not record a backward pass.

mod linear;
mod pool;
mod winograd;

use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::graph::ops::batch_norm::BatchNormAffine;
use crate::graph::ops::{flat, image};
use crate::graph::{Activation, Graph, Layer, LayerSpec, LiveOp};
use crate::linalg::host_values;
use winograd::WinogradConv;

/// The activation applied in a fused convolution's output pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    None,
    Relu,
    Relu6,
}

impl Act {
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        match self {
            Act::None => x,
            // NaN passes through both, as through the graph's own ops (`f32::max` would drop it).
            Act::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Act::Relu6 => x.clamp(0.0, 6.0),
        }
    }
}

/// What a fused convolution does to each output value: `act(x · scale[c] + shift[c])`.
#[derive(Debug, Clone)]
struct Epilogue {
    /// `None` means 1 everywhere.
    scale: Option<Vec<f32>>,
    /// `None` means 0 everywhere.
    shift: Option<Vec<f32>>,
    activation: Act,
}

impl Epilogue {
    #[inline]
    fn affine(&self, channel: usize) -> (f32, f32) {
        (
            self.scale.as_ref().map_or(1.0, |s| s[channel]),
            self.shift.as_ref().map_or(0.0, |s| s[channel]),
        )
    }

    fn is_identity(&self) -> bool {
        self.scale.is_none() && self.shift.is_none() && self.activation == Act::None
    }

    /// Applies the epilogue to a `[N, C, H, W]` tensor in one pass over host memory.
    fn apply(&self, y: Tensor<4>) -> Tensor<4> {
        if self.is_identity() {
            return y;
        }
        let (device, dims) = (y.device(), y.dims());
        let [_, channels, h, w] = dims;
        let mut values = host_values(y);
        values
            .par_chunks_mut(h * w)
            .enumerate()
            .for_each(|(nc, plane)| {
                let (scale, shift) = self.affine(nc % channels);
                for v in plane {
                    *v = self.activation.apply(*v * scale + shift);
                }
            });
        Tensor::from_data(TensorData::new(values, dims), &device)
    }
}

/// How one convolution computes before its epilogue.
enum Engine {
    /// The graph's own layer (Burn's convolution, bias included).
    Layer,
    /// Winograd F(4×4, 3×3); the bias is in the epilogue's shift. Inputs with NaN or
    /// infinities take the graph's layer and the `direct` epilogue (without the bias).
    Winograd {
        conv: Box<WinogradConv>,
        direct: Epilogue,
    },
}

/// How one node runs.
enum Step {
    /// As the graph runs it.
    Layer,
    /// A convolution with the nodes after it folded into its output pass.
    Conv { engine: Engine, epilogue: Epilogue },
    /// Already done by the fused convolution before it: passes its input on.
    Fused,
    /// Max pooling without indices.
    MaxPool,
    /// A `Linear` whose one-row products use every core.
    Linear,
}

/// A graph prepared for fast inference on one device; see the [module docs](self).
pub struct Inference {
    graph: Graph,
    /// How each node runs, by index.
    steps: Vec<Step>,
    /// Whether the graph was prepared (flex), not just wrapped.
    prepared: bool,
}

impl Inference {
    /// Prepares `graph` for `device`: finds the fusable chains and transforms the Winograd
    /// filters once. On devices other than flex, nothing is prepared.
    pub fn new(graph: Graph, device: &Device) -> Self {
        let mut net = Self::plain(graph);
        if !crate::device::on_host(device) {
            return net;
        }
        net.prepared = true;
        for (i, node) in net.graph.nodes.iter().enumerate() {
            match &node.layer {
                Layer::MaxPool2d(spec) if pool::applies(spec) => net.steps[i] = Step::MaxPool,
                Layer::Linear(_) => net.steps[i] = Step::Linear,
                Layer::Conv2d(conv) => {
                    if let Some((step, followers)) = plan_conv(&net.graph, i, conv) {
                        for j in followers {
                            net.steps[j] = Step::Fused;
                        }
                        net.steps[i] = step;
                    }
                }
                _ => {}
            }
        }
        net
    }

    /// `graph` run exactly as built, node by node (the reference [`new`](Self::new) is
    /// compared with).
    pub fn plain(graph: Graph) -> Self {
        let steps = (0..graph.nodes.len()).map(|_| Step::Layer).collect();
        Self {
            graph,
            steps,
            prepared: false,
        }
    }

    /// The graph it runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Nodes folded into the output pass of the convolution before them.
    pub fn fused_nodes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Fused))
            .count()
    }

    /// Convolutions computed by Winograd F(4×4, 3×3).
    pub fn winograd_convs(&self) -> usize {
        let winograd = |s: &&Step| {
            matches!(
                s,
                Step::Conv {
                    engine: Engine::Winograd { .. },
                    ..
                }
            )
        };
        self.steps.iter().filter(winograd).count()
    }

    /// In a prepared graph, the kinds of the nodes with weights that still run as the graph
    /// runs them (Burn's own ops: no kernel of the engine's yet, e.g. attention and layer
    /// norms), with their counts. Empty for a plain graph.
    pub fn as_built(&self) -> Vec<(&'static str, usize)> {
        let mut kinds: Vec<(&'static str, usize)> = Vec::new();
        if !self.prepared {
            return kinds;
        }
        for (node, step) in self.graph.nodes.iter().zip(&self.steps) {
            let spec = node.layer.spec();
            if !matches!(step, Step::Layer) || spec.own_params() == 0 {
                continue;
            }
            match kinds.iter_mut().find(|(k, _)| *k == spec.kind()) {
                Some((_, n)) => *n += 1,
                None => kinds.push((spec.kind(), 1)),
            }
        }
        kinds
    }

    /// Checks the input shape against every node first, then runs the prepared graph.
    pub fn try_forward(&self, x: impl Into<Activation>) -> crate::Result<Activation> {
        let x = x.into();
        let dims = x.dims();
        self.graph.shapes(&dims[1..])?.check_batch(dims[0])?;
        Ok(self.forward(x))
    }

    /// Runs the prepared graph (see the [module docs](self) for when it is the plain graph).
    ///
    /// # Panics
    /// As [`Graph::forward`] does, on an input the graph cannot take; see
    /// [`try_forward`](Self::try_forward).
    pub fn forward(&self, x: impl Into<Activation>) -> Activation {
        let x = x.into();
        if x.is_autodiff() {
            return self.graph.forward(x);
        }
        self.graph.run_with(
            x,
            |_, _, _| {},
            |i, layer, inputs| match &self.steps[i] {
                Step::Layer => layer.forward(inputs),
                Step::Fused => inputs.into_iter().next().expect("one input"),
                Step::Linear => match (layer, &inputs[0]) {
                    (Layer::Linear(linear), Activation::Flat(_)) => {
                        Activation::Flat(linear::forward(linear, flat(inputs)))
                    }
                    // Tokens: Burn's batched product already has rows for every core.
                    _ => layer.forward(inputs),
                },
                Step::MaxPool => match layer {
                    Layer::MaxPool2d(spec) => {
                        Activation::Spatial(pool::max_pool(spec, image(inputs)))
                    }
                    _ => unreachable!("planned for max pooling nodes only"),
                },
                Step::Conv { engine, epilogue } => {
                    let direct = |x: Tensor<4>, epilogue: &Epilogue| {
                        let y = layer.forward_one(x).into_spatial();
                        epilogue.apply(y.expect("a convolution gives an image batch"))
                    };
                    let x = image(inputs);
                    Activation::Spatial(match engine {
                        Engine::Winograd {
                            conv,
                            direct: plain,
                        } => conv
                            .forward(x, epilogue)
                            .unwrap_or_else(|x| direct(*x, plain)),
                        Engine::Layer => direct(x, epilogue),
                    })
                }
            },
            |_, _| {},
        )
    }
}

/// The fused step of the convolution at node `i` and the nodes folded into it, or `None` when
/// the graph's own layer does as well.
fn plan_conv(graph: &Graph, i: usize, conv: &Conv2d) -> Option<(Step, Vec<usize>)> {
    let mut epilogue = Epilogue {
        scale: None,
        shift: None,
        activation: Act::None,
    };
    let mut followers = Vec::new();
    let mut last = i;
    if let Some(j) = sole_reader(graph, last)
        && let Layer::BatchNorm2d(bn) = &graph.nodes[j].layer
    {
        let (scale, shift) = bn.affine();
        (epilogue.scale, epilogue.shift) = (Some(scale), Some(shift));
        followers.push(j);
        last = j;
    }
    if let Some(j) = sole_reader(graph, last) {
        epilogue.activation = match graph.nodes[j].layer {
            Layer::ReLU(_) => Act::Relu,
            Layer::ReLU6(_) => Act::Relu6,
            _ => Act::None,
        };
        if epilogue.activation != Act::None {
            followers.push(j);
        }
    }
    let LayerSpec::Conv2d(spec) = conv.spec() else {
        unreachable!("a Conv2d layer has a Conv2d spec")
    };
    let engine = if winograd::applies(&spec) {
        let direct = epilogue.clone();
        // Winograd has no bias of its own: it moves into the shift.
        if let Some(bias) = &conv.bias {
            let bias = host_values(bias.val());
            let shift = (0..bias.len()).map(|c| {
                let (scale, shift) = epilogue.affine(c);
                bias[c] * scale + shift
            });
            epilogue.shift = Some(shift.collect());
        }
        Engine::Winograd {
            conv: Box::new(WinogradConv::new(conv.weight.val(), spec.padding)),
            direct,
        }
    } else if followers.is_empty() {
        return None;
    } else {
        Engine::Layer
    };
    Some((Step::Conv { engine, epilogue }, followers))
}

/// The node that alone reads node `i`, when it reads nothing else.
fn sole_reader(graph: &Graph, i: usize) -> Option<usize> {
    let name = &graph.nodes[i].name;
    match graph.readers(name)[..] {
        [j] if graph.nodes[j].inputs.len() == 1 => Some(j),
        _ => None,
    }
}
