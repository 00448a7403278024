//! ONNX in and out: export → import gives the same graph and outputs for every family and for
//! compressed models; hand-written ONNX graphs in PyTorch's export patterns import to the
//! model they describe (compared with the same model built directly); bad files are errors.

use std::path::Path;

use burn::tensor::{Distribution, Tensor, TensorData};
use fasterai_core::graph::ops::{Conv2dSpec, LinearSpec};
use fasterai_core::graph::{Activation, GraphBuilder, LayerSpec};
use fasterai_core::io::{pytorch_tensors, set_pytorch_tensors};
use fasterai_core::prelude::*;
use fasterai_core::testing::{random_graph, randomize_batch_norms, relative_max_diff};
use fasterai_decompose::conv::{ConvConfig, ConvMethod, ConvRank, decompose_convs};
use fasterai_fold::fold_batch_norms;
use fasterai_models::Builtin;
use fasterai_onnx::proto::{
    AttributeProto, ModelProto, StringStringEntryProto, TensorProto, data_type,
};
use fasterai_onnx::testing::{info, int_tensor, model_proto, node, tensor};
use fasterai_onnx::{
    ImportOptions, OnnxError, export_bytes, export_file, import_bytes, import_file,
};
use fasterai_prune::{GroupPruneConfig, prune_groups};
use prost::Message;

fn device() -> Device {
    parse_device("flex").unwrap()
}

fn round_trip(model: &Model) -> Model {
    let bytes = export_bytes(model).unwrap();
    import_bytes(
        &bytes,
        None,
        &ImportOptions::default(),
        &device(),
        Path::new("memory.onnx"),
    )
    .unwrap()
}

/// Same nodes (names, ops, inputs), same tensors bit for bit, same outputs.
fn assert_same_model(a: &Model, b: &Model, x: &Tensor<4>) {
    assert_eq!(a.input_shape, b.input_shape);
    assert_eq!(a.net.spec(), b.net.spec(), "graphs differ");
    let (ta, tb) = (
        pytorch_tensors(&a.net).unwrap(),
        pytorch_tensors(&b.net).unwrap(),
    );
    assert_eq!(ta.len(), tb.len());
    for ((ka, da), (kb, db)) in ta.iter().zip(&tb) {
        assert_eq!(ka, kb);
        assert_eq!(da.as_bytes(), db.as_bytes(), "tensor {ka} differs");
    }
    let (ya, yb) = (a.net.forward(x.clone()), b.net.forward(x.clone()));
    let diff = relative_max_diff(ya.flatten(), yb.flatten());
    assert!(diff == 0.0, "outputs differ by {diff}");
}

fn family(name: &str, device: &Device) -> Model {
    let mut model = name
        .parse::<Builtin>()
        .unwrap()
        .with_num_classes(10)
        .with_input_shape([3, 32, 32])
        .init(device)
        .unwrap();
    randomize_batch_norms(&mut model.net, device);
    model
}

#[test]
fn every_family_round_trips_exactly() {
    let device = device();
    device.seed(12);
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    for name in [
        "vgg11_bn_small",
        "resnet20",
        "resnet18",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "efficientnet_b0",
    ] {
        let model = family(name, &device);
        let back = round_trip(&model);
        assert_same_model(&model, &back, &x);
    }
}

#[test]
fn compressed_models_round_trip_exactly() {
    let device = device();
    device.seed(13);
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let base = family("resnet20", &device);

    let (pruned, _) = prune_groups(&base, &GroupPruneConfig::new(0.5)).unwrap();
    assert!(pruned.num_params() < base.num_params());
    let (folded, _) = fold_batch_norms(&pruned.net).unwrap();
    let folded = Model {
        net: folded,
        ..pruned.clone()
    };
    let config = ConvConfig::new(ConvMethod::Tucker2, ConvRank::Ratio(0.5));
    let (tucker, _) = decompose_convs(&folded.net, &config, &[], None).unwrap();
    let tucker = Model {
        net: tucker,
        ..folded.clone()
    };
    for model in [&pruned, &folded, &tucker] {
        assert_same_model(model, &round_trip(model), &x);
    }
}

#[test]
fn export_writes_atomically_and_never_overwrites_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let device = device();
    let model = family("resnet20", &device);
    let path = dir.path().join("m.onnx");
    let written = export_file(&model, &path, false).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, written);
    let err = export_file(&model, &path, false).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let back = import_file(&path, &ImportOptions::default(), &device).unwrap();
    assert_eq!(back.name, "m");
    assert_eq!(back.num_params(), model.num_params());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary left"
    );
}

// ---- hand-written ONNX in PyTorch's export patterns ----

fn import(proto: &ModelProto) -> Result<Model, OnnxError> {
    import_bytes(
        &proto.encode_to_vec(),
        None,
        &ImportOptions::default(),
        &device(),
        Path::new("test.onnx"),
    )
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = fasterai_core::testing::SplitMix(seed);
    (0..n)
        .map(|_| (rng.next_u64() % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// A PyTorch-style export of conv → ReLU6 → SiLU → GAP → view(N, -1) → linear, with the
/// patterns exporters produce: scope names, a conv bias as a separate `Add`, `Clip` bounds as
/// inputs, `x · sigmoid(x)`, the batch read back by `Shape → Gather → Unsqueeze → Concat`, and
/// `MatMul + Add`.
fn pytorch_style() -> (ModelProto, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (w, b) = (random(4 * 2 * 3 * 3, 1), random(4, 2));
    let (fc_w, fc_b) = (random(4 * 3, 3), random(3, 4)); // MatMul weight is [in, out]
    let nodes = vec![
        node(
            "/features/features.0/Conv",
            "Conv",
            &["x", "onnx::Conv_7"],
            "conv_out",
            vec![
                AttributeProto::ints("kernel_shape", [3, 3]),
                AttributeProto::ints("pads", [1, 1, 1, 1]),
                AttributeProto::ints("strides", [1, 1]),
            ],
        ),
        node(
            "/features/features.0/Add",
            "Add",
            &["conv_out", "conv.b"],
            "biased",
            vec![],
        ),
        node(
            "/features/features.1/Clip",
            "Clip",
            &["biased", "zero", "six"],
            "clipped",
            vec![],
        ),
        node(
            "/features/features.2/Sigmoid",
            "Sigmoid",
            &["clipped"],
            "sig",
            vec![],
        ),
        node(
            "/features/features.2/Mul",
            "Mul",
            &["clipped", "sig"],
            "silu",
            vec![],
        ),
        node(
            "/pool/GlobalAveragePool",
            "GlobalAveragePool",
            &["silu"],
            "pooled",
            vec![],
        ),
        node("/Shape", "Shape", &["pooled"], "shape", vec![]),
        node(
            "/Constant",
            "Constant",
            &[],
            "zero_idx",
            vec![AttributeProto {
                name: "value".into(),
                r#type: 4,
                t: Some(TensorProto {
                    dims: vec![],
                    data_type: data_type::INT64,
                    int64_data: vec![0],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        ),
        node(
            "/Gather",
            "Gather",
            &["shape", "zero_idx"],
            "batch",
            vec![AttributeProto::int("axis", 0)],
        ),
        node(
            "/Unsqueeze",
            "Unsqueeze",
            &["batch", "axes0"],
            "batch1",
            vec![],
        ),
        node(
            "/Concat",
            "Concat",
            &["batch1", "minus1"],
            "target",
            vec![AttributeProto::int("axis", 0)],
        ),
        node("/Reshape", "Reshape", &["pooled", "target"], "flat", vec![]),
        node(
            "/classifier/MatMul",
            "MatMul",
            &["flat", "fc.w"],
            "mm",
            vec![],
        ),
        node("/classifier/Add", "Add", &["fc.b", "mm"], "y", vec![]),
        // A dead branch the exporter left: ignored.
        node("/dead/Relu", "Relu", &["clipped"], "unused", vec![]),
    ];
    let init = vec![
        tensor("onnx::Conv_7", &[4, 2, 3, 3], &w),
        tensor("conv.b", &[4, 1, 1], &b),
        tensor("zero", &[], &[0.0]),
        tensor("six", &[], &[6.0]),
        int_tensor("axes0", &[0]),
        int_tensor("minus1", &[-1]),
        tensor("fc.w", &[4, 3], &fc_w),
        tensor("fc.b", &[3], &fc_b),
    ];
    (
        model_proto(nodes, init, &[None, Some(2), Some(5), Some(5)], 17),
        w,
        b,
        fc_w,
        fc_b,
    )
}

#[test]
fn pytorch_export_patterns_import_to_the_model_they_describe() {
    let device = device();
    let (proto, w, b, fc_w, fc_b) = pytorch_style();
    let model = import(&proto).unwrap();

    let names: Vec<&str> = model.net.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "features.0",
            "features.1",
            "features.2",
            "pool",
            "reshape",
            "classifier"
        ],
        "module paths from PyTorch's scopes; the dead branch dropped"
    );
    let kinds: Vec<&str> = model
        .net
        .nodes
        .iter()
        .map(|n| n.layer.live().spec().op().kind())
        .collect();
    assert_eq!(
        kinds,
        [
            "Conv2d",
            "ReLU6",
            "SiLU",
            "AdaptiveAvgPool2d",
            "Flatten",
            "Linear"
        ]
    );

    // The same model built directly, its weights set from the same numbers.
    let mut builder = GraphBuilder::new();
    builder.then(
        "features.0",
        LayerSpec::Conv2d(Conv2dSpec::new(2, 4, 3, 1).with_bias(true)),
    );
    builder.then("features.1", LayerSpec::ReLU6(Default::default()));
    builder.then("features.2", LayerSpec::SiLU(Default::default()));
    builder.then(
        "pool",
        LayerSpec::AdaptiveAvgPool2d(fasterai_core::graph::ops::AdaptiveAvgPool2dSpec {
            output_size: [1, 1],
        }),
    );
    builder.then("reshape", LayerSpec::Flatten(Default::default()));
    builder.then("classifier", LayerSpec::Linear(LinearSpec::new(4, 3)));
    let mut direct = random_graph(&builder.build(), &device);
    let fc_t: Vec<f32> = (0..3)
        .flat_map(|o| (0..4).map(move |i| (o, i)))
        .map(|(o, i)| fc_w[i * 3 + o])
        .collect();
    set_pytorch_tensors(
        &mut direct,
        vec![
            ("features.0.weight".into(), TensorData::new(w, [4, 2, 3, 3])),
            ("features.0.bias".into(), TensorData::new(b, [4])),
            ("classifier.weight".into(), TensorData::new(fc_t, [3, 4])),
            ("classifier.bias".into(), TensorData::new(fc_b, [3])),
        ],
        Path::new("direct"),
    )
    .unwrap();
    let x = Tensor::<4>::random([3, 2, 5, 5], Distribution::Normal(0.0, 2.0), &device);
    let (a, d) = (model.net.forward(x.clone()), direct.forward(x));
    let diff = relative_max_diff(a.flatten(), d.flatten());
    assert!(
        diff < 1e-6,
        "imported and directly built models differ by {diff}"
    );
}

#[test]
fn bad_files_are_clear_errors() {
    let device = device();
    let good = export_bytes(&family("resnet20", &device)).unwrap();
    let opts = ImportOptions::default();
    let load = |bytes: &[u8]| import_bytes(bytes, None, &opts, &device, Path::new("bad.onnx"));

    // Truncated at many points, and garbage: an error each time, never a panic.
    for cut in [1, 7, 100, good.len() / 3, good.len() / 2, good.len() - 3] {
        assert!(
            load(&good[..cut]).is_err(),
            "truncated at {cut} bytes was accepted"
        );
    }
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(load(&garbage).is_err());
    assert!(
        matches!(load(&[]), Err(OnnxError::Model(_))),
        "empty: no graph"
    );

    // Unsupported op, named with its node.
    let (mut proto, ..) = pytorch_style();
    let graph = proto.graph.as_mut().unwrap();
    graph
        .node
        .push(node("/head/Softmax", "Softmax", &["y"], "probs", vec![]));
    graph.output[0].name = "probs".into();
    let err = import(&proto).unwrap_err().to_string();
    assert!(
        err.contains("Softmax") && err.contains("/head/Softmax"),
        "{err}"
    );

    // An opset this build does not know.
    let (mut proto, ..) = pytorch_style();
    proto.opset_import[0].version = 99;
    let err = import(&proto).unwrap_err().to_string();
    assert!(err.contains("opset 99"), "{err}");

    // A spatial size left symbolic: say how to give it; giving it works.
    let (mut proto, ..) = pytorch_style();
    let graph = proto.graph.as_mut().unwrap();
    graph.input[0] = info("x", &[None, Some(2), None, None]);
    let err = import(&proto).unwrap_err().to_string();
    assert!(err.contains("--input-shape"), "{err}");
    let given = ImportOptions {
        input_shape: Some(vec![2, 5, 5]),
        ..Default::default()
    };
    let model = import_bytes(
        &proto.encode_to_vec(),
        None,
        &given,
        &device,
        Path::new("t"),
    )
    .unwrap();
    assert_eq!(model.input_shape, [2, 5, 5]);

    // Asymmetric padding cannot be represented.
    let (mut proto, ..) = pytorch_style();
    proto.graph.as_mut().unwrap().node[0].attribute[1] = AttributeProto::ints("pads", [0, 0, 1, 1]);
    let err = import(&proto).unwrap_err().to_string();
    assert!(
        err.contains("features.0") && err.contains("symmetric"),
        "{err}"
    );

    // External data: missing file, and a path leaving the model's folder.
    let dir = tempfile::tempdir().unwrap();
    let (mut proto, ..) = pytorch_style();
    let weight = &mut proto.graph.as_mut().unwrap().initializer[0];
    weight.float_data.clear();
    weight.data_location = fasterai_onnx::proto::EXTERNAL;
    weight.external_data = vec![StringStringEntryProto {
        key: "location".into(),
        value: "weights.bin".into(),
    }];
    let path = dir.path().join("ext.onnx");
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let err = import_file(&path, &opts, &device).unwrap_err().to_string();
    assert!(
        err.contains("onnx::Conv_7") && err.contains("weights.bin"),
        "{err}"
    );
    // With the file present (raw little-endian floats) it imports.
    let w = random(4 * 2 * 3 * 3, 1);
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.path().join("weights.bin"), &bytes[..bytes.len() - 4]).unwrap();
    let err = import_file(&path, &opts, &device).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    std::fs::write(dir.path().join("weights.bin"), &bytes).unwrap();
    import_file(&path, &opts, &device).unwrap();
    let weight = &mut proto.graph.as_mut().unwrap().initializer[0];
    weight.external_data[0].value = "../weights.bin".into();
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    let err = import_file(&path, &opts, &device).unwrap_err().to_string();
    assert!(err.contains("inside the model's folder"), "{err}");

    // A file that does not exist.
    let err = import_file(&dir.path().join("none.onnx"), &opts, &device).unwrap_err();
    assert!(matches!(err, OnnxError::Io { .. }), "{err}");
}

#[test]
fn import_probes_with_the_declared_input() {
    let device = device();
    let (proto, ..) = pytorch_style();
    let model = import(&proto).unwrap();
    assert_eq!(model.input_shape, [2, 5, 5]);
    let x = Activation::Spatial(Tensor::zeros([1, 2, 5, 5], &device));
    assert_eq!(model.net.try_forward(x).unwrap().dims(), vec![1, 3]);
}

#[test]
fn valid_exports_once_refused_import_to_what_they_compute() {
    let device = device();
    let x: Vec<f32> = random(2 * 2 * 3 * 3, 7);
    let w = random(3 * 2, 8);
    let run = |proto: &ModelProto, dims: [usize; 4]| -> Vec<f32> {
        let model = import(proto).unwrap();
        let input = Tensor::<4>::from_data(TensorData::new(x.clone(), dims), &device);
        model
            .net
            .try_forward(input)
            .unwrap()
            .flatten()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    // `x.mean((2, 3))` (ReduceMean, keepdims = 0) then a linear layer, against the sum by hand.
    let mean = model_proto(
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
            node(
                "fc",
                "Gemm",
                &["m", "w"],
                "y",
                vec![AttributeProto::int("transB", 1)],
            ),
        ],
        vec![tensor("w", &[3, 2], &w)],
        &[None, Some(2), Some(3), Some(3)],
        13,
    );
    let got = run(&mean, [2, 2, 3, 3]);
    for (i, &y) in got.iter().enumerate() {
        let (n, o) = (i / 3, i % 3);
        let expected: f32 = (0..2)
            .map(|c| w[o * 2 + c] * x[(n * 2 + c) * 9..][..9].iter().sum::<f32>() / 9.0)
            .sum();
        assert!((y - expected).abs() < 1e-5, "{y} vs {expected}");
    }
    // `torch.cat([x])`: the value itself.
    let cat = model_proto(
        vec![
            node(
                "cat",
                "Concat",
                &["x"],
                "c",
                vec![AttributeProto::int("axis", 1)],
            ),
            node("relu", "Relu", &["c"], "y", vec![]),
        ],
        vec![],
        &[None, Some(2), Some(3), Some(3)],
        17,
    );
    let relu: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(run(&cat, [2, 2, 3, 3]), relu);
}
