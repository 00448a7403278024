//! The serialisable graph: [`GraphSpec`], a list of named nodes in execution order, each naming
//! its inputs. Checking it (names, references, cycles, shapes) happens here, before any weight
//! is built.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::layer::LayerSpec;
use crate::error::{CoreError, Result};

/// The name by which nodes read the model input.
pub const INPUT: &str = "input";

/// One node: a dotted module path (`layer1.0.conv1`), its op and the values it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Dotted path; parameters are stored under `{name}.weight`, ….
    pub name: String,
    /// The op.
    pub op: LayerSpec,
    /// Names of the nodes it reads ([`INPUT`] for the model input), in argument order.
    pub inputs: Vec<String>,
}

/// A model graph: nodes in execution order; the last node is the output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
}

/// The checked graph: every node's output shape and MACs for one input shape.
#[derive(Debug, Clone)]
pub struct Shapes {
    /// Per node, the output shape without the batch dimension.
    pub outputs: Vec<Vec<usize>>,
    /// Per node, multiply-accumulates per sample.
    pub macs: Vec<u64>,
    /// The model input shape.
    pub input: Vec<usize>,
}

impl Shapes {
    /// Checks that every value (the input, each node's output) of a batch of `batch` samples
    /// fits in [`max_memory`](crate::limits::max_memory), before anything runs.
    pub fn check_batch(&self, batch: usize) -> Result<()> {
        let largest = std::iter::once(&self.input)
            .chain(&self.outputs)
            .map(|s| crate::limits::product(s).unwrap_or(u64::MAX))
            .max()
            .unwrap_or(0);
        crate::limits::check_f32_allocation(
            largest.saturating_mul(batch as u64),
            &format!("an activation of a batch of {batch}"),
        )
    }

    /// Shapes of node `i`'s inputs, given its input names.
    pub fn inputs_of<'a>(&'a self, spec: &GraphSpec, i: usize) -> Vec<&'a [usize]> {
        let index = spec.index();
        spec.nodes[i]
            .inputs
            .iter()
            .map(|n| match index.get(n.as_str()) {
                Some(&j) => self.outputs[j].as_slice(),
                None => self.input.as_slice(),
            })
            .collect()
    }
}

impl GraphSpec {
    /// Node index by name.
    pub fn index(&self) -> HashMap<&str, usize> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect()
    }

    /// Trainable parameters of all nodes, as PyTorch counts them.
    pub fn params(&self) -> usize {
        self.nodes
            .iter()
            .fold(0usize, |n, node| n.saturating_add(node.op.own_params()))
    }

    /// Parameters and buffers of all nodes: the values a file must hold for this graph, known
    /// before any layer is built (saturating: a count past any file's size is refused as such).
    pub fn stored_values(&self) -> u64 {
        self.nodes.iter().fold(0u64, |n, node| {
            n.saturating_add(Self::stored_values_of(&node.op))
        })
    }

    /// Parameters and buffers of one op.
    pub fn stored_values_of(op: &LayerSpec) -> u64 {
        let op = op.op();
        (op.params() as u64).saturating_add(op.buffers() as u64)
    }

    /// Checks names, references (unknown inputs, cycles, order), every op's hyper-parameters
    /// and that `input` flows through; returns every node's output shape.
    pub fn check(&self, input: &[usize]) -> Result<Shapes> {
        let invalid = |path: &str, reason: String| CoreError::InvalidLayer {
            path: path.to_string(),
            reason,
        };
        if self.nodes.is_empty() {
            return Err(invalid("<root>", "the graph has no nodes".into()));
        }
        let mut seen = HashSet::new();
        for node in &self.nodes {
            if node.name.is_empty() || node.name == INPUT || node.name.split('.').any(str::is_empty)
            {
                return Err(invalid(
                    &node.name,
                    format!("node names must be dotted paths with no empty part and not `{INPUT}`"),
                ));
            }
            if !seen.insert(node.name.as_str()) {
                return Err(invalid(&node.name, "two nodes have this name".into()));
            }
        }
        super::layer::check_sample_shape(input).map_err(|reason| CoreError::BadInput {
            got: input.to_vec(),
            expected: format!("the model input {reason}"),
        })?;
        let index = self.index();
        let mut outputs: Vec<Vec<usize>> = Vec::with_capacity(self.nodes.len());
        let mut macs = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            node.op.validate(&node.name)?;
            let mut shapes = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name == INPUT {
                    shapes.push(input);
                    continue;
                }
                match index.get(name.as_str()) {
                    Some(&j) if j < i => shapes.push(outputs[j].as_slice()),
                    Some(_) => return Err(invalid(&node.name, self.order_problem(i, name))),
                    None => {
                        return Err(invalid(
                            &node.name,
                            format!("reads `{name}`, which is neither a node nor `{INPUT}`"),
                        ));
                    }
                }
            }
            if let LayerSpec::TiedLinear(head) = &node.op {
                self.check_tied(node, head)?;
            }
            let (out, m) = node.op.output_shape(&node.name, &shapes)?;
            outputs.push(out);
            macs.push(m);
        }
        Ok(Shapes {
            outputs,
            macs,
            input: input.to_vec(),
        })
    }

    /// A tied head's second input must be an embedding whose table is as wide as the head's
    /// input and holds a row per output.
    fn check_tied(&self, node: &NodeSpec, head: &super::ops::TiedLinear) -> Result<()> {
        let table = node
            .inputs
            .get(1)
            .and_then(|name| self.nodes.iter().find(|n| &n.name == name).map(|n| &n.op));
        let reason = match table {
            Some(LayerSpec::Embedding(e))
                if e.num_embeddings == head.out_features && e.embedding_dim == head.in_features =>
            {
                return Ok(());
            }
            Some(LayerSpec::Embedding(e)) => format!(
                "the tied table is {}×{}, the head {}→{}",
                e.num_embeddings, e.embedding_dim, head.in_features, head.out_features
            ),
            _ => "a tied head's second input must name the embedding whose table it reads".into(),
        };
        Err(CoreError::InvalidLayer {
            path: node.name.clone(),
            reason,
        })
    }

    /// Why node `i` may not read `name`, a node at or after it: a cycle, or just out of order.
    fn order_problem(&self, i: usize, name: &str) -> String {
        let index = self.index();
        // Depth-first from `name` along inputs, looking for node `i`.
        let mut stack = vec![(name.to_string(), vec![self.nodes[i].name.clone()])];
        let mut visited = HashSet::new();
        while let Some((current, path)) = stack.pop() {
            let Some(&j) = index.get(current.as_str()) else {
                continue;
            };
            let mut path = path;
            path.push(current.clone());
            if j == i {
                return format!("a cycle: {}", path.join(" → "));
            }
            if !visited.insert(j) {
                continue;
            }
            for next in &self.nodes[j].inputs {
                stack.push((next.clone(), path.clone()));
            }
        }
        format!("reads `{name}`, which comes after it: nodes must be listed in execution order")
    }

    /// Parses the version-1 architecture (a tree of named `Sequential` containers) into a chain
    /// of nodes with the same dotted paths.
    pub fn from_sequential_tree(tree: &serde_json::Value) -> std::result::Result<Self, String> {
        fn walk(
            value: &serde_json::Value,
            path: &str,
            cursor: &mut String,
            nodes: &mut Vec<NodeSpec>,
        ) -> std::result::Result<(), String> {
            if value.get("type").and_then(|t| t.as_str()) == Some("Sequential") {
                let children = value
                    .get("children")
                    .and_then(|c| c.as_array())
                    .ok_or_else(|| format!("`{path}`: a Sequential needs `children`"))?;
                for child in children {
                    let name = child
                        .get("name")
                        .and_then(|n| n.as_str())
                        .ok_or_else(|| format!("`{path}`: a child has no name"))?;
                    let layer = child
                        .get("layer")
                        .ok_or_else(|| format!("`{path}.{name}`: no layer"))?;
                    walk(layer, &super::join(path, name), cursor, nodes)?;
                }
                return Ok(());
            }
            let op: LayerSpec =
                serde_json::from_value(value.clone()).map_err(|e| format!("`{path}`: {e}"))?;
            nodes.push(NodeSpec {
                name: path.to_string(),
                op,
                inputs: vec![cursor.clone()],
            });
            *cursor = path.to_string();
            Ok(())
        }
        let mut nodes = Vec::new();
        walk(tree, "", &mut INPUT.to_string(), &mut nodes)?;
        Ok(GraphSpec { nodes })
    }
}

/// Builds a [`GraphSpec`] node by node; most nodes read the previous one.
///
/// ```
/// use fasterai_core::graph::{GraphBuilder, LayerSpec, ops::merge::Add};
/// let mut g = GraphBuilder::new();
/// let x = g.then("conv1", LayerSpec::conv(3, 8, 3, 1));
/// g.then("relu", LayerSpec::relu());
/// g.then("conv2", LayerSpec::conv(8, 8, 3, 1));
/// g.node("add", LayerSpec::Add(Add {}), &[&x, "conv2"]);
/// assert_eq!(g.build().nodes.len(), 4);
/// ```
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    nodes: Vec<NodeSpec>,
    cursor: String,
}

impl Default for GraphBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GraphBuilder {
    /// An empty graph reading [`INPUT`].
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            cursor: INPUT.to_string(),
        }
    }

    /// Adds a node reading `inputs`; it becomes the current value. Returns its name.
    pub fn node(&mut self, name: impl Into<String>, op: LayerSpec, inputs: &[&str]) -> String {
        let name = name.into();
        self.nodes.push(NodeSpec {
            name: name.clone(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        });
        self.cursor = name.clone();
        name
    }

    /// Adds a node reading the current value.
    pub fn then(&mut self, name: impl Into<String>, op: LayerSpec) -> String {
        let input = self.cursor.clone();
        self.node(name, op, &[&input])
    }

    /// Adds `ops` as `prefix.0`, `prefix.1`, … (an `nn.Sequential`), each reading the last.
    pub fn chain(&mut self, prefix: &str, ops: impl IntoIterator<Item = LayerSpec>) -> String {
        for (i, op) in ops.into_iter().enumerate() {
            self.then(super::join(prefix, &i.to_string()), op);
        }
        self.cursor.clone()
    }

    /// The current value's name.
    pub fn cursor(&self) -> &str {
        &self.cursor
    }

    /// Makes `name` the current value.
    pub fn set_cursor(&mut self, name: &str) {
        self.cursor = name.to_string();
    }

    /// The graph.
    pub fn build(self) -> GraphSpec {
        GraphSpec { nodes: self.nodes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::merge::{Add, Concat};

    fn node(name: &str, op: LayerSpec, inputs: &[&str]) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn bad_graphs_are_errors_naming_the_node() {
        let relu = LayerSpec::relu;
        let cycle = GraphSpec {
            nodes: vec![node("a", relu(), &["b"]), node("b", relu(), &["a"])],
        };
        let err = cycle.check(&[4]).unwrap_err().to_string();
        assert!(err.contains("cycle") && err.contains("`a`"), "{err}");
        let unknown = GraphSpec {
            nodes: vec![node("a", relu(), &["input"]), node("b", relu(), &["nope"])],
        };
        let err = unknown.check(&[4]).unwrap_err().to_string();
        assert!(err.contains("`b`") && err.contains("nope"), "{err}");
        let add = GraphSpec {
            nodes: vec![
                node("p", LayerSpec::global_avg_pool(), &["input"]),
                node("add", LayerSpec::Add(Add {}), &["input", "p"]),
            ],
        };
        let err = add.check(&[4, 8, 8]).unwrap_err().to_string();
        assert!(err.contains("`add`") && err.contains("one shape"), "{err}");
        let cat = GraphSpec {
            nodes: vec![
                node("p", LayerSpec::global_avg_pool(), &["input"]),
                node("cat", LayerSpec::Concat(Concat {}), &["input", "p"]),
            ],
        };
        let err = cat.check(&[4, 8, 8]).unwrap_err().to_string();
        assert!(err.contains("`cat`"), "{err}");
        let twice = GraphSpec {
            nodes: vec![node("a", relu(), &["input"]), node("a", relu(), &["a"])],
        };
        assert!(
            twice
                .check(&[4])
                .unwrap_err()
                .to_string()
                .contains("two nodes")
        );
    }

    #[test]
    fn version_one_trees_become_chains_with_the_same_paths() {
        let tree = serde_json::json!({"type": "Sequential", "children": [
            {"name": "features", "layer": {"type": "Sequential", "children": [
                {"name": "0", "layer": {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": [3, 3], "padding": [1, 1]}},
                {"name": "1", "layer": {"type": "ReLU"}}]}},
            {"name": "flatten", "layer": {"type": "Flatten"}}]});
        let g = GraphSpec::from_sequential_tree(&tree).unwrap();
        let names: Vec<(&str, &str)> = g
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.inputs[0].as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("features.0", "input"),
                ("features.1", "features.0"),
                ("flatten", "features.1")
            ]
        );
        assert_eq!(g.check(&[3, 4, 4]).unwrap().outputs[2], vec![64]);
    }
}
