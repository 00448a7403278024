//! A container of named layers run in order: `torch.nn.Sequential`, nestable, rewritable.

use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor};
use burn::tensor::Device;

use super::layer::{Activation, Layer};
use super::spec::{LayerSpec, NamedSpec, join};
use crate::error::{CoreError, Result};

/// One child of a [`Sequential`]: a path segment and the layer it names.
#[derive(Debug, Clone)]
pub struct Child {
    /// Path segment (`"features"`, `"0"`, …); unique within its parent.
    pub name: String,
    /// The layer.
    pub layer: Layer,
}

/// Layers run one after the other. The root of every model is a `Sequential`; VGG's root holds
/// `features`, `avgpool`, `flatten` and `classifier`, giving torchvision's parameter paths.
///
/// Compression passes rewrite [`Sequential::children`] directly: drop a child, replace one by a
/// nested `Sequential` of smaller layers, shrink a layer's tensors.
#[derive(Debug, Clone, Default)]
pub struct Sequential {
    /// The children, in execution order.
    pub children: Vec<Child>,
}

impl Sequential {
    /// An empty container.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a child.
    pub fn push(&mut self, name: impl Into<String>, layer: Layer) {
        self.children.push(Child {
            name: name.into(),
            layer,
        });
    }

    /// Builder form of [`push`](Self::push).
    pub fn with(mut self, name: impl Into<String>, layer: Layer) -> Self {
        self.push(name, layer);
        self
    }

    /// Builds a container numbered `"0"`, `"1"`, … like `nn.Sequential(*layers)`.
    pub fn indexed(layers: impl IntoIterator<Item = Layer>) -> Self {
        let mut seq = Self::new();
        for (i, layer) in layers.into_iter().enumerate() {
            seq.push(i.to_string(), layer);
        }
        seq
    }

    /// The specification of the whole tree (what a model file stores).
    pub fn spec(&self) -> LayerSpec {
        LayerSpec::Sequential {
            children: self
                .children
                .iter()
                .map(|c| NamedSpec {
                    name: c.name.clone(),
                    layer: c.layer.spec(),
                })
                .collect(),
        }
    }

    /// Runs every child in order.
    ///
    /// # Panics
    /// If a layer gets an activation of the wrong kind; see [`try_forward`](Self::try_forward).
    pub fn forward(&self, x: impl Into<Activation>) -> Activation {
        self.children
            .iter()
            .fold(x.into(), |x, child| child.layer.forward(x))
    }

    /// Runs the model, calling `visit(path, layer, input)` before every leaf layer runs: the
    /// way to capture the activations a layer sees (probe batches, calibration, feature losses).
    pub fn forward_inspect(
        &self,
        x: impl Into<Activation>,
        visit: &mut impl FnMut(&str, &Layer, &Activation),
    ) -> Activation {
        self.inspect_from("", x.into(), visit)
    }

    fn inspect_from(
        &self,
        prefix: &str,
        x: Activation,
        visit: &mut impl FnMut(&str, &Layer, &Activation),
    ) -> Activation {
        self.children.iter().fold(x, |x, child| {
            let path = join(prefix, &child.name);
            match &child.layer {
                Layer::Sequential(inner) => inner.inspect_from(&path, x, visit),
                layer => {
                    visit(&path, layer, &x);
                    layer.forward(x)
                }
            }
        })
    }

    /// Runs the model and also returns the outputs of the layers at `paths` (leaves or
    /// containers), e.g. the features a distillation loss compares.
    pub fn forward_capture(
        &self,
        x: impl Into<Activation>,
        paths: &[String],
    ) -> (Activation, Vec<Activation>) {
        let mut found: Vec<Option<Activation>> = vec![None; paths.len()];
        let y = self.capture_from("", x.into(), paths, &mut found);
        let found = found
            .into_iter()
            .zip(paths)
            .map(|(a, p)| a.unwrap_or_else(|| panic!("no layer at path `{p}`; check paths first")))
            .collect();
        (y, found)
    }

    fn capture_from(
        &self,
        prefix: &str,
        x: Activation,
        paths: &[String],
        found: &mut [Option<Activation>],
    ) -> Activation {
        self.children.iter().fold(x, |x, child| {
            let path = join(prefix, &child.name);
            let y = match &child.layer {
                Layer::Sequential(inner) => inner.capture_from(&path, x, paths, found),
                layer => layer.forward(x),
            };
            if let Some(i) = paths.iter().position(|p| *p == path) {
                found[i] = Some(y.clone());
            }
            y
        })
    }

    /// Checks the input shape against every layer first, then runs the model.
    pub fn try_forward(&self, x: impl Into<Activation>) -> Result<Activation> {
        let x = x.into();
        let dims = x.dims();
        self.output_shape(&dims[1..])?;
        Ok(self.forward(x))
    }

    /// Output shape (without batch dimension) for an input of shape `input`, checking every layer.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.spec().output_shape("", input)?.0)
    }

    /// The child layer at a dotted path, if any.
    pub fn get(&self, path: &str) -> Option<&Layer> {
        let (head, rest) = split_path(path);
        let child = self.children.iter().find(|c| c.name == head)?;
        match (rest, &child.layer) {
            (None, layer) => Some(layer),
            (Some(rest), Layer::Sequential(inner)) => inner.get(rest),
            (Some(_), _) => None,
        }
    }

    /// Mutable access to the layer at a dotted path.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Layer> {
        let (head, rest) = split_path(path);
        let child = self.children.iter_mut().find(|c| c.name == head)?;
        match (rest, &mut child.layer) {
            (None, layer) => Some(layer),
            (Some(rest), Layer::Sequential(inner)) => inner.get_mut(rest),
            (Some(_), _) => None,
        }
    }

    /// Like [`get`](Self::get), with an error listing valid paths when nothing is there.
    pub fn layer(&self, path: &str) -> Result<&Layer> {
        self.get(path).ok_or_else(|| self.unknown_path(path))
    }

    /// Replaces the layer at `path`, returning the old one.
    pub fn replace(&mut self, path: &str, layer: Layer) -> Result<Layer> {
        if self.get(path).is_none() {
            return Err(self.unknown_path(path));
        }
        let slot = self.get_mut(path).expect("checked above");
        Ok(std::mem::replace(slot, layer))
    }

    /// Every leaf layer (not containers) with its path, depth first.
    pub fn leaves(&self) -> Vec<(String, &Layer)> {
        let mut out = Vec::new();
        self.collect_leaves("", &mut out);
        out
    }

    fn collect_leaves<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Layer)>) {
        for child in &self.children {
            let path = join(prefix, &child.name);
            match &child.layer {
                Layer::Sequential(inner) => inner.collect_leaves(&path, out),
                layer => out.push((path, layer)),
            }
        }
    }

    /// Error for a path that names nothing, listing a few valid ones.
    pub fn unknown_path(&self, path: &str) -> CoreError {
        let leaves = self.leaves();
        let mut known: Vec<String> = leaves
            .iter()
            .take(6)
            .map(|(p, l)| format!("{p} ({})", l.kind()))
            .collect();
        if leaves.len() > known.len() {
            known.push(format!(
                "… {} more (see `fasterai inspect`)",
                leaves.len() - known.len()
            ));
        }
        CoreError::UnknownPath {
            path: path.to_string(),
            known: known.join(", "),
        }
    }
}

fn split_path(path: &str) -> (&str, Option<&str>) {
    match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    }
}

const CONTAINER: &str = "Struct:Sequential";

// Hand-written so that children are named by their own names (torchvision's paths).
impl Module for Sequential {
    fn collect_devices(&self, devices: Devices) -> Devices {
        self.children
            .iter()
            .fold(devices, |d, c| c.layer.collect_devices(d))
    }

    fn fork(self, device: &Device) -> Self {
        self.map_children(|layer| layer.fork(device))
    }

    fn to_device(self, device: &Device) -> Self {
        self.map_children(|layer| layer.to_device(device))
    }

    fn train(self) -> Self {
        self.map_children(Module::train)
    }

    fn valid(&self) -> Self {
        Sequential {
            children: self
                .children
                .iter()
                .map(|c| Child {
                    name: c.name.clone(),
                    layer: c.layer.valid(),
                })
                .collect(),
        }
    }

    fn materialize(self) -> Self {
        self.map_children(Module::materialize)
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        for child in &self.children {
            visitor.enter_module(&child.name, CONTAINER);
            child.layer.visit(visitor);
            visitor.exit_module(&child.name, CONTAINER);
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        Sequential {
            children: self
                .children
                .into_iter()
                .map(|Child { name, layer }| {
                    mapper.enter_module(&name, CONTAINER);
                    let layer = layer.map(mapper);
                    mapper.exit_module(&name, CONTAINER);
                    Child { name, layer }
                })
                .collect(),
        }
    }
}

impl Sequential {
    fn map_children(self, mut f: impl FnMut(Layer) -> Layer) -> Self {
        Sequential {
            children: self
                .children
                .into_iter()
                .map(|Child { name, layer }| Child {
                    name,
                    layer: f(layer),
                })
                .collect(),
        }
    }
}
