//! What the fuzzer generates: interesting integers, byte damage, mutated model files and
//! random ONNX graphs (proptest strategies and the builders they feed).

use fasterai::onnx::proto::{AttributeProto, ModelProto, NodeProto, TensorProto, data_type};
use fasterai::onnx::testing::{info, model_proto, node};
use proptest::prelude::*;
use serde_json::json;

use crate::corpus::{arch, floats, model_file, quantized_linear};
/// Sizes and integers that find edge cases: zero, one, small, and values near the limits of
/// every integer width a file can carry.
pub(super) fn interesting() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 0i64..6,
        1 => Just(-1i64),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(1 << 24),
        1 => Just((1 << 24) + 1),
        1 => Just(1 << 31),
        1 => Just(1 << 32),
        1 => Just(1 << 62),
        1 => any::<i64>(),
    ]
}

/// Byte-level damage: flips, overwrites with interesting bytes, truncation, insertion.
#[derive(Debug, Clone)]
pub(super) enum Damage {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

pub(super) fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, m)| Damage::Flip(at, m)),
        (
            any::<usize>(),
            prop::sample::select(vec![0u8, 0xff, 0x7f, 0x80, b'9', b'"', b'-'])
        )
            .prop_map(|(at, b)| Damage::Set(at, b)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Damage::Insert(at, b)),
    ]
}

pub(super) fn apply(mut bytes: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        let len = bytes.len().max(1);
        match d {
            Damage::Flip(at, m) if !bytes.is_empty() => bytes[at % len] ^= m,
            Damage::Set(at, b) if !bytes.is_empty() => bytes[at % len] = *b,
            Damage::Truncate(at) => bytes.truncate(at % len),
            Damage::Insert(at, b) => {
                let at = at % len;
                bytes.splice(at.min(bytes.len())..at.min(bytes.len()), b.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

// ---- model files ----

/// A tensor of a model file: name, dtype, shape, bytes.
type Tensor = (String, String, Vec<usize>, Vec<u8>);

/// Small valid models (architecture, tensors) to mutate: a conv → bn → relu → pool → linear
/// chain, a residual block, and a 4-bit quantized linear layer.
fn model_template(which: usize) -> (serde_json::Value, Vec<Tensor>) {
    let t = |name: &str, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        (
            name.to_string(),
            "F32".to_string(),
            shape,
            floats(&vec![0.25; n]),
        )
    };
    match which % 3 {
        0 => (
            arch(
                &[2, 4, 4],
                json!([
                    {"name": "conv", "op": {"type": "Conv2d", "in_channels": 2, "out_channels": 3,
                     "kernel_size": [3, 3], "padding": [1, 1], "bias": true}, "inputs": ["input"]},
                    {"name": "bn", "op": {"type": "BatchNorm2d", "num_features": 3}, "inputs": ["conv"]},
                    {"name": "relu", "op": {"type": "ReLU"}, "inputs": ["bn"]},
                    {"name": "pool", "op": {"type": "MaxPool2d", "kernel_size": [2, 2], "stride": [2, 2]},
                     "inputs": ["relu"]},
                    {"name": "flat", "op": {"type": "Flatten"}, "inputs": ["pool"]},
                    {"name": "fc", "op": {"type": "Linear", "in_features": 12, "out_features": 3},
                     "inputs": ["flat"]},
                ]),
            ),
            vec![
                t("conv.weight", vec![3, 2, 3, 3]),
                t("conv.bias", vec![3]),
                t("bn.weight", vec![3]),
                t("bn.bias", vec![3]),
                t("bn.running_mean", vec![3]),
                t("bn.running_var", vec![3]),
                t("fc.weight", vec![3, 12]),
                t("fc.bias", vec![3]),
            ],
        ),
        1 => (
            arch(
                &[2, 4, 4],
                json!([
                    {"name": "conv", "op": {"type": "Conv2d", "in_channels": 2, "out_channels": 2,
                     "kernel_size": [1, 1]}, "inputs": ["input"]},
                    {"name": "add", "op": {"type": "Add"}, "inputs": ["input", "conv"]},
                    {"name": "pool", "op": {"type": "AdaptiveAvgPool2d", "output_size": [1, 1]},
                     "inputs": ["add"]},
                    {"name": "flat", "op": {"type": "Flatten"}, "inputs": ["pool"]},
                ]),
            ),
            vec![t("conv.weight", vec![2, 2, 1, 1])],
        ),
        _ => {
            // The quantized template as the hostile corpus writes it, parsed back into parts.
            let bytes = quantized_linear([1, -2, 3, -4, 5, 6], [0.1; 3]);
            let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
            let arch: serde_json::Value = serde_json::from_str(
                header["__metadata__"]["fasterai.architecture"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
            let data = &bytes[8 + len..];
            let mut tensors: Vec<_> = header
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "__metadata__")
                .map(|(k, v)| {
                    let [a, b] = [0, 1].map(|i| v["data_offsets"][i].as_u64().unwrap() as usize);
                    let shape = v["shape"].as_array().unwrap().iter();
                    (
                        k.clone(),
                        v["dtype"].as_str().unwrap().to_string(),
                        shape.map(|d| d.as_u64().unwrap() as usize).collect(),
                        data[a..b].to_vec(),
                    )
                })
                .collect();
            tensors.sort_by(|a, b| a.0.cmp(&b.0));
            (arch, tensors)
        }
    }
}

/// Every path to a number in a JSON value.
fn number_paths(value: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Number(_) => out.push(path.clone()),
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                number_paths(v, path, out);
                path.pop();
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                number_paths(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'v>(value: &'v mut serde_json::Value, path: &[String]) -> &'v mut serde_json::Value {
    path.iter().fold(value, |v, key| match v {
        serde_json::Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
        other => &mut other[key.as_str()],
    })
}

/// A mutation of a model file: a number of the architecture, a tensor's shape or type, or a
/// node removed.
#[derive(Debug, Clone)]
pub(super) enum ModelEdit {
    Number(usize, i64),
    Float(usize, f64),
    Shape(usize, usize, i64),
    Dtype(usize, &'static str),
    DropNode(usize),
    DropTensor(usize),
}

pub(super) fn model_edit() -> impl Strategy<Value = ModelEdit> {
    prop_oneof![
        4 => (any::<usize>(), interesting()).prop_map(|(i, v)| ModelEdit::Number(i, v)),
        1 => (any::<usize>(), prop::sample::select(vec![0.0, -1.0, 1e30, 1e-30, 0.5]))
            .prop_map(|(i, v)| ModelEdit::Float(i, v)),
        2 => (any::<usize>(), any::<usize>(), interesting())
            .prop_map(|(t, d, v)| ModelEdit::Shape(t, d, v)),
        1 => (any::<usize>(), prop::sample::select(vec!["I8", "U8", "F16", "I64", "BOOL", "F64"]))
            .prop_map(|(t, d)| ModelEdit::Dtype(t, d)),
        1 => any::<usize>().prop_map(ModelEdit::DropNode),
        1 => any::<usize>().prop_map(ModelEdit::DropTensor),
    ]
}

pub(super) fn mutated_model(which: usize, edits: &[ModelEdit], damages: &[Damage]) -> Vec<u8> {
    let (mut arch, mut tensors) = model_template(which);
    for edit in edits {
        let mut paths = Vec::new();
        number_paths(&arch["nodes"], &mut vec!["nodes".into()], &mut paths);
        number_paths(
            &arch["input_shape"],
            &mut vec!["input_shape".into()],
            &mut paths,
        );
        match edit {
            ModelEdit::Number(i, v) if !paths.is_empty() => {
                *at_path(&mut arch, &paths[i % paths.len()]) = json!(v);
            }
            ModelEdit::Float(i, v) if !paths.is_empty() => {
                *at_path(&mut arch, &paths[i % paths.len()]) = json!(v);
            }
            ModelEdit::Shape(t, d, v) if !tensors.is_empty() => {
                let n = tensors.len();
                let shape = &mut tensors[t % n].2;
                if !shape.is_empty() {
                    let len = shape.len();
                    shape[d % len] = *v as usize;
                }
            }
            ModelEdit::Dtype(t, d) if !tensors.is_empty() => {
                let n = tensors.len();
                tensors[t % n].1 = d.to_string();
            }
            ModelEdit::DropNode(i) => {
                if let Some(nodes) = arch["nodes"].as_array_mut().filter(|n| !n.is_empty()) {
                    let n = nodes.len();
                    nodes.remove(i % n);
                }
            }
            ModelEdit::DropTensor(i) if !tensors.is_empty() => {
                let n = tensors.len();
                tensors.remove(i % n);
            }
            _ => {}
        }
    }
    let tensors: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), d.as_str(), s.clone(), b.clone()))
        .collect();
    apply(model_file(arch, &tensors), damages)
}

// ---- ONNX ----

const OPS: &[&str] = &[
    "Conv",
    "BatchNormalization",
    "Relu",
    "Clip",
    "Sigmoid",
    "Mul",
    "Add",
    "Sub",
    "Div",
    "Concat",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Gemm",
    "MatMul",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "Expand",
    "Shape",
    "Gather",
    "Slice",
    "Cast",
    "Constant",
    "Identity",
    "Dropout",
    "HardSigmoid",
    "QuantizeLinear",
];

const ATTRS: &[&str] = &[
    "kernel_shape",
    "pads",
    "strides",
    "dilations",
    "group",
    "axis",
    "axes",
    "keepdims",
    "transB",
    "transA",
    "epsilon",
    "auto_pad",
    "ceil_mode",
    "to",
    "value",
    "allowzero",
];

#[derive(Debug, Clone)]
pub(super) struct GenNode {
    op: usize,
    inputs: Vec<usize>,
    attrs: Vec<(usize, Vec<i64>)>,
}

#[derive(Debug, Clone)]
pub(super) struct GenInit {
    dims: Vec<i64>,
    data_type: i32,
    values: usize,
}

pub(super) fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        0..OPS.len(),
        prop::collection::vec(any::<usize>(), 0..4),
        prop::collection::vec(
            (0..ATTRS.len(), prop::collection::vec(interesting(), 0..5)),
            0..3,
        ),
    )
        .prop_map(|(op, inputs, attrs)| GenNode { op, inputs, attrs })
}

pub(super) fn gen_init() -> impl Strategy<Value = GenInit> {
    (
        prop::collection::vec(prop_oneof![4 => 0i64..5, 1 => interesting()], 0..4),
        prop::sample::select(vec![
            data_type::FLOAT,
            data_type::INT64,
            data_type::INT8,
            data_type::DOUBLE,
            99,
        ]),
        0usize..40,
    )
        .prop_map(|(dims, data_type, values)| GenInit {
            dims,
            data_type,
            values,
        })
}

fn attribute(name: &str, values: &[i64]) -> AttributeProto {
    match name {
        "auto_pad" => {
            let pads = ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET", "??"];
            let pick = values
                .first()
                .map_or(0, |v| v.unsigned_abs() as usize % pads.len());
            AttributeProto::string(name, pads[pick])
        }
        "epsilon" => AttributeProto::float(name, values.first().copied().unwrap_or(0) as f32),
        "value" => AttributeProto::tensor(
            name,
            TensorProto {
                dims: vec![values.len() as i64],
                data_type: data_type::INT64,
                int64_data: values.to_vec(),
                ..Default::default()
            },
        ),
        _ if values.len() == 1 => AttributeProto::int(name, values[0]),
        _ => AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: values.to_vec(),
            ..Default::default()
        },
    }
}

pub(super) fn random_onnx(
    input: &[Option<i64>],
    inits: &[GenInit],
    nodes: &[GenNode],
) -> ModelProto {
    let mut names: Vec<String> = vec!["x".into()];
    let initializer: Vec<TensorProto> = inits
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let name = format!("c{i}");
            names.push(name.clone());
            let mut t = TensorProto {
                name,
                dims: g.dims.clone(),
                data_type: g.data_type,
                ..Default::default()
            };
            match g.data_type {
                data_type::FLOAT => t.float_data = vec![0.5; g.values],
                data_type::INT64 => t.int64_data = (0..g.values as i64).collect(),
                _ => t.raw_data = vec![1u8; g.values].into(),
            }
            t
        })
        .collect();
    let mut protos: Vec<NodeProto> = Vec::new();
    for (i, g) in nodes.iter().enumerate() {
        let inputs: Vec<String> = g
            .inputs
            .iter()
            .map(|&k| names[k % names.len()].clone())
            .collect();
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let out = if i + 1 == nodes.len() {
            "y".to_string()
        } else {
            format!("v{i}")
        };
        let attrs = g
            .attrs
            .iter()
            .map(|(a, v)| attribute(ATTRS[*a], v))
            .collect();
        protos.push(node(&format!("n{i}"), OPS[g.op], &refs, &out, attrs));
        names.push(out);
    }
    let mut model = model_proto(protos, initializer, input, 17);
    if let Some(graph) = model.graph.as_mut() {
        graph.input = vec![info("x", input)];
    }
    model
}

pub(super) fn onnx_input() -> impl Strategy<Value = Vec<Option<i64>>> {
    prop::collection::vec(
        prop_oneof![
            1 => Just(None),
            6 => (1i64..6).prop_map(Some),
            1 => interesting().prop_map(Some),
        ],
        1..5,
    )
}
