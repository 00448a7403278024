//! A model: the graph plus what a file needs to describe it (name, input shape).

use std::collections::BTreeMap;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::graph::{Graph, GraphSpec, InitScheme, LayerSpec, NodeSpec};
use crate::quant::{WeightGrid, WeightQuant};
use crate::summary::Summary;

/// A named model graph with the per-sample input shape it is meant for.
#[derive(Debug, Clone)]
pub struct Model {
    /// Human-readable name (`vgg16_bn`, `vgg16_bn+pruned`).
    pub name: String,
    /// Input shape without the batch dimension (`[3, 224, 224]`).
    pub input_shape: Vec<usize>,
    /// The graph.
    pub net: Graph,
    /// Layers (by node name) whose weights lie on an integer grid, with their scales: files
    /// store these weights as integer codes. Empty for a float model.
    pub quantized: BTreeMap<String, WeightQuant>,
    /// For a language model: where it came from and how it reads text.
    pub text: Option<TextModel>,
}

/// What a language model carries besides its graph (token ids in, logits out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextModel {
    /// Hugging Face's `model_type` of the layout (`gpt2`, `llama`), for export.
    pub family: String,
    /// The checkpoint's `config.json` (what we do not model travels back on export).
    #[serde(default)]
    pub config: serde_json::Value,
    /// The id that ends a text, if the model has one.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// `tokenizer.json` (Hugging Face's `tokenizers` format); `None`: ids are bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
}

/// The architecture stored in a model file's metadata, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Always [`Architecture::FORMAT`].
    pub format: String,
    /// Format version: [`Architecture::VERSION`] when written; version 1 (a tree of
    /// `Sequential` containers) is still read.
    pub version: u32,
    /// Model name.
    pub name: String,
    /// Input shape without the batch dimension.
    pub input_shape: Vec<usize>,
    /// The nodes, in execution order; the last is the output.
    pub nodes: Vec<NodeSpec>,
    /// Layers whose weights are stored as integer codes (scales are tensors of the file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quantized: BTreeMap<String, WeightGrid>,
    /// For a language model: its origin and tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextModel>,
}

impl Architecture {
    /// Value of the `format` field.
    pub const FORMAT: &'static str = "fasterai-model";
    /// Current version: 3, a graph of named nodes that name their inputs, in a file whose
    /// checksum covers the whole file. Version 2 (the same graph, a checksum of the weights
    /// only) and version 1 (a tree of `Sequential` containers) are still read.
    pub const VERSION: u32 = 3;

    /// Parses the JSON of any supported version; the error says what is wrong.
    pub fn from_json(json: &str) -> std::result::Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("architecture JSON is invalid: {e}"))?;
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(1) => {
                let field = |k: &str| value.get(k).cloned().ok_or(format!("no `{k}` field"));
                let graph = GraphSpec::from_sequential_tree(&field("graph")?)?;
                Ok(Architecture {
                    format: serde_json::from_value(field("format")?).map_err(|e| e.to_string())?,
                    version: Self::VERSION,
                    name: serde_json::from_value(field("name")?).map_err(|e| e.to_string())?,
                    input_shape: serde_json::from_value(field("input_shape")?)
                        .map_err(|e| e.to_string())?,
                    nodes: graph.nodes,
                    quantized: BTreeMap::new(),
                    text: None,
                })
            }
            Some(2 | 3) => serde_json::from_value::<Self>(value)
                .map(|a| Architecture {
                    version: Self::VERSION,
                    ..a
                })
                .map_err(|e| format!("architecture JSON is invalid: {e}")),
            Some(v) => Err(format!(
                "format version {v} is not supported (this build reads versions 1 to {})",
                Self::VERSION
            )),
            None => Err("the architecture has no version".into()),
        }
    }

    /// The graph part.
    pub fn graph(&self) -> GraphSpec {
        GraphSpec {
            nodes: self.nodes.clone(),
        }
    }

    /// Checks the format tag, every node, and that the input shape flows through.
    pub fn validate(&self) -> Result<()> {
        if self.format != Self::FORMAT {
            return Err(CoreError::InvalidLayer {
                path: "<root>".into(),
                reason: format!("format is `{}`, expected `{}`", self.format, Self::FORMAT),
            });
        }
        self.graph().check(&self.input_shape)?;
        for (path, grid) in &self.quantized {
            let invalid = |reason: String| CoreError::InvalidLayer {
                path: path.clone(),
                reason,
            };
            let node = self.nodes.iter().find(|n| &n.name == path);
            match node.map(|n| &n.op) {
                Some(LayerSpec::Conv2d(_) | LayerSpec::Linear(_)) => {}
                Some(op) => {
                    return Err(invalid(format!(
                        "a {} has no weight to quantize",
                        op.kind()
                    )));
                }
                None => return Err(invalid("no such node to quantize".into())),
            }
            grid.validate().map_err(invalid)?;
        }
        Ok(())
    }
}

impl Model {
    /// Wraps a graph, checking that `input_shape` flows through it.
    pub fn new(name: impl Into<String>, input_shape: Vec<usize>, net: Graph) -> Result<Self> {
        let model = Model {
            name: name.into(),
            input_shape,
            net,
            quantized: BTreeMap::new(),
            text: None,
        };
        model.architecture().validate()?;
        Ok(model)
    }

    /// Builds a model with fresh weights from a validated architecture. Its layers are float:
    /// quantization comes with weights and scales ([`load_model`](crate::io::load_model)).
    pub fn from_architecture(
        arch: &Architecture,
        scheme: InitScheme,
        device: &Device,
    ) -> Result<Self> {
        arch.validate()?;
        Ok(Model {
            name: arch.name.clone(),
            input_shape: arch.input_shape.clone(),
            net: Graph::from_spec(&arch.graph(), scheme, device),
            quantized: BTreeMap::new(),
            text: arch.text.clone(),
        })
    }

    /// The architecture as stored in files.
    pub fn architecture(&self) -> Architecture {
        Architecture {
            format: Architecture::FORMAT.into(),
            version: Architecture::VERSION,
            name: self.name.clone(),
            input_shape: self.input_shape.clone(),
            nodes: self.net.spec().nodes,
            quantized: self
                .quantized
                .iter()
                .map(|(path, q)| (path.clone(), q.grid))
                .collect(),
            text: self.text.clone(),
        }
    }

    /// The layer table at the model's own input shape.
    pub fn summary(&self) -> Result<Summary> {
        Summary::new(&self.name, &self.net, &self.input_shape)
    }

    /// Trainable parameters (PyTorch's count).
    pub fn num_params(&self) -> usize {
        crate::summary::count_parameters(&self.net)
    }

    /// Whether any weight is quantized or any activation passes a [`FakeQuantize`] node.
    ///
    /// [`FakeQuantize`]: crate::graph::ops::FakeQuantize
    pub fn is_quantized(&self) -> bool {
        !self.quantized.is_empty()
            || self
                .net
                .nodes
                .iter()
                .any(|n| matches!(n.layer, crate::graph::Layer::FakeQuantize(_)))
    }

    /// Multiply-accumulates per sample.
    pub fn macs(&self) -> Result<u64> {
        Ok(self.net.shapes(&self.input_shape)?.macs.iter().sum())
    }
}
