//! ONNX → graph. Each ONNX node becomes one graph node named after the module it came from
//! (`layer1.0.conv1`), constants computed by the exporter's shape arithmetic are folded, and
//! the patterns exporters split up are put back together (`x · σ(x)` is SiLU, `MatMul + Add`
//! and `Conv + Add` are layers with a bias). Anything else is an error naming the node.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use burn::tensor::{Device, TensorData};
use fasterai_core::graph::ops::{
    AdaptiveAvgPool2dSpec, Add, AvgPool2dSpec, BatchNorm2dSpec, Concat, Conv2dSpec, DropoutSpec,
    Flatten, Hardsigmoid, Hardswish, Identity, LinearSpec, MaxPool2dSpec, Mul, ReLU, ReLU6, SiLU,
    Sigmoid,
};
use fasterai_core::graph::{Graph, GraphSpec, INPUT, InitScheme, LayerSpec, NodeSpec};
use fasterai_core::io::set_pytorch_tensors;
use fasterai_core::limits::MAX_SIZE;
use fasterai_core::model::Model;
use prost::Message;

use crate::error::{OnnxError, Result};
use crate::proto::{AttributeProto, DimensionValue, GraphProto, ModelProto, NodeProto, data_type};
use crate::tensor::{Const, ConstData, decode};

/// The ONNX ops an imported model may contain.
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "BatchNormalization",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Relu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "Expand",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Concat",
    "Identity",
    "Dropout",
    // Evaluated at import when their inputs are constants (shape arithmetic).
    "Constant",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Cast",
    "Slice",
    "Sub",
    "Div",
];

/// Ops of quantized ONNX graphs, refused with a message that says so.
const QUANTIZED_OPS: &[&str] = &[
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
];

/// The default-domain opsets this build reads.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=22;

/// Import settings.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Per-sample input shape (`[3, 224, 224]`), required when the file leaves it symbolic.
    pub input_shape: Option<Vec<usize>>,
    /// Model name; default: the file name without extension.
    pub name: Option<String>,
}

/// Imports the ONNX model at `path`; external data is read from its folder.
pub fn import_file(path: &Path, options: &ImportOptions, device: &Device) -> Result<Model> {
    let bytes = bytes::Bytes::from(std::fs::read(path).map_err(|e| OnnxError::io(path, e))?);
    let name = options
        .name
        .clone()
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()));
    let options = ImportOptions {
        name,
        ..options.clone()
    };
    import_buffer(bytes, path.parent(), &options, device, path)
}

/// Imports an ONNX model from memory; `base` is the folder external data lives in, `source`
/// names the model in errors.
pub fn import_bytes(
    bytes: &[u8],
    base: Option<&Path>,
    options: &ImportOptions,
    device: &Device,
    source: &Path,
) -> Result<Model> {
    import_buffer(
        bytes::Bytes::copy_from_slice(bytes),
        base,
        options,
        device,
        source,
    )
}

fn import_buffer(
    bytes: bytes::Bytes,
    base: Option<&Path>,
    options: &ImportOptions,
    device: &Device,
    source: &Path,
) -> Result<Model> {
    // From a `Bytes` buffer prost slices tensor data instead of copying it.
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    check_opset(&model)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Model("the model has no graph".into()))?;
    let (spec, input_shape, tensors) = Importer::new(graph, base, options)?.run(graph)?;
    spec.check(&input_shape)?;
    // Layers are built only for weights the file holds: the allocation is bounded by the file.
    let needed = spec.stored_values();
    let stored: u64 = tensors.iter().map(|(_, t)| t.num_elements() as u64).sum();
    if needed > stored {
        return Err(OnnxError::Model(format!(
            "the layers need {needed} weight values but the file holds {stored}: a parameter's \
             size does not match its layer"
        )));
    }
    let mut net = Graph::from_spec(&spec, InitScheme::Zeros, device);
    set_pytorch_tensors(&mut net, tensors, source)?;
    let name = options
        .name
        .clone()
        .or_else(|| Some(graph.name.clone()).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "onnx_model".into());
    Ok(Model {
        name,
        input_shape,
        net,
        quantized: Default::default(),
        text: None,
    })
}

fn check_opset(model: &ModelProto) -> Result<()> {
    let version = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| OnnxError::Model("the model imports no default-domain opset".into()))?;
    if !OPSETS.contains(&version) {
        return Err(OnnxError::Model(format!(
            "opset {version} is not supported: this build reads opsets {} to {}{}",
            OPSETS.start(),
            OPSETS.end(),
            if version > *OPSETS.end() {
                "; export with an older opset (e.g. `opset_version=17`)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// A value in the ONNX graph: computed by a graph node (or the model input), or constant.
#[derive(Debug, Clone)]
enum Value {
    Live {
        node: String,
        shape: Vec<usize>,
    },
    /// Shared: a weight is read by its node, never copied per reader.
    Const(Rc<Const>),
}

struct Importer<'a> {
    base: Option<&'a Path>,
    options: &'a ImportOptions,
    values: HashMap<String, Value>,
    /// How many node inputs and graph outputs read each ONNX value.
    readers: HashMap<String, usize>,
    nodes: Vec<NodeSpec>,
    /// Per graph node (and the model input), its output shape and position in `nodes`: looked
    /// up in constant time, so a graph of many nodes imports in linear time.
    shapes: HashMap<String, (Vec<usize>, usize)>,
    /// Parameters by key (`layer1.0.conv1.weight`), float data in PyTorch's layout.
    tensors: HashMap<String, Rc<Const>>,
    taken: HashSet<String>,
}

/// One ONNX node with helpers for its attributes and error messages.
struct OnnxNode<'p> {
    proto: &'p NodeProto,
    label: String,
}

impl<'p> OnnxNode<'p> {
    fn new(proto: &'p NodeProto) -> Self {
        let label = if proto.name.is_empty() {
            proto.output.first().cloned().unwrap_or_default()
        } else {
            proto.name.clone()
        };
        OnnxNode { proto, label }
    }
    fn op(&self) -> &str {
        &self.proto.op_type
    }
    fn error(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: self.label.clone(),
            op: self.proto.op_type.clone(),
            reason: reason.into(),
        }
    }
    fn attr(&self, name: &str) -> Option<&'p AttributeProto> {
        self.proto.attribute.iter().find(|a| a.name == name)
    }
    fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }
    fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }
    fn string(&self, name: &str) -> String {
        self.attr(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
            .unwrap_or_default()
    }
    fn ints(&self, name: &str) -> Option<&'p [i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }
    /// A 2-D attribute of positive sizes (`strides`, `dilations`), `[1, 1]` when absent.
    fn pair(&self, name: &str) -> Result<[usize; 2]> {
        match self.ints(name) {
            None => Ok([1, 1]),
            Some(&[a, b]) if in_range(a, 1) && in_range(b, 1) => Ok([a as usize, b as usize]),
            Some(v) => Err(self.error(format!(
                "`{name}` = {v:?}: only 2-D ops with sizes in [1, {MAX_SIZE}] are supported"
            ))),
        }
    }
    /// The output name, when some node or the graph reads it.
    fn output(&self, i: usize) -> Option<&'p str> {
        self.proto
            .output
            .get(i)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }
}

impl<'a> Importer<'a> {
    fn new(graph: &GraphProto, base: Option<&'a Path>, options: &'a ImportOptions) -> Result<Self> {
        let mut readers: HashMap<String, usize> = HashMap::new();
        for name in graph
            .node
            .iter()
            .flat_map(|n| &n.input)
            .chain(graph.output.iter().map(|o| &o.name))
        {
            *readers.entry(name.clone()).or_default() += 1;
        }
        Ok(Importer {
            base,
            options,
            values: HashMap::new(),
            readers,
            nodes: Vec::new(),
            shapes: HashMap::new(),
            tensors: HashMap::new(),
            taken: HashSet::new(),
        })
    }

    #[allow(clippy::type_complexity)]
    fn run(
        mut self,
        graph: &GraphProto,
    ) -> Result<(GraphSpec, Vec<usize>, Vec<(String, TensorData)>)> {
        for t in &graph.initializer {
            let value = decode(t, self.base)?;
            self.values
                .insert(t.name.clone(), Value::Const(Rc::new(value)));
        }
        let input_shape = self.input(graph)?;
        for proto in &graph.node {
            self.node(&OnnxNode::new(proto))?;
        }
        let output = match graph.output.as_slice() {
            [one] => one,
            outputs => {
                return Err(OnnxError::Model(format!(
                    "the graph has {} outputs; models with exactly one output are supported",
                    outputs.len()
                )));
            }
        };
        let last = match self.values.get(&output.name) {
            Some(Value::Live { node, .. }) if node != INPUT => node.clone(),
            Some(_) => {
                return Err(OnnxError::Model(format!(
                    "the output `{}` is a constant or the input itself: nothing to compress",
                    output.name
                )));
            }
            None => {
                return Err(OnnxError::Model(format!(
                    "no node produces the output `{}`",
                    output.name
                )));
            }
        };
        let nodes = live_nodes(std::mem::take(&mut self.nodes), &last);
        // With the value table gone, each parameter's data is moved out, not copied.
        self.values.clear();
        let tensors = nodes
            .iter()
            .flat_map(|n| {
                ["weight", "bias", "running_mean", "running_var"]
                    .into_iter()
                    .filter_map(|suffix| {
                        let key = format!("{}.{suffix}", n.name);
                        let value = self.tensors.remove(&key)?;
                        let Const { dims, data } =
                            Rc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone());
                        let ConstData::F32(values) = data else {
                            unreachable!("add() keeps float tensors only")
                        };
                        Some((key, TensorData::new(values, dims)))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok((GraphSpec { nodes }, input_shape, tensors))
    }

    /// Registers the model input; returns its per-sample shape.
    fn input(&mut self, graph: &GraphProto) -> Result<Vec<usize>> {
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !self.values.contains_key(&i.name))
            .collect();
        let [input] = inputs.as_slice() else {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(OnnxError::Model(format!(
                "the graph has {} inputs ({}); models with exactly one input are supported",
                names.len(),
                names.join(", ")
            )));
        };
        let tensor = input
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .ok_or_else(|| OnnxError::Model(format!("input `{}` is not a tensor", input.name)))?;
        if tensor.elem_type != data_type::FLOAT {
            return Err(OnnxError::Model(format!(
                "input `{}` has element type {}; float32 inputs are supported",
                input.name, tensor.elem_type
            )));
        }
        let dims: Vec<Option<usize>> = tensor
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(DimensionValue::DimValue(v)) if v > 0 => Some(v as usize),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let shape = match &self.options.input_shape {
            Some(given) => {
                if !dims.is_empty() && dims.len() != given.len() + 1 {
                    return Err(OnnxError::Model(format!(
                        "input `{}` has rank {} (batch included); the given input shape {given:?} \
                         needs rank {}",
                        input.name,
                        dims.len(),
                        given.len() + 1
                    )));
                }
                for (i, (&d, &g)) in dims.iter().skip(1).zip(given).enumerate() {
                    if d.is_some_and(|d| d != g) {
                        return Err(OnnxError::Model(format!(
                            "input `{}` has size {} on axis {} but the given input shape says {g}",
                            input.name,
                            d.unwrap_or(0),
                            i + 1
                        )));
                    }
                }
                given.clone()
            }
            None => {
                if dims.len() < 2 {
                    return Err(OnnxError::Model(format!(
                        "input `{}` has no usable shape (rank {}); give the per-sample shape \
                         (`--input-shape 3,224,224`)",
                        input.name,
                        dims.len()
                    )));
                }
                dims[1..]
                    .iter()
                    .map(|d| {
                        d.ok_or_else(|| {
                            OnnxError::Model(format!(
                                "input `{}` has a dynamic size beyond the batch axis ({}); give \
                                 the per-sample shape (`--input-shape 3,224,224`)",
                                input.name,
                                format_dims(&dims)
                            ))
                        })
                    })
                    .collect::<Result<_>>()?
            }
        };
        fasterai_core::graph::check_sample_shape(&shape)
            .map_err(|reason| OnnxError::Model(format!("the model input {reason}")))?;
        self.shapes
            .insert(INPUT.into(), (shape.clone(), usize::MAX));
        self.values.insert(
            input.name.clone(),
            Value::Live {
                node: INPUT.into(),
                shape: shape.clone(),
            },
        );
        Ok(shape)
    }

    // ---- one node ----

    fn node(&mut self, n: &OnnxNode) -> Result<()> {
        let domain = n.proto.domain.as_str();
        if !(domain.is_empty() || domain == "ai.onnx") {
            return Err(OnnxError::UnsupportedOp {
                node: n.label.clone(),
                op: format!("{domain}::{}", n.op()),
            });
        }
        if QUANTIZED_OPS.contains(&n.op()) {
            return Err(n.error(
                "quantized ONNX graphs (QuantizeLinear/DequantizeLinear) are not imported; \
                 import the float model and quantize it with `fasterai quantize`",
            ));
        }
        let Some(out) = n.output(0) else {
            return Err(n.error("has no output"));
        };
        let inputs: Vec<Option<Value>> = n
            .proto
            .input
            .iter()
            .map(|name| {
                if name.is_empty() {
                    Ok(None)
                } else {
                    self.values.get(name).cloned().map(Some).ok_or_else(|| {
                        n.error(format!("reads `{name}`, which no earlier node produces"))
                    })
                }
            })
            .collect::<Result<_>>()?;
        if n.op() == "Shape" {
            let dims: Vec<Option<i64>> = match inputs.first().and_then(Option::as_ref) {
                Some(Value::Live { shape, .. }) => std::iter::once(None)
                    .chain(shape.iter().map(|&d| Some(d as i64)))
                    .collect(),
                Some(Value::Const(c)) => c.dims.iter().map(|&d| Some(d as i64)).collect(),
                None => return Err(n.error("input 0 is missing")),
            };
            let end = n.attr("end").map(|a| a.i);
            let value = Const::ints(slice_range(&dims, n.int("start", 0), end));
            self.values
                .insert(out.to_string(), Value::Const(Rc::new(value)));
            return Ok(());
        }
        let all_const = inputs
            .iter()
            .all(|v| matches!(v, None | Some(Value::Const(_))));
        if n.op() == "Constant" || (all_const && !inputs.is_empty()) {
            let consts: Vec<Option<&Const>> = inputs
                .iter()
                .map(|v| match v {
                    Some(Value::Const(c)) => Some(c.as_ref()),
                    _ => None,
                })
                .collect();
            let value = self.fold(n, &consts)?;
            self.values
                .insert(out.to_string(), Value::Const(Rc::new(value)));
            return Ok(());
        }
        let value = self.live_node(n, &inputs)?;
        self.values.insert(out.to_string(), value);
        for i in 1..n.proto.output.len() {
            if let Some(extra) = n.output(i)
                && self.readers.get(extra).copied().unwrap_or(0) > 0
            {
                return Err(n.error(format!(
                    "its output {i} (`{extra}`) is used; only the first output of this op is supported \
                     (export in evaluation mode)"
                )));
            }
        }
        Ok(())
    }

    /// A node with at least one computed input: becomes graph node(s), or merges into one.
    fn live_node(&mut self, n: &OnnxNode, inputs: &[Option<Value>]) -> Result<Value> {
        if inputs.is_empty() {
            return Err(n.error("has no inputs"));
        }
        let live = |i: usize| -> Result<(String, Vec<usize>)> {
            match inputs.get(i).and_then(Option::as_ref) {
                Some(Value::Live { node, shape }) => Ok((node.clone(), shape.clone())),
                Some(Value::Const(_)) => Err(n.error(format!(
                    "input {i} is a constant; it must be computed from the model input"
                ))),
                None => Err(n.error(format!("input {i} is missing"))),
            }
        };
        let constant = |i: usize| -> Result<Rc<Const>> {
            match inputs.get(i).and_then(Option::as_ref) {
                Some(Value::Const(c)) => Ok(c.clone()),
                _ => Err(n.error(format!(
                    "input {i} (`{}`) must be a constant (an initializer)",
                    n.proto.input.get(i).map_or("", String::as_str)
                ))),
            }
        };
        let optional_const = |i: usize| -> Result<Option<Rc<Const>>> {
            match inputs.get(i).and_then(Option::as_ref) {
                None => Ok(None),
                Some(_) => constant(i).map(Some),
            }
        };
        let unary =
            |spec: LayerSpec| -> Result<(LayerSpec, Vec<String>)> { Ok((spec, vec![live(0)?.0])) };
        let weight_name = n.proto.input.get(1).map(String::as_str);
        let (spec, reads, params): Lowered = match n.op() {
            "Conv" => {
                let (x, _) = live(0)?;
                let w = constant(1)?;
                let [o, ipg, kh, kw] = w.dims[..] else {
                    return Err(n.error(format!(
                        "weight has shape {:?}; only 2-D convolutions are supported",
                        w.dims
                    )));
                };
                if let Some(k) = n.ints("kernel_shape")
                    && k != [kh as i64, kw as i64]
                {
                    return Err(n.error(format!(
                        "kernel_shape {k:?} does not match the weight's {kh}×{kw}"
                    )));
                }
                let groups = n.int("group", 1);
                if groups < 1 {
                    return Err(n.error(format!("group = {groups}")));
                }
                let groups = groups as usize;
                let stride = n.pair("strides")?;
                let dilation = n.pair("dilations")?;
                let padding = self.padding(n, [kh, kw], stride, dilation, 0)?;
                let spec = Conv2dSpec {
                    in_channels: ipg * groups,
                    out_channels: o,
                    kernel_size: [kh, kw],
                    stride,
                    padding,
                    dilation,
                    groups,
                    bias: false,
                };
                let mut params = vec![("weight", w.clone())];
                if let Some(b) = optional_const(2)? {
                    params.push(("bias", b));
                }
                let spec = Conv2dSpec {
                    bias: params.len() == 2,
                    ..spec
                };
                (LayerSpec::Conv2d(spec), vec![x], params)
            }
            "BatchNormalization" => {
                let (x, shape) = live(0)?;
                if n.int("training_mode", 0) != 0 {
                    return Err(n.error("training_mode = 1; export the model in evaluation mode"));
                }
                let spec = BatchNorm2dSpec {
                    num_features: shape.first().copied().unwrap_or(0),
                    eps: widen(n.float("epsilon", 1e-5)),
                    // ONNX keeps `momentum` of the old statistics, PyTorch of the new.
                    momentum: widen((1.0 - widen(n.float("momentum", 0.9))) as f32),
                };
                let params = vec![
                    ("weight", constant(1)?),
                    ("bias", constant(2)?),
                    ("running_mean", constant(3)?),
                    ("running_var", constant(4)?),
                ];
                (LayerSpec::BatchNorm2d(spec), vec![x], params)
            }
            "Gemm" => {
                let (x, shape) = live(0)?;
                if n.int("transA", 0) != 0 {
                    return Err(n.error("transA = 1 is not supported"));
                }
                let b = constant(1)?;
                let alpha = n.float("alpha", 1.0);
                let beta = n.float("beta", 1.0);
                let weight = matrix(n, &b, n.int("transB", 0) != 0, alpha)?;
                let out = weight.dims[0];
                let bias = optional_const(2)?
                    .map(|c| bias_vector(n, &c, out, beta).map(Rc::new))
                    .transpose()?;
                self.linear(n, x, &shape, weight, bias)?
            }
            "MatMul" => {
                let (x, shape) = live(0)?;
                let weight = matrix(n, &constant(1)?, false, 1.0)?;
                self.linear(n, x, &shape, weight, None)?
            }
            "Add" | "Mul" => {
                if let (Some(Value::Live { .. }), Some(Value::Live { .. })) =
                    (&inputs[0], inputs.get(1).and_then(Option::as_ref))
                {
                    let (a, b) = (live(0)?.0, live(1)?.0);
                    if n.op() == "Mul"
                        && let Some(silu) = self.fuse_silu(n, &a, &b)
                    {
                        return Ok(silu);
                    }
                    let spec = if n.op() == "Add" {
                        LayerSpec::Add(Add {})
                    } else {
                        LayerSpec::Mul(Mul {})
                    };
                    (spec, vec![a, b], vec![])
                } else if n.op() == "Add" {
                    return self.fuse_bias(n, inputs);
                } else {
                    return Err(n.error(
                        "multiplying by a constant is not supported (only products of two \
                         computed values, as in squeeze-excitation and SiLU)",
                    ));
                }
            }
            "Relu" => unary(LayerSpec::ReLU(ReLU {}))?.with_no_params(),
            "Sigmoid" => unary(LayerSpec::Sigmoid(Sigmoid {}))?.with_no_params(),
            "HardSwish" => unary(LayerSpec::Hardswish(Hardswish {}))?.with_no_params(),
            "HardSigmoid" => {
                let (alpha, beta) = (n.float("alpha", 0.2), n.float("beta", 0.5));
                if (alpha - 1.0 / 6.0).abs() > 1e-6 || (beta - 0.5).abs() > 1e-6 {
                    return Err(n.error(format!(
                        "alpha = {alpha}, beta = {beta}: only PyTorch's hardsigmoid \
                         (alpha = 1/6, beta = 0.5) is supported"
                    )));
                }
                unary(LayerSpec::Hardsigmoid(Hardsigmoid {}))?.with_no_params()
            }
            "Clip" => {
                let bound = |attr: &str, input: usize| -> Result<Option<f32>> {
                    if let Some(a) = n.attr(attr) {
                        return Ok(Some(a.f));
                    }
                    optional_const(input)?
                        .map(|c| {
                            c.scalar()
                                .ok_or_else(|| n.error(format!("`{attr}` is not a scalar")))
                        })
                        .transpose()
                };
                let (min, max) = (bound("min", 1)?, bound("max", 2)?);
                let spec = match (min, max) {
                    (Some(0.0), Some(6.0)) => LayerSpec::ReLU6(ReLU6 {}),
                    (Some(0.0), None) => LayerSpec::ReLU(ReLU {}),
                    (Some(0.0), Some(m)) if m == f32::INFINITY => LayerSpec::ReLU(ReLU {}),
                    _ => {
                        return Err(n.error(format!(
                            "clipping to [{min:?}, {max:?}] is not supported: only ReLU \
                             ([0, ∞)) and ReLU6 ([0, 6])"
                        )));
                    }
                };
                unary(spec)?.with_no_params()
            }
            "MaxPool" => {
                let (kernel, stride, dilation) =
                    (self.kernel(n)?, n.pair("strides")?, n.pair("dilations")?);
                let ceil_mode = n.int("ceil_mode", 0) != 0;
                let padding = self.padding(n, kernel, stride, dilation, 0)?;
                let spec = MaxPool2dSpec {
                    kernel_size: kernel,
                    stride,
                    padding,
                    dilation,
                    ceil_mode,
                };
                unary(LayerSpec::MaxPool2d(spec))?.with_no_params()
            }
            "AveragePool" => {
                let (kernel, stride) = (self.kernel(n)?, n.pair("strides")?);
                if n.pair("dilations")? != [1, 1] {
                    return Err(n.error("dilated average pooling is not supported"));
                }
                let padding = self.padding(n, kernel, stride, [1, 1], 0)?;
                let spec = AvgPool2dSpec {
                    kernel_size: kernel,
                    stride,
                    padding,
                    ceil_mode: n.int("ceil_mode", 0) != 0,
                    count_include_pad: n.int("count_include_pad", 0) != 0,
                };
                unary(LayerSpec::AvgPool2d(spec))?.with_no_params()
            }
            "GlobalAveragePool" => unary(LayerSpec::AdaptiveAvgPool2d(AdaptiveAvgPool2dSpec {
                output_size: [1, 1],
            }))?
            .with_no_params(),
            "ReduceMean" => {
                // The mean over H and W: global average pooling (the dynamo exporter's form).
                let (x, shape) = live(0)?;
                let axes: Vec<i64> = match n.ints("axes") {
                    Some(a) => a.to_vec(),
                    None => optional_const(1)?
                        .and_then(|c| c.int_values())
                        .map(|v| v.into_iter().flatten().collect())
                        .unwrap_or_default(),
                };
                let rank = shape.len() as i64 + 1;
                let mut axes: Vec<i64> = axes
                    .iter()
                    .map(|&a| if a < 0 { a + rank } else { a })
                    .collect();
                axes.sort();
                if shape.len() != 3 || axes != [2, 3] {
                    return Err(n.error(format!(
                        "the mean over axes {axes:?} of [N, {}] is not supported: only over H and \
                         W (global average pooling)",
                        format_sizes(&shape)
                    )));
                }
                let pool = LayerSpec::AdaptiveAvgPool2d(AdaptiveAvgPool2dSpec {
                    output_size: [1, 1],
                });
                if n.int("keepdims", 1) != 0 {
                    (pool, vec![x], vec![])
                } else {
                    let Value::Live { node, .. } = self.add(n, pool, vec![x], vec![], None)? else {
                        unreachable!("add returns a computed value")
                    };
                    (LayerSpec::Flatten(Flatten {}), vec![node], vec![])
                }
            }
            "Expand" => {
                // [N, C, 1, 1] broadcast to [N, C, H, W]: what adaptive pooling of a 1×1 map
                // to H×W computes (VGG's 7×7 pooling on 32×32 images).
                let (x, shape) = live(0)?;
                let target = constant(1)?
                    .int_values()
                    .ok_or_else(|| n.error("the target shape is not integers"))?;
                match (&shape[..], &target[..]) {
                    (&[c, 1, 1], &[Some(1) | None, Some(tc), Some(h), Some(w)])
                        if (tc == 1 || tc == c as i64) && h > 0 && w > 0 =>
                    {
                        let spec = AdaptiveAvgPool2dSpec {
                            output_size: [h as usize, w as usize],
                        };
                        (LayerSpec::AdaptiveAvgPool2d(spec), vec![x], vec![])
                    }
                    _ => {
                        return Err(n.error(format!(
                            "expanding [N, {}] to {} is not supported: only [N, C, 1, 1] to \
                             [N, C, H, W]",
                            format_sizes(&shape),
                            format_dims_i64(&target)
                        )));
                    }
                }
            }
            "Flatten" => {
                let (x, shape) = live(0)?;
                if n.int("axis", 1) != 1 {
                    return Err(n.error(format!(
                        "axis = {}: only flattening everything but the batch (axis = 1) is supported",
                        n.int("axis", 1)
                    )));
                }
                (flatten_of(&shape), vec![x], vec![])
            }
            "Reshape" => {
                let (x, shape) = live(0)?;
                let target = constant(1)?
                    .int_values()
                    .ok_or_else(|| n.error("the target shape is not integers"))?;
                // With allowzero, a 0 is a zero-sized axis, not "copy this axis".
                let zero_is_size = n.int("allowzero", 0) != 0 && target.contains(&Some(0));
                if zero_is_size || !is_flatten(&target, &shape) {
                    return Err(n.error(format!(
                        "reshaping [N, {}] to {} is not supported: only a flatten \
                         ([N, -1] or [N, {}])",
                        format_sizes(&shape),
                        format_dims_i64(&target),
                        shape.iter().product::<usize>()
                    )));
                }
                (flatten_of(&shape), vec![x], vec![])
            }
            "Squeeze" => {
                let (x, shape) = live(0)?;
                let axes = match n.ints("axes") {
                    Some(a) => Some(a.to_vec()),
                    None => optional_const(1)?
                        .and_then(|c| c.int_values().map(|v| v.into_iter().flatten().collect())),
                };
                let spatial_ones = shape.len() == 3 && shape[1..] == [1, 1];
                let axes_ok = axes.as_deref().is_none_or(|a| {
                    let mut a: Vec<i64> =
                        a.iter().map(|&x| if x < 0 { x + 4 } else { x }).collect();
                    a.sort();
                    a == [2, 3]
                });
                if !(spatial_ones && axes_ok) {
                    return Err(n.error(format!(
                        "squeezing [N, {}] is not supported: only [N, C, 1, 1] to [N, C]",
                        format_sizes(&shape)
                    )));
                }
                (LayerSpec::Flatten(Flatten {}), vec![x], vec![])
            }
            "Concat" if inputs.len() == 1 => {
                // `torch.cat([x])`: the value itself.
                unary(LayerSpec::Identity(Identity {}))?.with_no_params()
            }
            "Concat" => {
                let rank = match &inputs[0] {
                    Some(Value::Live { shape, .. }) => shape.len() as i64 + 1,
                    _ => 4,
                };
                let axis = n.int("axis", 1);
                if axis != 1 && axis != 1 - rank {
                    return Err(n.error(format!(
                        "axis = {axis}: only channel concatenation (axis = 1) is supported"
                    )));
                }
                let reads = (0..inputs.len())
                    .map(|i| live(i).map(|(x, _)| x))
                    .collect::<Result<_>>()?;
                (LayerSpec::Concat(Concat {}), reads, vec![])
            }
            "Identity" => unary(LayerSpec::Identity(Identity {}))?.with_no_params(),
            "Dropout" => {
                let p = match n.attr("ratio") {
                    Some(a) => a.f,
                    None => optional_const(1)?.and_then(|c| c.scalar()).unwrap_or(0.5),
                };
                unary(LayerSpec::Dropout(DropoutSpec { p: widen(p) }))?.with_no_params()
            }
            _ if SUPPORTED_OPS.contains(&n.op()) => {
                return Err(n.error(
                    "this op is supported on constants only (shape arithmetic), not on values \
                     computed from the model input",
                ));
            }
            _ => {
                return Err(OnnxError::UnsupportedOp {
                    node: n.label.clone(),
                    op: n.op().to_string(),
                });
            }
        };
        self.add(n, spec, reads, params, weight_name)
    }

    /// Appends a graph node; checks its op and shapes against its inputs.
    fn add(
        &mut self,
        n: &OnnxNode,
        spec: LayerSpec,
        reads: Vec<String>,
        params: Vec<(&str, Rc<Const>)>,
        weight_name: Option<&str>,
    ) -> Result<Value> {
        let name = self.unique_name(n, if params.is_empty() { None } else { weight_name });
        spec.validate(&name).map_err(|e| n.error(e.to_string()))?;
        let shapes: Vec<Vec<usize>> = reads.iter().map(|r| self.shape_of(r)).collect();
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let (shape, _) = spec.output_shape(&name, &refs).map_err(|e| {
            n.error(format!(
                "cannot take inputs of shape {}: {e}",
                shapes
                    .iter()
                    .map(|s| format!("[N, {}]", format_sizes(s)))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))
        })?;
        for (suffix, value) in params {
            if !matches!(value.data, ConstData::F32(_)) {
                return Err(n.error(format!("`{suffix}` is not a float tensor")));
            }
            self.tensors.insert(format!("{name}.{suffix}"), value);
        }
        self.shapes
            .insert(name.clone(), (shape.clone(), self.nodes.len()));
        self.nodes.push(NodeSpec {
            name: name.clone(),
            op: spec,
            inputs: reads,
        });
        Ok(Value::Live { node: name, shape })
    }

    /// The output shape of a graph node or the model input (every value read was added).
    fn shape_of(&self, node: &str) -> Vec<usize> {
        self.shapes
            .get(node)
            .map(|(shape, _)| shape.clone())
            .unwrap_or_default()
    }

    fn spec_mut(&mut self, node: &str) -> Option<&mut NodeSpec> {
        let &(_, at) = self.shapes.get(node)?;
        self.nodes.get_mut(at)
    }

    /// `Gemm`/`MatMul` on a flat input: a `Linear` layer (weight `[out, in]`).
    #[allow(clippy::type_complexity)]
    fn linear<'c>(
        &self,
        n: &OnnxNode,
        x: String,
        shape: &[usize],
        weight: Rc<Const>,
        bias: Option<Rc<Const>>,
    ) -> Result<(LayerSpec, Vec<String>, Vec<(&'c str, Rc<Const>)>)> {
        let [out, inp] = weight.dims[..] else {
            unreachable!("matrix() returns 2-D")
        };
        if shape != [inp] {
            return Err(n.error(format!(
                "input has shape [N, {}] but the weight expects [N, {inp}]; flatten first",
                format_sizes(shape)
            )));
        }
        let spec = LinearSpec {
            in_features: inp,
            out_features: out,
            bias: bias.is_some(),
        };
        let mut params = vec![("weight", weight)];
        params.extend(bias.map(|b| ("bias", b)));
        Ok((LayerSpec::Linear(spec), vec![x], params))
    }

    /// `Add(layer, constant)` where the layer is a bias-less `Conv`/`MatMul` read only here:
    /// the constant becomes its bias.
    fn fuse_bias(&mut self, n: &OnnxNode, inputs: &[Option<Value>]) -> Result<Value> {
        let refuse = || {
            n.error(
                "adding a constant is supported only as the bias of the convolution or matrix \
                 product just before it",
            )
        };
        let (live_idx, value) = match (
            inputs.first().and_then(Option::as_ref),
            inputs.get(1).and_then(Option::as_ref),
        ) {
            (Some(Value::Live { .. }), Some(Value::Const(c))) => (0, c),
            (Some(Value::Const(c)), Some(Value::Live { .. })) => (1, c),
            _ => return Err(refuse()),
        };
        let onnx_name = &n.proto.input[live_idx];
        let Some(Value::Live { node, shape }) = self.values.get(onnx_name).cloned() else {
            return Err(refuse());
        };
        if self.readers.get(onnx_name).copied() != Some(1) {
            return Err(refuse());
        }
        let channels = shape.first().copied().unwrap_or(0);
        let Some(spec) = self.spec_mut(&node) else {
            return Err(refuse());
        };
        // The constant's dims, not only its length: broadcasting `[C]` over `[N, C, H, W]`
        // adds along W, which is no bias; a bias is `[C, 1, 1]` (or `[1, C, 1, 1]`) for a
        // convolution and `[out]` (or `[1, out]`) for a matrix product.
        let dims_without_leading_ones = {
            let d = &value.dims;
            let first = d.iter().position(|&x| x != 1).unwrap_or(d.len());
            d[first..].to_vec()
        };
        let ok = match &mut spec.op {
            LayerSpec::Linear(l)
                if !l.bias
                    && dims_without_leading_ones == [l.out_features]
                    && value.dims.len() <= 2 =>
            {
                l.bias = true;
                true
            }
            LayerSpec::Conv2d(c)
                if !c.bias
                    && (dims_without_leading_ones == [channels, 1, 1]
                        || (channels == 1 && dims_without_leading_ones.is_empty()))
                    && value.dims.len() <= 4 =>
            {
                c.bias = true;
                true
            }
            _ => false,
        };
        if !ok {
            return Err(refuse());
        }
        let floats = value.floats().ok_or_else(refuse)?;
        let bias = Const {
            dims: vec![floats.len()],
            data: ConstData::F32(floats),
        };
        self.tensors.insert(format!("{node}.bias"), Rc::new(bias));
        Ok(Value::Live { node, shape })
    }

    /// `Mul(x, Sigmoid(x))` with the sigmoid read only here: the sigmoid node becomes SiLU.
    fn fuse_silu(&mut self, n: &OnnxNode, a: &str, b: &str) -> Option<Value> {
        for (i, (x, s)) in [(a, b), (b, a)].into_iter().enumerate() {
            let onnx_s = &n.proto.input[1 - i];
            let single = self.readers.get(onnx_s).copied() == Some(1);
            let shape = self.shape_of(s);
            let spec = self.spec_mut(s)?;
            if single && matches!(spec.op, LayerSpec::Sigmoid(_)) && spec.inputs == [x] {
                spec.op = LayerSpec::SiLU(SiLU {});
                return Some(Value::Live {
                    node: s.to_string(),
                    shape,
                });
            }
        }
        None
    }

    fn kernel(&self, n: &OnnxNode) -> Result<[usize; 2]> {
        match n.ints("kernel_shape") {
            Some(&[a, b]) if in_range(a, 1) && in_range(b, 1) => Ok([a as usize, b as usize]),
            Some(k) => Err(n.error(format!(
                "kernel_shape = {k:?}: only 2-D pooling with sizes in [1, {MAX_SIZE}] is supported"
            ))),
            None => Err(n.error("no kernel_shape")),
        }
    }

    /// Symmetric padding from `pads` or `auto_pad`.
    fn padding(
        &self,
        n: &OnnxNode,
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        input: usize,
    ) -> Result<[usize; 2]> {
        let auto = n.string("auto_pad");
        match auto.as_str() {
            "" | "NOTSET" => {}
            "VALID" => return Ok([0, 0]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let in_hw = match n.proto.input.get(input).and_then(|x| self.values.get(x)) {
                    Some(Value::Live { shape, .. }) if shape.len() == 3 => [shape[1], shape[2]],
                    _ => return Err(n.error("auto_pad needs a [C, H, W] input")),
                };
                let mut pads = [0; 2];
                for a in 0..2 {
                    let out = in_hw[a].div_ceil(stride[a]);
                    let needed = ((out - 1) * stride[a] + (kernel[a] - 1) * dilation[a] + 1)
                        .saturating_sub(in_hw[a]);
                    if needed % 2 != 0 {
                        return Err(n.error(format!(
                            "auto_pad = {auto} pads axis {a} asymmetrically; only symmetric \
                             padding is supported"
                        )));
                    }
                    pads[a] = needed / 2;
                }
                return Ok(pads);
            }
            other => return Err(n.error(format!("auto_pad = `{other}` is not an ONNX value"))),
        }
        match n.ints("pads") {
            None => Ok([0, 0]),
            Some(&[t, l, b, r]) if t == b && l == r && in_range(t, 0) && in_range(l, 0) => {
                Ok([t as usize, l as usize])
            }
            Some(p) => Err(n.error(format!(
                "pads = {p:?}: only symmetric 2-D padding (top = bottom, left = right) is supported"
            ))),
        }
    }

    /// A graph node name: the module path the exporter recorded, made unique.
    fn unique_name(&mut self, n: &OnnxNode, weight: Option<&str>) -> String {
        let op = n.op().to_ascii_lowercase();
        let base = weight
            .and_then(|w| w.strip_suffix(".weight"))
            .and_then(sanitize)
            .or_else(|| module_path(&n.proto.name))
            .unwrap_or_else(|| op.clone());
        let mut name = base.clone();
        if self.taken.contains(&name) {
            name = format!("{base}.{op}");
        }
        let mut k = 1;
        while self.taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    // ---- constants ----

    /// Evaluates a node whose inputs are all constants (the exporter's shape arithmetic).
    fn fold(&self, n: &OnnxNode, inputs: &[Option<&Const>]) -> Result<Const> {
        let input = |i: usize| -> Result<&Const> {
            inputs
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| n.error(format!("input {i} is missing")))
        };
        let ints_of = |c: &Const| -> Result<Vec<i64>> {
            c.int_values()
                .and_then(|v| v.into_iter().collect::<Option<Vec<i64>>>())
                .ok_or_else(|| n.error("expects known integers"))
        };
        let axes = |attr: &str, i: usize| -> Result<Option<Vec<i64>>> {
            match n.ints(attr) {
                Some(a) => Ok(Some(a.to_vec())),
                None => inputs.get(i).copied().flatten().map(ints_of).transpose(),
            }
        };
        match n.op() {
            "Constant" => self.constant_attribute(n),
            "Identity" | "Dropout" => Ok(input(0)?.clone()),
            "Cast" => {
                let c = input(0)?;
                match n.int("to", 0) as i32 {
                    data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 => Ok(Const {
                        dims: c.dims.clone(),
                        data: ConstData::F32(
                            c.floats().ok_or_else(|| n.error("casts an unknown size"))?,
                        ),
                    }),
                    data_type::INT64 | data_type::INT32 => Ok(Const {
                        dims: c.dims.clone(),
                        data: ConstData::I64(match &c.data {
                            ConstData::I64(v) => v.clone(),
                            ConstData::F32(v) => v.iter().map(|&x| Some(x as i64)).collect(),
                        }),
                    }),
                    to => Err(n.error(format!("casting to type {to} is not supported"))),
                }
            }
            "Gather" => {
                let (data, idx) = (input(0)?, input(1)?);
                if data.dims.len() != 1 || n.int("axis", 0) != 0 {
                    return Err(n.error("gathering is supported on 1-D constants only"));
                }
                let values = data.int_values().ok_or_else(|| n.error("gathers floats"))?;
                let len = values.len() as i64;
                let picked = ints_of(idx)?
                    .into_iter()
                    .map(|i| {
                        let j = if i < 0 { i + len } else { i };
                        values
                            .get(usize::try_from(j).unwrap_or(usize::MAX))
                            .copied()
                            .ok_or_else(|| n.error(format!("index {i} is out of range")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Const {
                    dims: idx.dims.clone(),
                    data: ConstData::I64(picked),
                })
            }
            "Unsqueeze" | "Squeeze" => {
                let c = input(0)?;
                let mut dims = c.dims.clone();
                let axes = axes("axes", 1)?;
                if n.op() == "Unsqueeze" {
                    let mut axes = axes.ok_or_else(|| n.error("no axes"))?;
                    let rank = (dims.len() + axes.len()) as i64;
                    axes.iter_mut()
                        .for_each(|a| *a = if *a < 0 { *a + rank } else { *a });
                    axes.sort();
                    for a in axes {
                        if a < 0 || a as usize > dims.len() {
                            return Err(n.error(format!("axis {a} is out of range")));
                        }
                        dims.insert(a as usize, 1);
                    }
                } else {
                    let rank = dims.len() as i64;
                    let drop: Vec<usize> = match axes {
                        Some(a) => a
                            .iter()
                            .map(|&x| {
                                let axis = if x < 0 { x + rank } else { x };
                                usize::try_from(axis)
                                    .ok()
                                    .filter(|&a| dims.get(a) == Some(&1))
                                    .ok_or_else(|| {
                                        n.error(format!(
                                            "axis {x} of {:?} is not an axis of size 1",
                                            c.dims
                                        ))
                                    })
                            })
                            .collect::<Result<_>>()?,
                        None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
                    };
                    dims = dims
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !drop.contains(i))
                        .map(|(_, &d)| d)
                        .collect();
                }
                Ok(Const {
                    dims,
                    data: c.data.clone(),
                })
            }
            "Concat" => {
                let parts: Vec<&Const> = inputs.iter().copied().flatten().collect();
                if parts.iter().any(|c| c.dims.len() != 1) {
                    return Err(n.error("concatenating constants is supported for 1-D values only"));
                }
                if parts.iter().all(|c| matches!(c.data, ConstData::F32(_))) {
                    let values: Vec<f32> = parts
                        .iter()
                        .flat_map(|c| c.floats().unwrap_or_default())
                        .collect();
                    return Ok(Const {
                        dims: vec![values.len()],
                        data: ConstData::F32(values),
                    });
                }
                let values = parts
                    .iter()
                    .map(|c| {
                        c.int_values()
                            .ok_or_else(|| n.error("mixes floats and integers"))
                    })
                    .collect::<Result<Vec<_>>>()?
                    .concat();
                Ok(Const::ints(values))
            }
            "Slice" => {
                let c = input(0)?;
                if c.dims.len() != 1 {
                    return Err(n.error("slicing is supported on 1-D constants only"));
                }
                let first = |attr: &str, i: usize| -> Result<Option<i64>> {
                    Ok(axes(attr, i)?.and_then(|v| v.first().copied()))
                };
                let start = first("starts", 1)?.unwrap_or(0);
                let end = first("ends", 2)?;
                if first("axes", 3)?.is_some_and(|a| a != 0 && a != -1)
                    || first("steps", 4)?.is_some_and(|s| s != 1)
                {
                    return Err(n.error("only unit-step slices of 1-D constants are supported"));
                }
                let values = c.int_values().ok_or_else(|| n.error("slices floats"))?;
                Ok(Const::ints(slice_range(&values, start, end)))
            }
            "Reshape" => {
                let (c, target) = (input(0)?, ints_of(input(1)?)?);
                let refuse = || n.error(format!("cannot reshape {:?} to {target:?}", c.dims));
                if target.iter().filter(|&&t| t == -1).count() > 1 {
                    return Err(refuse());
                }
                let size = |i: usize, t: i64| -> Result<Option<usize>> {
                    match t {
                        0 => Ok(Some(c.dims.get(i).copied().unwrap_or(1))),
                        -1 => Ok(None),
                        t => usize::try_from(t).map(Some).map_err(|_| refuse()),
                    }
                };
                let sizes = target
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| size(i, t))
                    .collect::<Result<Vec<_>>>()?;
                let known = sizes
                    .iter()
                    .try_fold(1usize, |n, d| n.checked_mul(d.unwrap_or(1)))
                    .ok_or_else(refuse)?;
                let dims: Vec<usize> = sizes
                    .iter()
                    .map(|d| d.unwrap_or(c.len() / known.max(1)))
                    .collect();
                if dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) != Some(c.len()) {
                    return Err(refuse());
                }
                Ok(Const {
                    dims,
                    data: c.data.clone(),
                })
            }
            "Add" | "Sub" | "Mul" | "Div" => {
                let (a, b) = (input(0)?, input(1)?);
                arithmetic(n, a, b)
            }
            op if SUPPORTED_OPS.contains(&op) => Err(n.error(
                "all inputs of this node are constants; fold the model's constants before \
                 exporting (`do_constant_folding=True`)",
            )),
            op => Err(OnnxError::UnsupportedOp {
                node: n.label.clone(),
                op: op.to_string(),
            }),
        }
    }

    fn constant_attribute(&self, n: &OnnxNode) -> Result<Const> {
        if let Some(t) = n.attr("value").and_then(|a| a.t.as_ref()) {
            return decode(t, self.base);
        }
        if let Some(a) = n.attr("value_float") {
            return Ok(Const {
                dims: vec![],
                data: ConstData::F32(vec![a.f]),
            });
        }
        if let Some(a) = n.attr("value_floats") {
            return Ok(Const {
                dims: vec![a.floats.len()],
                data: ConstData::F32(a.floats.clone()),
            });
        }
        if let Some(a) = n.attr("value_int") {
            return Ok(Const {
                dims: vec![],
                data: ConstData::I64(vec![Some(a.i)]),
            });
        }
        if let Some(a) = n.attr("value_ints") {
            return Ok(Const::ints(a.ints.iter().map(|&i| Some(i)).collect()));
        }
        Err(n.error("no supported value attribute (value, value_float(s), value_int(s))"))
    }
}

/// Whether an attribute is a size in `[min, MAX_SIZE]`: larger ones are refused before any
/// arithmetic, so none can overflow.
fn in_range(value: i64, min: i64) -> bool {
    (min..=MAX_SIZE as i64).contains(&value)
}

/// One ONNX node lowered to a layer: its spec, the values it reads, and its named parameters.
type Lowered<'c> = (LayerSpec, Vec<String>, Vec<(&'c str, Rc<Const>)>);

/// A tuple of spec and reads with no parameters.
trait NoParams {
    fn with_no_params<'c>(self) -> Lowered<'c>;
}

impl NoParams for (LayerSpec, Vec<String>) {
    fn with_no_params<'c>(self) -> Lowered<'c> {
        (self.0, self.1, vec![])
    }
}

/// The `f64` with the same shortest decimal as `x` (`1e-5f32` → `1e-5`, not `9.99…e-6`), so
/// hyper-parameters written as `f32` by ONNX come back as they were written.
fn widen(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// A constant matrix as a `[out, in]` weight scaled by `alpha` (shared, not copied, when it
/// already is one).
fn matrix(n: &OnnxNode, b: &Rc<Const>, transposed: bool, alpha: f32) -> Result<Rc<Const>> {
    let [rows, cols] = b.dims[..] else {
        return Err(n.error(format!(
            "the weight has shape {:?}; a 2-D matrix is expected",
            b.dims
        )));
    };
    if transposed && alpha == 1.0 && matches!(b.data, ConstData::F32(_)) {
        return Ok(b.clone());
    }
    let values = b
        .floats()
        .ok_or_else(|| n.error("the weight is not numbers"))?;
    let (out, inp) = if transposed {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let mut w = vec![0f32; rows * cols];
    for o in 0..out {
        for i in 0..inp {
            let v = if transposed {
                values[o * cols + i]
            } else {
                values[i * cols + o]
            };
            w[o * inp + i] = alpha * v;
        }
    }
    Ok(Rc::new(Const {
        dims: vec![out, inp],
        data: ConstData::F32(w),
    }))
}

/// A Gemm `C` as a bias of `out` values scaled by `beta` (a single value is broadcast).
fn bias_vector(n: &OnnxNode, c: &Const, out: usize, beta: f32) -> Result<Const> {
    let values = c
        .floats()
        .ok_or_else(|| n.error("the bias is not numbers"))?;
    let values = match values.len() {
        len if len == out => values,
        1 => vec![values[0]; out],
        len => {
            return Err(n.error(format!("the bias has {len} values for {out} outputs")));
        }
    };
    Ok(Const {
        dims: vec![out],
        data: ConstData::F32(values.into_iter().map(|v| beta * v).collect()),
    })
}

/// Elementwise arithmetic on constants, with a single value broadcast.
fn arithmetic(n: &OnnxNode, a: &Const, b: &Const) -> Result<Const> {
    let (len, dims) = if a.len() >= b.len() {
        (a.len(), a.dims.clone())
    } else {
        (b.len(), b.dims.clone())
    };
    if !(a.len() == len || a.len() == 1) || !(b.len() == len || b.len() == 1) {
        return Err(n.error(format!(
            "constants of shapes {:?} and {:?} do not broadcast",
            a.dims, b.dims
        )));
    }
    let at = |v: &[Option<i64>], i: usize| v[if v.len() == 1 { 0 } else { i }];
    match (&a.data, &b.data) {
        (ConstData::I64(x), ConstData::I64(y)) => {
            let values = (0..len)
                .map(|i| {
                    let (p, q) = (at(x, i)?, at(y, i)?);
                    // Overflow (`i64::MIN / -1` included) makes the value unknown, and any
                    // use of it an error: shape arithmetic never wraps.
                    match n.op() {
                        "Add" => p.checked_add(q),
                        "Sub" => p.checked_sub(q),
                        "Mul" => p.checked_mul(q),
                        _ => p.checked_div_euclid(q),
                    }
                })
                .collect();
            Ok(Const {
                dims,
                data: ConstData::I64(values),
            })
        }
        _ => {
            let (x, y) = (
                a.floats().ok_or_else(|| n.error("unknown value"))?,
                b.floats().ok_or_else(|| n.error("unknown value"))?,
            );
            let get = |v: &[f32], i: usize| v[if v.len() == 1 { 0 } else { i }];
            let values = (0..len)
                .map(|i| {
                    let (p, q) = (get(&x, i), get(&y, i));
                    match n.op() {
                        "Add" => p + q,
                        "Sub" => p - q,
                        "Mul" => p * q,
                        _ => p / q,
                    }
                })
                .collect();
            Ok(Const {
                dims,
                data: ConstData::F32(values),
            })
        }
    }
}

/// `values[start..end]` with ONNX's negative and out-of-range rules.
fn slice_range(values: &[Option<i64>], start: i64, end: Option<i64>) -> Vec<Option<i64>> {
    let len = values.len() as i64;
    let clamp = |i: i64| (if i < 0 { i + len } else { i }).clamp(0, len) as usize;
    let (s, e) = (clamp(start), clamp(end.unwrap_or(len)));
    if s >= e {
        vec![]
    } else {
        values[s..e].to_vec()
    }
}

/// Whether reshaping a `[N, ...shape]` value to `target` keeps the batch and flattens the rest.
fn is_flatten(target: &[Option<i64>], shape: &[usize]) -> bool {
    let features = shape.iter().product::<usize>() as i64;
    match target {
        // The batch as computed by `Shape`, as 0 (copy), or as -1 with the features given.
        [batch, rest] => match (batch, rest) {
            (None | Some(0), Some(r)) => *r == -1 || *r == features,
            (Some(-1), Some(r)) => *r == features,
            _ => false,
        },
        _ => false,
    }
}

/// `Flatten` for a spatial value, `Identity` for one already flat.
fn flatten_of(shape: &[usize]) -> LayerSpec {
    if shape.len() == 1 {
        LayerSpec::Identity(Identity {})
    } else {
        LayerSpec::Flatten(Flatten {})
    }
}

/// The nodes the output depends on, in order (the exporter may leave unused branches).
fn live_nodes(nodes: Vec<NodeSpec>, output: &str) -> Vec<NodeSpec> {
    let mut needed: HashSet<String> = HashSet::from([output.to_string()]);
    for node in nodes.iter().rev() {
        if needed.contains(&node.name) {
            needed.extend(node.inputs.iter().cloned());
        }
    }
    let mut nodes: Vec<NodeSpec> = nodes
        .into_iter()
        .filter(|n| needed.contains(&n.name))
        .collect();
    // The output node is last in any topological order once dead nodes are gone.
    debug_assert_eq!(nodes.last().map(|n| n.name.as_str()), Some(output));
    nodes.shrink_to_fit();
    nodes
}

/// The module path in a node name: `/layer1/layer1.0/conv1/Conv` (PyTorch's scopes) →
/// `layer1.0.conv1`; a plain dotted name is kept; unusable names give `None`.
fn module_path(name: &str) -> Option<String> {
    let Some(scoped) = name.strip_prefix('/') else {
        return sanitize(name);
    };
    let mut parts: Vec<&str> = scoped.split('/').collect();
    parts.pop(); // the op type
    // Each scope repeats its parent's name for indexed children (`layer1`, `layer1.0`).
    let mut path: Vec<&str> = Vec::new();
    for part in parts {
        if let Some(last) = path.last()
            && part.starts_with(&format!("{last}."))
        {
            path.pop();
        }
        path.push(part);
    }
    sanitize(&path.join("."))
}

/// A valid node name: dotted parts of letters, digits, `_` and `-`; other characters become
/// `_`. `None` for an empty name or one that is the model input's.
fn sanitize(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ok = !cleaned.is_empty() && cleaned != INPUT && cleaned.split('.').all(|p| !p.is_empty());
    ok.then_some(cleaned)
}

fn format_sizes(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn format_dims(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |d| d.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

fn format_dims_i64(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("N".into(), |d| d.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_from_pytorch_scopes() {
        assert_eq!(
            module_path("/layer1/layer1.0/conv1/Conv").as_deref(),
            Some("layer1.0.conv1")
        );
        assert_eq!(
            module_path("/features/features.1/conv/conv.0/conv.0.0/Conv").as_deref(),
            Some("features.1.conv.0.0")
        );
        assert_eq!(module_path("/Flatten"), None);
        assert_eq!(module_path("fc").as_deref(), Some("fc"));
        assert_eq!(module_path("a..b"), None);
        assert_eq!(module_path("input"), None);
        assert_eq!(module_path("onnx::Conv_3").as_deref(), Some("onnx__Conv_3"));
    }

    #[test]
    fn flatten_targets() {
        assert!(is_flatten(&[None, Some(-1)], &[4, 2, 2]));
        assert!(is_flatten(&[Some(0), Some(16)], &[4, 2, 2]));
        assert!(is_flatten(&[Some(-1), Some(16)], &[4, 2, 2]));
        assert!(!is_flatten(&[Some(-1), Some(8)], &[4, 2, 2]));
        assert!(!is_flatten(&[Some(2), Some(-1)], &[4, 2, 2]));
        assert!(!is_flatten(&[None, Some(4), Some(4)], &[4, 2, 2]));
    }

    #[test]
    fn slices_follow_onnx_rules() {
        let v: Vec<Option<i64>> = (0..4).map(Some).collect();
        assert_eq!(slice_range(&v, 1, None), vec![Some(1), Some(2), Some(3)]);
        assert_eq!(slice_range(&v, -2, Some(i64::MAX)), vec![Some(2), Some(3)]);
        assert_eq!(slice_range(&v, 3, Some(1)), vec![]);
    }
}
