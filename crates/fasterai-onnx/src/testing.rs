//! Builders for hand-made ONNX graphs: the tests' models, the crafted files of the hostile
//! corpus and the fuzzers' seeds.

use crate::proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
    data_type,
};

/// A float32 initializer.
pub fn tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

/// A 1-D int64 initializer.
pub fn int_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: data_type::INT64,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// A default-domain node with one output.
pub fn node(
    name: &str,
    op: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        attribute: attrs,
    }
}

/// A float32 value's type; `None` dims are the symbolic batch.
pub fn info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => DimensionValue::DimValue(*v),
                                None => DimensionValue::DimParam("batch".into()),
                            }),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// A model reading `x` of dims `input` and writing `y` (`[N, 3]`), at `opset`.
pub fn model_proto(
    nodes: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    input: &[Option<i64>],
    opset: i64,
) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "main_graph".into(),
            initializer,
            input: vec![info("x", input)],
            output: vec![info("y", &[None, Some(3)])],
        }),
        ..Default::default()
    }
}
