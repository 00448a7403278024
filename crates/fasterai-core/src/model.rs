//! A model: the layer graph plus what a file needs to describe it (name, input shape).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::graph::{InitScheme, Layer, LayerSpec, Sequential};
use crate::summary::Summary;

/// A named model graph with the per-sample input shape it is meant for.
#[derive(Debug, Clone)]
pub struct Model {
    /// Human-readable name (`vgg16_bn`, `vgg16_bn+pruned`).
    pub name: String,
    /// Input shape without the batch dimension (`[3, 224, 224]`).
    pub input_shape: Vec<usize>,
    /// The layers.
    pub net: Sequential,
}

/// The architecture stored in a model file's metadata, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Always [`Architecture::FORMAT`].
    pub format: String,
    /// Format version, currently 1.
    pub version: u32,
    /// Model name.
    pub name: String,
    /// Input shape without the batch dimension.
    pub input_shape: Vec<usize>,
    /// The layer graph; its root is a `Sequential`.
    pub graph: LayerSpec,
}

impl Architecture {
    /// Value of the `format` field.
    pub const FORMAT: &'static str = "fasterai-model";
    /// Current version.
    pub const VERSION: u32 = 1;

    /// Checks the format tag, the version, every layer, and that the input shape flows through.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| CoreError::InvalidLayer {
            path: "<root>".into(),
            reason,
        };
        if self.format != Self::FORMAT {
            return Err(invalid(format!(
                "format is `{}`, expected `{}`",
                self.format,
                Self::FORMAT
            )));
        }
        if self.version != Self::VERSION {
            return Err(invalid(format!(
                "format version {} is not supported (this build reads version {})",
                self.version,
                Self::VERSION
            )));
        }
        if !matches!(self.graph, LayerSpec::Sequential { .. }) {
            return Err(invalid("the root of a model must be a Sequential".into()));
        }
        self.graph.validate("")?;
        self.graph.output_shape("", &self.input_shape)?;
        Ok(())
    }
}

impl Model {
    /// Wraps a graph, checking that `input_shape` flows through it.
    pub fn new(name: impl Into<String>, input_shape: Vec<usize>, net: Sequential) -> Result<Self> {
        let model = Model {
            name: name.into(),
            input_shape,
            net,
        };
        model.architecture().validate()?;
        Ok(model)
    }

    /// Builds a model with fresh weights from a validated architecture.
    pub fn from_architecture(
        arch: &Architecture,
        scheme: InitScheme,
        device: &Device,
    ) -> Result<Self> {
        arch.validate()?;
        let Layer::Sequential(net) = Layer::from_spec(&arch.graph, scheme, device) else {
            unreachable!("validate() checked that the root is a Sequential")
        };
        Ok(Model {
            name: arch.name.clone(),
            input_shape: arch.input_shape.clone(),
            net,
        })
    }

    /// The architecture as stored in files.
    pub fn architecture(&self) -> Architecture {
        Architecture {
            format: Architecture::FORMAT.into(),
            version: Architecture::VERSION,
            name: self.name.clone(),
            input_shape: self.input_shape.clone(),
            graph: self.net.spec(),
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
}
