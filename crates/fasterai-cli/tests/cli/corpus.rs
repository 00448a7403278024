//! The crafted corpus in `tests/corpus/`: generators for each file (model files, `.npy`
//! arrays, ONNX graphs), shared with the fuzzer, which mutates them further. The files are
//! committed; regenerate them after changing a generator with
//! `cargo test --workspace --test cli -- --ignored write_corpus`.

use std::path::{Path, PathBuf};

use fasterai::onnx::proto::{
    AttributeProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto, data_type,
};
use fasterai::onnx::testing::{int_tensor, model_proto, node, tensor};
use prost::Message;

/// The corpus folder.
pub(super) fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

#[test]
#[ignore = "writes the crafted corpus into tests/corpus (run after changing a generator)"]
fn write_corpus() {
    let dir = corpus();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in crafted_files() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Every crafted file the hostile tests run, by name.
fn crafted_files() -> Vec<(&'static str, Vec<u8>)> {
    let mut files = model_files();
    files.extend(arrays());
    files.extend(
        onnx_files()
            .into_iter()
            .map(|(n, m)| (n, m.encode_to_vec())),
    );
    files
}

/// A safetensors file: the architecture JSON in the metadata, and tensors (dtype, shape,
/// little-endian bytes).
pub(super) fn model_file(
    arch: serde_json::Value,
    tensors: &[(&str, &str, Vec<usize>, Vec<u8>)],
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({ "fasterai.architecture": arch.to_string() }),
    );
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [start, data.len()] }),
        );
    }
    let json = serde_json::Value::Object(header).to_string();
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(json.as_bytes());
    file.extend(data);
    file
}

pub(super) fn arch(input: &[u64], nodes: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "format": "fasterai-model", "version": 2, "name": "crafted",
        "input_shape": input, "nodes": nodes,
    })
}

pub(super) fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `Flatten → Linear(2 → 3)` with its weight stored as 4-bit codes and `scales`.
pub(super) fn quantized_linear(codes: [i8; 6], scales: [f32; 3]) -> Vec<u8> {
    let nodes = serde_json::json!([
        {"name": "flatten", "op": {"type": "Flatten"}, "inputs": ["input"]},
        {"name": "fc", "op": {"type": "Linear", "in_features": 2, "out_features": 3, "bias": true},
         "inputs": ["flatten"]},
    ]);
    let mut a = arch(&[2, 1, 1], nodes);
    a["quantized"] = serde_json::json!({"fc": {"bits": 4, "per_channel": true}});
    model_file(
        a,
        &[
            ("fc.bias", "F32", vec![3], floats(&[0.0; 3])),
            (
                "fc.weight",
                "I8",
                vec![3, 2],
                codes.map(|c| c as u8).to_vec(),
            ),
            ("fc.weight_scale", "F32", vec![3], floats(&scales)),
        ],
    )
}

fn model_files() -> Vec<(&'static str, Vec<u8>)> {
    use serde_json::json;
    let one =
        |name: &str, op: serde_json::Value| json!([{"name": name, "op": op, "inputs": ["input"]}]);
    vec![
        (
            "pool_rows_2e61.safetensors",
            model_file(
                arch(
                    &[2, 1, 1],
                    one(
                        "pool",
                        json!({"type": "AdaptiveAvgPool2d", "output_size": [(1u64 << 61) + 1, 1]}),
                    ),
                ),
                &[],
            ),
        ),
        (
            "conv_padding_2e63.safetensors",
            model_file(
                arch(
                    &[3, 8, 8],
                    one(
                        "conv",
                        json!({"type": "Conv2d", "in_channels": 3, "out_channels": 2,
                               "kernel_size": [1, 1], "padding": [1u64 << 63, 0]}),
                    ),
                ),
                &[("conv.weight", "F32", vec![2, 3, 1, 1], floats(&[0.0; 6]))],
            ),
        ),
        (
            "pool_dilation_2e62.safetensors",
            model_file(
                arch(
                    &[2, 1, 1],
                    one(
                        "pool",
                        json!({"type": "MaxPool2d", "kernel_size": [2, 2], "stride": [1, 1],
                               "padding": [1, 1], "dilation": [1u64 << 62, 1]}),
                    ),
                ),
                &[],
            ),
        ),
        (
            "input_2e60_elements.safetensors",
            model_file(
                arch(
                    &[1 << 20, 1 << 20, 1 << 20],
                    one("relu", json!({"type": "ReLU"})),
                ),
                &[],
            ),
        ),
        (
            "batch_norm_2e31.safetensors",
            model_file(
                arch(
                    &[1 << 31, 1, 1],
                    one(
                        "bn",
                        json!({"type": "BatchNorm2d", "num_features": 1u64 << 31}),
                    ),
                ),
                &[],
            ),
        ),
        (
            "batch_norm_2e24_no_weights.safetensors",
            model_file(
                arch(
                    &[1 << 24, 1, 1],
                    one(
                        "bn",
                        json!({"type": "BatchNorm2d", "num_features": 1u64 << 24}),
                    ),
                ),
                &[],
            ),
        ),
        (
            "linear_2e48_no_weights.safetensors",
            model_file(
                arch(
                    &[1 << 24],
                    one(
                        "fc",
                        json!({"type": "Linear", "in_features": 1u64 << 24, "out_features": 1u64 << 24}),
                    ),
                ),
                &[],
            ),
        ),
        ("header_beyond_file.safetensors", {
            let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
            bytes.extend_from_slice(b"{}");
            bytes
        }),
        (
            "codes_outside_grid.safetensors",
            quantized_linear([100, 1, 2, 3, 4, 5], [0.1; 3]),
        ),
        (
            "scale_zero.safetensors",
            quantized_linear([1; 6], [0.1, 0.0, 0.1]),
        ),
        (
            "scale_negative.safetensors",
            quantized_linear([1; 6], [0.1, -0.1, 0.1]),
        ),
        (
            "activation_scale_zero.safetensors",
            model_file(
                arch(
                    &[2, 1, 1],
                    one(
                        "q",
                        json!({"type": "FakeQuantize", "scale": 0.0, "zero_point": 0, "bits": 8}),
                    ),
                ),
                &[],
            ),
        ),
    ]
}

/// A `.npy` header (version 1) with `shape`, followed by `data` bytes.
pub(super) fn npy(shape: &str, data: usize) -> Vec<u8> {
    npy_with("<f4", false, shape, data)
}

/// A `.npy` file of any element type and order.
pub(super) fn npy_with(descr: &str, fortran: bool, shape: &str, data: usize) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, data));
    bytes
}

fn arrays() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "shape_wraps.npy",
            npy("(4611686018427387904, 4, 3, 16, 16)", 64),
        ),
        ("truncated.npy", npy("(1, 3, 16, 16)", 100)),
    ]
}

pub(super) fn transposed() -> AttributeProto {
    AttributeProto::int("transB", 1)
}

fn i64_const(name: &str, output: &str, values: &[i64]) -> NodeProto {
    node(
        name,
        "Constant",
        &[],
        output,
        vec![AttributeProto::tensor("value", int_tensor("v", values))],
    )
}

/// `x [N, 2]` through `nodes` and a final `Gemm` to `[N, 3]` reading `last`.
fn flat_model(mut nodes: Vec<NodeProto>, last: &str, extra: Vec<TensorProto>) -> ModelProto {
    nodes.push(node("fc", "Gemm", &[last, "w"], "y", vec![transposed()]));
    let mut init = vec![tensor("w", &[3, 2], &[0.5; 6])];
    init.extend(extra);
    model_proto(nodes, init, &[None, Some(2)], 17)
}

fn onnx_files() -> Vec<(&'static str, ModelProto)> {
    let image = |nodes: Vec<NodeProto>, init: Vec<TensorProto>, input: &[Option<i64>]| {
        model_proto(nodes, init, input, 17)
    };
    let bn_params = |c: usize| {
        ["s", "b", "m", "v"]
            .map(|n| tensor(n, &[c], &vec![1.0; c]))
            .to_vec()
    };
    let bn = node(
        "bn",
        "BatchNormalization",
        &["x", "s", "b", "m", "v"],
        "y",
        vec![],
    );
    vec![
        (
            "add_no_inputs.onnx",
            flat_model(vec![node("add", "Add", &[], "a", vec![])], "a", vec![]),
        ),
        (
            "concat_no_inputs.onnx",
            flat_model(vec![node("cat", "Concat", &[], "a", vec![])], "a", vec![]),
        ),
        (
            "div_min_by_minus_one.onnx",
            flat_model(
                vec![
                    i64_const("min", "p", &[i64::MIN]),
                    i64_const("minus_one", "q", &[-1]),
                    node("div", "Div", &["p", "q"], "target", vec![]),
                    node("reshape", "Reshape", &["x", "target"], "r", vec![]),
                ],
                "r",
                vec![],
            ),
        ),
        (
            "squeeze_bad_axis.onnx",
            flat_model(
                vec![
                    i64_const("c", "c", &[1, 2]),
                    node(
                        "sq",
                        "Squeeze",
                        &["c"],
                        "s",
                        vec![AttributeProto::ints("axes", [5])],
                    ),
                    node("relu", "Relu", &["x"], "r", vec![]),
                ],
                "r",
                vec![],
            ),
        ),
        (
            "reshape_product_wraps.onnx",
            flat_model(
                vec![
                    i64_const("c", "c", &[1, 2, 3, 4, 5, 6, 7, 8]),
                    i64_const("t", "t", &[1 << 62, 8, -1]),
                    node("reshape", "Reshape", &["c", "t"], "s", vec![]),
                    node("relu", "Relu", &["x"], "r", vec![]),
                ],
                "r",
                vec![],
            ),
        ),
        (
            "batch_norm_2e31.onnx",
            image(
                vec![bn.clone()],
                bn_params(1),
                &[None, Some(1 << 31), Some(4), Some(4)],
            ),
        ),
        (
            "batch_norm_2e20_small_params.onnx",
            image(
                vec![bn],
                bn_params(1),
                &[None, Some(1 << 20), Some(1), Some(1)],
            ),
        ),
        (
            "expand_2e40.onnx",
            image(
                vec![
                    i64_const("t", "t", &[1, 2, 1 << 40, 1 << 40]),
                    node("expand", "Expand", &["x", "t"], "y", vec![]),
                ],
                vec![],
                &[None, Some(2), Some(1), Some(1)],
            ),
        ),
        (
            "stride_2e62_auto_pad.onnx",
            image(
                vec![node(
                    "conv",
                    "Conv",
                    &["x", "w"],
                    "y",
                    vec![
                        AttributeProto::ints("strides", [1 << 62, 1]),
                        AttributeProto::string("auto_pad", "SAME_UPPER"),
                    ],
                )],
                vec![tensor("w", &[2, 2, 1, 1], &[1.0; 4])],
                &[None, Some(2), Some(4), Some(4)],
            ),
        ),
        (
            "quantize_linear.onnx",
            image(
                vec![node("q", "QuantizeLinear", &["x", "s", "z"], "y", vec![])],
                vec![
                    tensor("s", &[], &[0.1]),
                    TensorProto {
                        name: "z".into(),
                        data_type: data_type::INT8,
                        raw_data: vec![0u8].into(),
                        ..Default::default()
                    },
                ],
                &[None, Some(2), Some(4), Some(4)],
            ),
        ),
        (
            "conv_plus_row.onnx",
            image(
                vec![
                    node("conv", "Conv", &["x", "w"], "c", vec![]),
                    node("add", "Add", &["c", "b"], "y", vec![]),
                ],
                vec![
                    tensor("w", &[4, 2, 1, 1], &[1.0; 8]),
                    tensor("b", &[4], &[1.0, 2.0, 3.0, 4.0]),
                ],
                &[None, Some(2), Some(4), Some(4)],
            ),
        ),
        (
            "matmul_plus_column.onnx",
            model_proto(
                vec![
                    node("mm", "MatMul", &["x", "w"], "m", vec![]),
                    node("add", "Add", &["m", "b"], "y", vec![]),
                ],
                vec![
                    tensor("w", &[2, 3], &[1.0; 6]),
                    tensor("b", &[3, 1], &[1.0, 2.0, 3.0]),
                ],
                &[None, Some(2)],
                17,
            ),
        ),
        (
            "reduce_mean_keepdims_0.onnx",
            model_proto(
                vec![
                    node(
                        "mean",
                        "ReduceMean",
                        &["x"],
                        "m",
                        vec![
                            AttributeProto::ints("axes", [2, 3]),
                            AttributeProto::int("keepdims", 0),
                        ],
                    ),
                    node("fc", "Gemm", &["m", "w"], "y", vec![transposed()]),
                ],
                vec![tensor("w", &[3, 2], &[0.5; 6])],
                &[None, Some(2), Some(4), Some(4)],
                13,
            ),
        ),
        (
            "concat_one_input.onnx",
            flat_model(
                vec![node(
                    "cat",
                    "Concat",
                    &["x"],
                    "c",
                    vec![AttributeProto::int("axis", 1)],
                )],
                "c",
                vec![],
            ),
        ),
    ]
}

/// `Gemm(x [N, 2], w)` with `w` (`[3, 2]`) stored externally at `location`.
pub(super) fn external_linear(location: &str) -> ModelProto {
    let w = TensorProto {
        name: "w".into(),
        dims: vec![3, 2],
        data_type: data_type::FLOAT,
        data_location: fasterai::onnx::proto::EXTERNAL,
        external_data: vec![StringStringEntryProto {
            key: "location".into(),
            value: location.into(),
        }],
        ..Default::default()
    };
    let nodes = vec![node("fc", "Gemm", &["x", "w"], "y", vec![transposed()])];
    model_proto(nodes, vec![w], &[None, Some(2)], 17)
}
