//! From a graph to the steps the engine runs: which nodes fold into the kernel before them,
//! which run on the engine's kernels and which as the graph's own layers.

use burn::nn::conv::Conv2d;
use fasterai_core::graph::ops::activation::GeluApproximation;
use fasterai_core::graph::ops::batch_norm::BatchNormAffine;
use fasterai_core::graph::ops::{AvgPool2dSpec, MaxPool2dSpec};
use fasterai_core::graph::{Graph, Layer, LayerSpec};

use crate::kernels::attention::AttentionKernel;
use crate::kernels::conv::ConvKernel;
use crate::kernels::eltwise::Act;
use crate::kernels::gate::GateKernel;
use crate::kernels::linear::{LinearKernel, PooledLinear};
use crate::kernels::norm::LayerNormKernel;
use crate::kernels::pool;
use crate::kernels::tokens::TokenOp;

/// How one node runs. Values live in slots: slot `i` holds node `i`'s output, the last slot
/// the graph's input.
pub(crate) enum Step {
    /// The graph's own layer on a Burn tensor (ops without a kernel here: fake quantization,
    /// and shapes a kernel does not take).
    Layer,
    /// Passes its input number `input` on: identity ops in evaluation mode (`fused` false) and
    /// nodes already computed by the kernel before them (`fused` true).
    Pass {
        input: usize,
        fused: bool,
    },
    /// A convolution with the batch norm, residual sum and activation after it.
    Conv {
        kernel: Box<ConvKernel>,
        /// The slot added to the output before the activation.
        residual: Option<usize>,
    },
    /// `act(x · scale[c] + shift[c])`: a batch norm no convolution absorbed.
    Affine {
        scale: Vec<f32>,
        shift: Vec<f32>,
        act: Act,
    },
    /// An activation alone.
    Act(Act),
    /// Element-wise sum of equal shapes.
    Add,
    /// Element-wise product, equal shapes or a `[N, C, 1, 1]` gate.
    Mul,
    /// Concatenation along the channel axis.
    Concat,
    MaxPool(MaxPool2dSpec),
    AvgPool(AvgPool2dSpec),
    AdaptiveAvgPool([usize; 2]),
    /// `[N, …]` to `[N, ∏…]`.
    Flatten,
    /// A squeeze-and-excitation gate, from its global pooling to the product that scales the
    /// input (the nodes between pass the gated value on).
    Gate(Box<GateKernel>),
    /// A `Linear` and the activation after it.
    Linear(Box<LinearKernel>),
    /// `AdaptiveAvgPool2d → Flatten → Linear [→ act]`, the pool folded into the weight when it
    /// enlarges its input.
    PooledLinear(Box<PooledLinear>),
    /// A layer norm over the last axis.
    LayerNorm(Box<LayerNormKernel>),
    /// A softmax over the last axis of tokens or a flat value (images run the graph's op).
    Softmax,
    /// Multi-head self-attention.
    Attention(Box<AttentionKernel>),
    /// A transformer's token op.
    Tokens(TokenOp),
}

/// The steps of `graph`, the slots each node reads and how many reads each slot gets.
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub inputs: Vec<Vec<usize>>,
    pub reads: Vec<usize>,
}

impl Plan {
    /// Every node as the graph runs it (`--plain`).
    pub fn plain(graph: &Graph) -> Self {
        let (inputs, reads) = slots(graph);
        let steps = (0..graph.nodes.len()).map(|_| Step::Layer).collect();
        Self {
            steps,
            inputs,
            reads,
        }
    }

    /// Kernels for every node that has one, with the fusions the graph allows.
    pub fn prepared(graph: &Graph) -> Self {
        let mut plan = Self::plain(graph);
        for i in 0..graph.nodes.len() {
            if !matches!(plan.steps[i], Step::Layer) {
                continue; // folded into an earlier kernel
            }
            plan.steps[i] = match &graph.nodes[i].layer {
                Layer::Conv2d(conv) => plan.conv(graph, i, conv),
                Layer::BatchNorm2d(bn) => {
                    let (scale, shift) = bn.affine();
                    let act = plan.activation_after(graph, i);
                    Step::Affine { scale, shift, act }
                }
                Layer::Linear(linear) => {
                    let act = plan.activation_after(graph, i);
                    Step::Linear(Box::new(LinearKernel::new(linear, act)))
                }
                Layer::AdaptiveAvgPool2d(spec) => {
                    let fused = match spec.output_size {
                        [1, 1] => plan.gate(graph, i),
                        size => plan.pooled_linear(graph, i, size),
                    };
                    fused.unwrap_or(Step::AdaptiveAvgPool(spec.output_size))
                }
                Layer::LayerNorm(norm) => Step::LayerNorm(Box::new(LayerNormKernel::new(norm))),
                Layer::MultiheadAttention(attention) => {
                    Step::Attention(Box::new(AttentionKernel::new(attention)))
                }
                Layer::ClassToken(token) => Step::Tokens(TokenOp::prepend(token.value.val())),
                Layer::PositionEmbedding(positions) => {
                    Step::Tokens(TokenOp::add_positions(positions.value.val()))
                }
                layer => match act_of(layer) {
                    Some(act) => Step::Act(act),
                    None => simple_step(layer),
                },
            };
        }
        plan
    }

    /// The convolution at node `i` with `[BatchNorm2d] [Add] [activation]` after it, each
    /// folded when the value before it has no other reader and, for the sum, when its other
    /// term is computed before the convolution.
    fn conv(&mut self, graph: &Graph, i: usize, conv: &Conv2d) -> Step {
        let LayerSpec::Conv2d(spec) = graph.nodes[i].layer.spec() else {
            unreachable!("a Conv2d layer has a Conv2d spec")
        };
        let mut last = i;
        let mut bn = None;
        if let Some(j) = sole_reader(graph, last)
            && let Layer::BatchNorm2d(norm) = &graph.nodes[j].layer
        {
            bn = Some(norm.affine());
            self.fuse(j);
            last = j;
        }
        let mut residual = None;
        if let Some(j) = only_reader(graph, last)
            && matches!(graph.nodes[j].layer, Layer::Add(_))
            && let [a, b] = self.inputs[j][..]
        {
            let (own, other) = if a == last { (0, b) } else { (1, a) };
            let input_slot = graph.nodes.len();
            if a != b && (other < i || other == input_slot) {
                residual = Some(other);
                self.steps[j] = Step::Pass {
                    input: own,
                    fused: true,
                };
                last = j;
            }
        }
        let act = self.activation_after(graph, last);
        let bn = bn.as_ref().map(|(s, t)| (&s[..], &t[..]));
        Step::Conv {
            kernel: Box::new(ConvKernel::new(conv, spec, bn, act)),
            residual,
        }
    }

    /// The squeeze-and-excitation gate that starts with the global pooling at node `i`:
    /// `pool → fc1 (1×1) → [act] → fc2 (1×1) → gate act → Mul` with the pooled value, each
    /// node the next one's only reader. The product then passes the gated value on and no
    /// longer reads the input, so the gate scales it in place when nothing else reads it.
    fn gate(&mut self, graph: &Graph, i: usize) -> Option<Step> {
        let conv = |j: usize| match (&graph.nodes[j].layer, graph.nodes[j].layer.spec()) {
            (Layer::Conv2d(conv), LayerSpec::Conv2d(spec)) => Some((conv, spec)),
            _ => None,
        };
        let fc1 = sole_reader(graph, i)?;
        let mut next = sole_reader(graph, fc1)?;
        let act = act_of(&graph.nodes[next].layer);
        let squeeze_act = act.map(|_| next);
        if act.is_some() {
            next = sole_reader(graph, next)?;
        }
        let fc2 = next;
        let gate_act = sole_reader(graph, fc2)?;
        let product = only_reader(graph, gate_act)?;
        let x = self.inputs[i][0];
        let other = match self.inputs[product][..] {
            [a, b] if a == gate_act && b == x => 1,
            [a, b] if b == gate_act && a == x => 0,
            _ => return None,
        };
        if !matches!(graph.nodes[product].layer, Layer::Mul(_)) {
            return None;
        }
        let (conv1, spec1) = conv(fc1)?;
        let (conv2, spec2) = conv(fc2)?;
        let kernel = GateKernel::new(
            (conv1, &spec1),
            act.unwrap_or(Act::None),
            (conv2, &spec2),
            act_of(&graph.nodes[gate_act].layer)?,
        )?;
        self.inputs[product].remove(other);
        self.reads[x] -= 1;
        let passes = [
            Some(fc1),
            squeeze_act,
            Some(fc2),
            Some(gate_act),
            Some(product),
        ];
        passes.into_iter().flatten().for_each(|j| self.fuse(j));
        Some(Step::Gate(Box::new(kernel)))
    }

    /// `Flatten → Linear [→ act]` alone after the adaptive pool at node `i` (VGG's head).
    fn pooled_linear(&mut self, graph: &Graph, i: usize, size: [usize; 2]) -> Option<Step> {
        let flatten = sole_reader(graph, i)?;
        let linear = sole_reader(graph, flatten)?;
        let (Layer::Flatten(_), Layer::Linear(layer)) =
            (&graph.nodes[flatten].layer, &graph.nodes[linear].layer)
        else {
            return None;
        };
        let act = self.activation_after(graph, linear);
        self.fuse(flatten);
        self.fuse(linear);
        let kernel = LinearKernel::new(layer, act);
        Some(Step::PooledLinear(Box::new(PooledLinear::new(
            size, kernel,
        ))))
    }

    /// Marks node `j` as computed by the kernel before it: it passes its (only) input on.
    fn fuse(&mut self, j: usize) {
        self.steps[j] = Step::Pass {
            input: 0,
            fused: true,
        };
    }

    /// The activation that alone reads node `i`, marked as folded into it.
    fn activation_after(&mut self, graph: &Graph, i: usize) -> Act {
        match sole_reader(graph, i).map(|j| (j, act_of(&graph.nodes[j].layer))) {
            Some((j, Some(act))) => {
                self.fuse(j);
                act
            }
            _ => Act::None,
        }
    }
}

/// The kernel step of a node that folds nothing, or [`Step::Layer`].
fn simple_step(layer: &Layer) -> Step {
    match layer {
        Layer::Identity(_) | Layer::Dropout(_) | Layer::StochasticDepth(_) => {
            // Identities whenever the input records no backward pass, as the engine's never do.
            Step::Pass {
                input: 0,
                fused: false,
            }
        }
        Layer::Add(_) => Step::Add,
        Layer::Mul(_) => Step::Mul,
        Layer::Concat(_) => Step::Concat,
        Layer::Flatten(_) => Step::Flatten,
        Layer::Softmax(_) => Step::Softmax,
        Layer::ImageToTokens(_) => Step::Tokens(TokenOp::FromImage),
        Layer::SelectToken(select) => Step::Tokens(TokenOp::Select(select.index)),
        Layer::TokenMean(_) => Step::Tokens(TokenOp::Mean),
        Layer::MaxPool2d(spec) if pool::max_applies(spec) => Step::MaxPool(spec.clone()),
        Layer::AvgPool2d(spec) if pool::avg_applies(spec) => Step::AvgPool(spec.clone()),
        Layer::AdaptiveAvgPool2d(spec) => Step::AdaptiveAvgPool(spec.output_size),
        _ => Step::Layer,
    }
}

/// The engine's form of an activation layer.
fn act_of(layer: &Layer) -> Option<Act> {
    Some(match layer {
        Layer::ReLU(_) => Act::Relu,
        Layer::ReLU6(_) => Act::Relu6,
        Layer::SiLU(_) => Act::Silu,
        Layer::Sigmoid(_) => Act::Sigmoid,
        Layer::Hardsigmoid(_) => Act::Hardsigmoid,
        Layer::Hardswish(_) => Act::Hardswish,
        Layer::GELU(g) => match g.approximate {
            GeluApproximation::None => Act::Gelu,
            GeluApproximation::Tanh => Act::GeluTanh,
        },
        _ => return None,
    })
}

/// The slots each node reads (names the graph does not define read its input, as
/// `Graph::forward` does) and the number of reads of each slot.
fn slots(graph: &Graph) -> (Vec<Vec<usize>>, Vec<usize>) {
    let input_slot = graph.nodes.len();
    let mut reads = vec![0usize; input_slot + 1];
    let inputs = graph
        .nodes
        .iter()
        .map(|node| {
            node.inputs
                .iter()
                .map(|name| {
                    let slot = graph.position(name).unwrap_or(input_slot);
                    reads[slot] += 1;
                    slot
                })
                .collect()
        })
        .collect();
    (inputs, reads)
}

/// The node that alone reads node `i`, when it reads nothing else.
fn sole_reader(graph: &Graph, i: usize) -> Option<usize> {
    only_reader(graph, i).filter(|&j| graph.nodes[j].inputs.len() == 1)
}

/// The node that alone reads node `i` (once).
fn only_reader(graph: &Graph, i: usize) -> Option<usize> {
    let name = &graph.nodes[i].name;
    match graph.readers(name)[..] {
        [j] if graph.nodes[j].inputs.iter().filter(|n| *n == name).count() == 1 => Some(j),
        _ => None,
    }
}
