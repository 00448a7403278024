//! Graph → ONNX (opset 17): one ONNX node per graph node (SiLU: `Sigmoid` then `Mul`), node
//! and initializer names from the graph (`layer1.0.conv1`, `layer1.0.conv1.weight`), input
//! `input` and output `output` with a symbolic batch axis.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::TensorData;
use fasterai_core::graph::LayerSpec;
use fasterai_core::io::{pytorch_tensors, write_atomic};
use fasterai_core::model::Model;
use prost::Message;

use crate::error::{OnnxError, Result};
use crate::proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto, data_type,
};
use crate::tensor::{float_tensor, int_tensor, int8_tensor};

/// The opset written.
pub const EXPORT_OPSET: i64 = 17;
/// The IR version that goes with it.
const IR_VERSION: i64 = 8;
/// Protobuf messages cannot exceed 2 GiB.
const MAX_BYTES: usize = (1 << 31) - 1;

/// Writes `model` as ONNX to `path` (atomically); refuses to replace a file unless `overwrite`.
/// Returns the number of bytes written.
pub fn export_file(model: &Model, path: &Path, overwrite: bool) -> Result<usize> {
    let bytes = export_bytes(model)?;
    write_atomic(path, &bytes, overwrite)?;
    Ok(bytes.len())
}

/// The ONNX encoding of `model`.
pub fn export_bytes(model: &Model) -> Result<Vec<u8>> {
    let proto = to_proto(model)?;
    let len = proto.encoded_len();
    if len > MAX_BYTES {
        return Err(OnnxError::Model(format!(
            "the model needs {len} bytes; ONNX files without external data are limited to 2 GiB"
        )));
    }
    Ok(proto.encode_to_vec())
}

fn to_proto(model: &Model) -> Result<ModelProto> {
    let spec = model.net.spec();
    let shapes = spec.check(&model.input_shape)?;
    let mut tensors: HashMap<String, TensorData> =
        pytorch_tensors(&model.net)?.into_iter().collect();
    let mut graph = GraphProto {
        name: model.name.clone(),
        input: vec![value_info("input", &model.input_shape)],
        output: vec![value_info(
            "output",
            shapes.outputs.last().map_or(&[][..], Vec::as_slice),
        )],
        ..Default::default()
    };
    // Token values are refused before anything is built: Gemm and Concat would be wrong on them.
    for (node, out) in spec.nodes.iter().zip(&shapes.outputs) {
        if out.len() == 2 {
            return Err(OnnxError::UnsupportedExport {
                node: node.name.clone(),
                op: node.op.kind().to_string(),
            });
        }
    }
    let last = spec.nodes.len() - 1;
    for (i, node) in spec.nodes.iter().enumerate() {
        let name = node.name.as_str();
        let output = if i == last { "output" } else { name };
        let mut inputs = node.inputs.clone();
        let mut take = |suffix: &str| -> Result<String> {
            let key = format!("{name}.{suffix}");
            let data = tensors
                .remove(&key)
                .ok_or_else(|| OnnxError::Model(format!("the model has no tensor `{key}`")))?;
            let values = data
                .try_to_vec::<f32>()
                .map_err(|e| OnnxError::Model(format!("tensor `{key}` is not float32: {e:?}")))?;
            match model.quantized.get(name).filter(|_| suffix == "weight") {
                // Integer codes, dequantized by the graph (QDQ): what int8 runtimes fuse.
                Some(q) => {
                    let codes = q.grid.codes(&values, &q.scales);
                    let (code_key, scale_key, zero_key) = (
                        format!("{key}_quantized"),
                        format!("{key}_scale"),
                        format!("{key}_zero_point"),
                    );
                    let dims: &[usize] = if q.grid.per_channel {
                        &[q.scales.len()]
                    } else {
                        &[]
                    };
                    graph.initializer.extend([
                        int8_tensor(&code_key, data.shape(), &codes),
                        float_tensor(&scale_key, dims, &q.scales),
                        int8_tensor(&zero_key, dims, &vec![0; q.scales.len()]),
                    ]);
                    let attrs = vec![AttributeProto::int("axis", 0)];
                    graph.node.push(node_proto(
                        &format!("{key}:dequantize"),
                        "DequantizeLinear",
                        vec![code_key, scale_key, zero_key],
                        &key,
                        attrs,
                    ));
                }
                None => graph
                    .initializer
                    .push(float_tensor(&key, data.shape(), &values)),
            }
            Ok(key)
        };
        let mut attrs = Vec::new();
        let op = match &node.op {
            LayerSpec::Conv2d(c) => {
                inputs.push(take("weight")?);
                if c.bias {
                    inputs.push(take("bias")?);
                }
                attrs = vec![
                    AttributeProto::ints("kernel_shape", c.kernel_size),
                    AttributeProto::ints("strides", c.stride),
                    AttributeProto::ints("pads", [c.padding, c.padding].concat()),
                    AttributeProto::ints("dilations", c.dilation),
                    AttributeProto::int("group", c.groups as i64),
                ];
                "Conv"
            }
            LayerSpec::BatchNorm2d(b) => {
                for suffix in ["weight", "bias", "running_mean", "running_var"] {
                    inputs.push(take(suffix)?);
                }
                attrs = vec![
                    AttributeProto::float("epsilon", b.eps as f32),
                    AttributeProto::float("momentum", (1.0 - b.momentum) as f32),
                ];
                "BatchNormalization"
            }
            LayerSpec::Linear(l) => {
                inputs.push(take("weight")?);
                if l.bias {
                    inputs.push(take("bias")?);
                }
                attrs = vec![AttributeProto::int("transB", 1)];
                "Gemm"
            }
            LayerSpec::Dropout(d) => {
                let key = format!("{name}.ratio");
                graph
                    .initializer
                    .push(float_tensor(&key, &[], &[d.p as f32]));
                inputs.push(key);
                "Dropout"
            }
            LayerSpec::ReLU(_) => "Relu",
            LayerSpec::ReLU6(_) => {
                for (bound, value) in [("min", 0.0), ("max", 6.0)] {
                    let key = format!("{name}.{bound}");
                    graph.initializer.push(float_tensor(&key, &[], &[value]));
                    inputs.push(key);
                }
                "Clip"
            }
            LayerSpec::SiLU(_) => {
                // x · σ(x): the Sigmoid carries the node's name, so import fuses it back.
                let sigmoid = format!("{name}:sigmoid");
                graph.node.push(node_proto(
                    name,
                    "Sigmoid",
                    inputs.clone(),
                    &sigmoid,
                    vec![],
                ));
                inputs.push(sigmoid);
                graph.node.push(node_proto(
                    &format!("{name}.mul"),
                    "Mul",
                    inputs,
                    output,
                    vec![],
                ));
                continue;
            }
            LayerSpec::Sigmoid(_) => "Sigmoid",
            LayerSpec::Hardsigmoid(_) => {
                attrs = vec![
                    AttributeProto::float("alpha", 1.0 / 6.0),
                    AttributeProto::float("beta", 0.5),
                ];
                "HardSigmoid"
            }
            LayerSpec::Hardswish(_) => "HardSwish",
            LayerSpec::MaxPool2d(p) => {
                attrs = vec![
                    AttributeProto::ints("kernel_shape", p.kernel_size),
                    AttributeProto::ints("strides", p.stride),
                    AttributeProto::ints("pads", [p.padding, p.padding].concat()),
                    AttributeProto::ints("dilations", p.dilation),
                    AttributeProto::int("ceil_mode", p.ceil_mode as i64),
                ];
                "MaxPool"
            }
            LayerSpec::AvgPool2d(p) => {
                attrs = vec![
                    AttributeProto::ints("kernel_shape", p.kernel_size),
                    AttributeProto::ints("strides", p.stride),
                    AttributeProto::ints("pads", [p.padding, p.padding].concat()),
                    AttributeProto::int("ceil_mode", p.ceil_mode as i64),
                    AttributeProto::int("count_include_pad", p.count_include_pad as i64),
                ];
                "AveragePool"
            }
            LayerSpec::AdaptiveAvgPool2d(p) if p.output_size == [1, 1] => "GlobalAveragePool",
            LayerSpec::AdaptiveAvgPool2d(p) => {
                // Exact as a plain average pool when the output divides the input.
                let input = shapes.inputs_of(&spec, i)[0];
                let [_, h, w] = input[..] else {
                    return Err(OnnxError::Model(format!("`{name}` reads a flat value")));
                };
                let [oh, ow] = p.output_size;
                if [h, w] == [1, 1] {
                    // Every output cell averages the single input cell: a broadcast.
                    let key = format!("{name}.shape");
                    graph.initializer.push(int_tensor(
                        &key,
                        &[1, input[0] as i64, oh as i64, ow as i64],
                    ));
                    inputs.push(key);
                    graph
                        .node
                        .push(node_proto(name, "Expand", inputs, output, vec![]));
                    continue;
                }
                if h % oh != 0 || w % ow != 0 {
                    return Err(OnnxError::Model(format!(
                        "`{name}`: adaptive pooling from {h}×{w} to {oh}×{ow} has no ONNX \
                         equivalent (the output size must divide the input size, or the input \
                         be 1×1)"
                    )));
                }
                let kernel = [h / oh, w / ow];
                attrs = vec![
                    AttributeProto::ints("kernel_shape", kernel),
                    AttributeProto::ints("strides", kernel),
                ];
                "AveragePool"
            }
            LayerSpec::Flatten(_) => {
                attrs = vec![AttributeProto::int("axis", 1)];
                "Flatten"
            }
            LayerSpec::Identity(_) => "Identity",
            LayerSpec::Add(_) => "Add",
            LayerSpec::Mul(_) => "Mul",
            LayerSpec::Concat(_) => {
                attrs = vec![AttributeProto::int("axis", 1)];
                "Concat"
            }
            LayerSpec::FakeQuantize(g) => {
                if g.bits != 8 {
                    return Err(OnnxError::Model(format!(
                        "`{name}` quantizes to {} bits; ONNX QuantizeLinear (opset 17) holds \
                         8-bit codes only",
                        g.bits
                    )));
                }
                let (scale, zero) = (format!("{name}.scale"), format!("{name}.zero_point"));
                graph.initializer.extend([
                    float_tensor(&scale, &[], &[g.scale]),
                    int8_tensor(&zero, &[], &[g.zero_point as i8]),
                ]);
                let codes = format!("{name}:quantized");
                inputs.extend([scale.clone(), zero.clone()]);
                graph
                    .node
                    .push(node_proto(name, "QuantizeLinear", inputs, &codes, vec![]));
                graph.node.push(node_proto(
                    &format!("{name}.dequantize"),
                    "DequantizeLinear",
                    vec![codes, scale, zero],
                    output,
                    vec![],
                ));
                continue;
            }
            LayerSpec::LayerNorm(_)
            | LayerSpec::MultiheadAttention(_)
            | LayerSpec::ClassToken(_)
            | LayerSpec::PositionEmbedding(_)
            | LayerSpec::StochasticDepth(_)
            | LayerSpec::GELU(_)
            | LayerSpec::Softmax(_)
            | LayerSpec::ImageToTokens(_)
            | LayerSpec::SelectToken(_)
            | LayerSpec::TokenMean(_)
            | LayerSpec::Embedding(_)
            | LayerSpec::LearnedPositions(_)
            | LayerSpec::RMSNorm(_)
            | LayerSpec::TiedLinear(_) => {
                return Err(OnnxError::UnsupportedExport {
                    node: name.to_string(),
                    op: node.op.kind().to_string(),
                });
            }
        };
        graph.node.push(node_proto(name, op, inputs, output, attrs));
    }
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "fasterai".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: String::new(),
        graph: Some(graph),
    })
}

fn node_proto(
    name: &str,
    op: &str,
    inputs: Vec<String>,
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs,
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        attribute,
    }
}

/// A float32 tensor `[batch, ...shape]` with a symbolic batch.
fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let batch = Dimension {
        value: Some(DimensionValue::DimParam("batch".into())),
    };
    let dims = shape.iter().map(|&d| Dimension {
        value: Some(DimensionValue::DimValue(d as i64)),
    });
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: std::iter::once(batch).chain(dims).collect(),
                }),
            }),
        }),
    }
}
