//! The live model graph: named nodes holding [`Layer`]s, each reading named values.

use std::collections::HashMap;

use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor};
use burn::tensor::{Device, Tensor};

use super::activation::Activation;
use super::layer::Layer;
use super::op::InitScheme;
use super::sequence::{Decoding, Step};
use super::spec::{GraphSpec, INPUT, NodeSpec, Shapes};
use crate::error::{CoreError, Result};

/// One node of a [`Graph`].
#[derive(Debug, Clone)]
pub struct Node {
    /// Dotted module path (`layer1.0.conv1`), unique in the graph.
    pub name: String,
    /// The op with its weights.
    pub layer: Layer,
    /// The values it reads, by node name ([`INPUT`] for the model input).
    pub inputs: Vec<String>,
}

impl Node {
    /// Whether input `k` is an embedding's table rather than its output (a tied head's second
    /// input).
    fn reads_table(&self, k: usize) -> bool {
        k == 1 && matches!(self.layer, Layer::TiedLinear(_))
    }
}

/// A model as a directed acyclic graph of named nodes in execution order; the last node's
/// value is the output. A value may feed several nodes (residual shortcuts), a node may read
/// several values (`Add`, `Mul`, `Concat`).
///
/// Compression passes rewrite it: shrink a node's tensors, replace a node by a chain of
/// smaller ones ([`Graph::replace_with_chain`]), remove a node ([`Graph::remove`]).
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// The nodes, in execution order.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Builds every node with fresh weights. The spec should have passed [`GraphSpec::check`].
    pub fn from_spec(spec: &GraphSpec, scheme: InitScheme, device: &Device) -> Self {
        Graph {
            nodes: spec
                .nodes
                .iter()
                .map(|n| Node {
                    name: n.name.clone(),
                    layer: Layer::from_spec(&n.op, scheme, device),
                    inputs: n.inputs.clone(),
                })
                .collect(),
        }
    }

    /// A chain of layers named `"0"`, `"1"`, … like `nn.Sequential(*layers)`.
    pub fn indexed(layers: impl IntoIterator<Item = Layer>) -> Self {
        let mut graph = Graph::default();
        for (i, layer) in layers.into_iter().enumerate() {
            graph.push(i.to_string(), layer);
        }
        graph
    }

    /// Appends a node reading the current output (or the model input when empty).
    pub fn push(&mut self, name: impl Into<String>, layer: Layer) {
        let input = self
            .nodes
            .last()
            .map_or(INPUT.to_string(), |n| n.name.clone());
        self.nodes.push(Node {
            name: name.into(),
            layer,
            inputs: vec![input],
        });
    }

    /// The specification of the whole graph (what a model file stores).
    pub fn spec(&self) -> GraphSpec {
        GraphSpec {
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeSpec {
                    name: n.name.clone(),
                    op: n.layer.spec(),
                    inputs: n.inputs.clone(),
                })
                .collect(),
        }
    }

    /// Every node's output shape for inputs of shape `input`, checking the whole graph.
    pub fn shapes(&self, input: &[usize]) -> Result<Shapes> {
        self.spec().check(input)
    }

    /// Output shape (without batch dimension) for an input of shape `input`.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let shapes = self.shapes(input)?;
        Ok(shapes
            .outputs
            .last()
            .cloned()
            .unwrap_or_else(|| input.to_vec()))
    }

    /// Runs the graph.
    ///
    /// # Panics
    /// If an op gets an input it cannot take; see [`try_forward`](Self::try_forward).
    pub fn forward(&self, x: impl Into<Activation>) -> Activation {
        self.run(x.into(), |_, _, _| {}, |_, _| {})
    }

    /// Checks the input shape against every node first, then runs the graph.
    pub fn try_forward(&self, x: impl Into<Activation>) -> Result<Activation> {
        let x = x.into();
        let dims = x.dims();
        self.shapes(&dims[1..])?.check_batch(dims[0])?;
        Ok(self.forward(x))
    }

    /// Runs a decoder pass over token ids `[N, T]` (as floats, checked against the vocabulary
    /// by the caller), the tokens after the `state.past` ones before; `padding` (`[N·T]`, true
    /// = padding, left padding only) marks tokens no other token attends to. Keys and values
    /// are kept in `state` when it says so, and `state` moves on by `T` tokens. A pass past a
    /// learned position table's length is an error.
    pub fn forward_decoding(
        &self,
        ids: Tensor<2>,
        padding: Option<&[bool]>,
        state: &mut Decoding,
    ) -> Result<Activation> {
        let [n, t] = ids.dims();
        self.shapes(&[t])?.check_batch(n)?;
        let longest = state.past + t;
        for node in &self.nodes {
            if let Layer::LearnedPositions(p) = &node.layer {
                let [rows, _] = p.weight.dims();
                if longest > rows {
                    return Err(CoreError::BadInput {
                        got: vec![n, longest],
                        expected: format!(
                            "at most {rows} tokens per sequence (`{}` holds {rows} positions)",
                            node.name
                        ),
                    });
                }
            }
        }
        if padding.is_some_and(|p| p.len() != n * t) {
            return Err(CoreError::BadInput {
                got: vec![n, t],
                expected: "a padding flag per token".into(),
            });
        }
        let device = ids.device();
        let positions = state.advance(n, t, padding, &device);
        let mut cache = std::mem::take(&mut state.cache);
        cache.resize(self.nodes.len(), None);
        let keep = state.keep_cache;
        let padding = state.padding.clone();
        let y = self.run_with(
            Activation::Flat(ids),
            |_, _, _| {},
            |i, layer, inputs| {
                let step = Step {
                    positions: &positions,
                    padding: padding.as_ref(),
                    cache: keep.then(|| &mut cache[i]),
                };
                layer.live().forward_in(inputs, step)
            },
            |_, _| {},
        );
        state.cache = if keep { cache } else { Vec::new() };
        Ok(y)
    }

    /// Runs the graph, calling `visit(name, layer, first_input)` before every node runs: the
    /// way to capture what a layer sees (probe batches, calibration, feature losses).
    pub fn forward_inspect(
        &self,
        x: impl Into<Activation>,
        visit: &mut impl FnMut(&str, &Layer, &Activation),
    ) -> Activation {
        self.run(
            x.into(),
            |name, layer, inputs| visit(name, layer, &inputs[0]),
            |_, _| {},
        )
    }

    /// Runs the graph and also returns the values named by `paths`: a node, or a module path
    /// that prefixes nodes (`features` → the last node under `features.`), e.g. the features
    /// a distillation loss compares.
    ///
    /// # Panics
    /// If a path names nothing; check with [`resolve`](Self::resolve) first.
    pub fn forward_capture(
        &self,
        x: impl Into<Activation>,
        paths: &[String],
    ) -> (Activation, Vec<Activation>) {
        let wanted: Vec<usize> = paths
            .iter()
            .map(|p| {
                self.resolve(p)
                    .unwrap_or_else(|_| panic!("no node at path `{p}`; check paths first"))
            })
            .collect();
        let mut found: Vec<Option<Activation>> = vec![None; paths.len()];
        let y = self.run(
            x.into(),
            |_, _, _| {},
            |i, y| {
                for (k, &w) in wanted.iter().enumerate() {
                    if w == i {
                        found[k] = Some(y.clone());
                    }
                }
            },
        );
        (
            y,
            found
                .into_iter()
                .map(|a| a.expect("every node runs"))
                .collect(),
        )
    }

    /// The node a path names: the node itself, or the last node under `path.`.
    pub fn resolve(&self, path: &str) -> Result<usize> {
        if let Some(i) = self.position(path) {
            return Ok(i);
        }
        let prefix = format!("{path}.");
        self.nodes
            .iter()
            .rposition(|n| n.name.starts_with(&prefix))
            .ok_or_else(|| self.unknown_path(path))
    }

    fn run(
        &self,
        x: Activation,
        before: impl FnMut(&str, &Layer, &[Activation]),
        after: impl FnMut(usize, &Activation),
    ) -> Activation {
        self.run_with(x, before, |_, layer, inputs| layer.forward(inputs), after)
    }

    /// Runs the graph with `compute(index, layer, inputs)` in place of each layer's forward:
    /// the inference engine's way to swap in fused kernels.
    pub(crate) fn run_with(
        &self,
        x: Activation,
        mut before: impl FnMut(&str, &Layer, &[Activation]),
        mut compute: impl FnMut(usize, &Layer, Vec<Activation>) -> Activation,
        mut after: impl FnMut(usize, &Activation),
    ) -> Activation {
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        // Uses left per value, so each is dropped after its last reader (memory of deep nets).
        let mut uses = vec![0usize; self.nodes.len()];
        for node in &self.nodes {
            for (k, name) in node.inputs.iter().enumerate() {
                if let Some(&j) = index.get(name.as_str())
                    && !node.reads_table(k)
                {
                    uses[j] += 1;
                }
            }
        }
        let mut values: Vec<Option<Activation>> = vec![None; self.nodes.len()];
        let mut last = x.clone();
        for (i, node) in self.nodes.iter().enumerate() {
            let inputs: Vec<Activation> = node
                .inputs
                .iter()
                .enumerate()
                .map(|(k, name)| match index.get(name.as_str()) {
                    Some(&j) if node.reads_table(k) => self.nodes[j].layer.table(),
                    Some(&j) => {
                        uses[j] -= 1;
                        let value = if uses[j] == 0 {
                            values[j].take()
                        } else {
                            values[j].clone()
                        };
                        value.expect("graph in execution order")
                    }
                    None => x.clone(),
                })
                .collect();
            before(&node.name, &node.layer, &inputs);
            let y = compute(i, &node.layer, inputs);
            after(i, &y);
            if i + 1 == self.nodes.len() {
                last = y;
            } else if uses[i] > 0 {
                values[i] = Some(y);
            }
        }
        last
    }

    /// Index of the node named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The layer of the node named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Layer> {
        self.nodes.iter().find(|n| n.name == name).map(|n| &n.layer)
    }

    /// Mutable access to the layer of the node named `name`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Layer> {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .map(|n| &mut n.layer)
    }

    /// Like [`get`](Self::get), with an error listing valid names when nothing is there.
    pub fn layer(&self, name: &str) -> Result<&Layer> {
        self.get(name).ok_or_else(|| self.unknown_path(name))
    }

    /// Replaces the layer of node `name`, returning the old one.
    pub fn replace(&mut self, name: &str, layer: Layer) -> Result<Layer> {
        let i = self.position(name).ok_or_else(|| self.unknown_path(name))?;
        Ok(std::mem::replace(&mut self.nodes[i].layer, layer))
    }

    /// Replaces node `name` by a chain of layers named `name.suffix` that reads the node's
    /// inputs; its readers read the chain's end. (A `Linear` becoming two smaller ones.)
    pub fn replace_with_chain(&mut self, name: &str, chain: Vec<(String, Layer)>) -> Result<()> {
        let i = self.position(name).ok_or_else(|| self.unknown_path(name))?;
        if chain.is_empty() {
            return self.remove(name).map(|_| ());
        }
        let old = self.nodes.remove(i);
        let mut inputs = old.inputs;
        let mut new_names = Vec::new();
        for (k, (suffix, layer)) in chain.into_iter().enumerate() {
            let node_name = super::join(name, &suffix);
            self.nodes.insert(
                i + k,
                Node {
                    name: node_name.clone(),
                    layer,
                    inputs: std::mem::take(&mut inputs),
                },
            );
            inputs = vec![node_name.clone()];
            new_names.push(node_name);
        }
        let end = new_names.last().expect("chain is not empty").clone();
        for node in &mut self.nodes[i + new_names.len()..] {
            for input in &mut node.inputs {
                if input == name {
                    *input = end.clone();
                }
            }
        }
        Ok(())
    }

    /// Inserts a one-input node `new_name` on the first input of node `name` (a quantizer in
    /// front of a convolution): it reads what `name` read, and `name` reads it.
    pub fn insert_before(&mut self, name: &str, new_name: &str, layer: Layer) -> Result<()> {
        let i = self.position(name).ok_or_else(|| self.unknown_path(name))?;
        if self.position(new_name).is_some() {
            return Err(CoreError::InvalidLayer {
                path: new_name.to_string(),
                reason: "a node of this name exists already".into(),
            });
        }
        let source = std::mem::replace(&mut self.nodes[i].inputs[0], new_name.to_string());
        self.nodes.insert(
            i,
            Node {
                name: new_name.to_string(),
                layer,
                inputs: vec![source],
            },
        );
        Ok(())
    }

    /// Removes a one-input node; its readers read its input instead. Returns the layer.
    pub fn remove(&mut self, name: &str) -> Result<Layer> {
        let i = self.position(name).ok_or_else(|| self.unknown_path(name))?;
        let [source] = self.nodes[i].inputs.as_slice() else {
            return Err(CoreError::InvalidLayer {
                path: name.to_string(),
                reason: "only a node with one input can be removed".into(),
            });
        };
        let source = source.clone();
        let node = self.nodes.remove(i);
        for reader in &mut self.nodes {
            for input in &mut reader.inputs {
                if input == name {
                    *input = source.clone();
                }
            }
        }
        Ok(node.layer)
    }

    /// Indices of the nodes that read node `name`.
    pub fn readers(&self, name: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].inputs.iter().any(|n| n == name))
            .collect()
    }

    /// Every node with its name, in execution order.
    pub fn leaves(&self) -> Vec<(String, &Layer)> {
        self.nodes
            .iter()
            .map(|n| (n.name.clone(), &n.layer))
            .collect()
    }

    /// Error for a name that names nothing, listing a few valid ones.
    pub fn unknown_path(&self, path: &str) -> CoreError {
        let mut known: Vec<String> = self
            .nodes
            .iter()
            .take(6)
            .map(|n| format!("{} ({})", n.name, n.layer.kind()))
            .collect();
        if self.nodes.len() > known.len() {
            known.push(format!(
                "… {} more (see `fasterai inspect`)",
                self.nodes.len() - known.len()
            ));
        }
        CoreError::UnknownPath {
            path: path.to_string(),
            known: known.join(", "),
        }
    }

    fn map_layers(self, mut f: impl FnMut(Layer) -> Layer) -> Self {
        Graph {
            nodes: self
                .nodes
                .into_iter()
                .map(|n| Node {
                    layer: f(n.layer),
                    ..n
                })
                .collect(),
        }
    }
}

const CONTAINER: &str = "Struct:Graph";

// Hand-written so that parameters get the nodes' dotted paths (torchvision's state-dict keys).
impl Module for Graph {
    fn collect_devices(&self, devices: Devices) -> Devices {
        self.nodes
            .iter()
            .fold(devices, |d, n| n.layer.collect_devices(d))
    }

    fn fork(self, device: &Device) -> Self {
        self.map_layers(|layer| layer.fork(device))
    }

    fn to_device(self, device: &Device) -> Self {
        self.map_layers(|layer| layer.to_device(device))
    }

    fn train(self) -> Self {
        self.map_layers(Module::train)
    }

    fn valid(&self) -> Self {
        self.clone().map_layers(|layer| layer.valid())
    }

    fn materialize(self) -> Self {
        self.map_layers(Module::materialize)
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        for node in &self.nodes {
            let parts: Vec<&str> = node.name.split('.').collect();
            for part in &parts {
                visitor.enter_module(part, CONTAINER);
            }
            node.layer.visit(visitor);
            for part in parts.iter().rev() {
                visitor.exit_module(part, CONTAINER);
            }
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        Graph {
            nodes: self
                .nodes
                .into_iter()
                .map(|node| {
                    let parts: Vec<String> = node.name.split('.').map(String::from).collect();
                    for part in &parts {
                        mapper.enter_module(part, CONTAINER);
                    }
                    let layer = node.layer.map(mapper);
                    for part in parts.iter().rev() {
                        mapper.exit_module(part, CONTAINER);
                    }
                    Node { layer, ..node }
                })
                .collect(),
        }
    }
}
