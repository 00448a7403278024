//! Conv decompositions against tensorly 0.10 (`shared/reference/conv_decomp`): Tucker-2
//! (`partial_tucker`), CP (`parafac`), slice-wise SVD; and the conv chains built from them.

use burn::module::Param;
use burn::tensor::{Distribution, Tensor};
use fasterai_core::graph::ops::Conv2dSpec;
use fasterai_core::graph::{Activation, Graph, InitScheme, Layer, LayerSpec};
use fasterai_core::summary::count_parameters;
use fasterai_core::testing::{Reference, relative_max_diff};
use fasterai_decompose::DecomposeError;
use fasterai_decompose::conv::{ConvConfig, ConvMethod, ConvRank, decompose_convs};
use fasterai_decompose::cp::{CpConfig, cp_als};
use fasterai_decompose::spatial::{slicewise, spatial_svd};
use fasterai_decompose::tucker::tucker2;
use ndarray::{Array2, Array4};

fn array4(r: &Reference, name: &str) -> Array4<f32> {
    let (shape, values) = r.values(name);
    Array4::from_shape_vec(
        (shape[0], shape[1], shape[2], shape[3]),
        values.iter().map(|&v| v as f32).collect(),
    )
    .unwrap()
}

fn relative(a: &Array4<f32>, b: &Array4<f32>) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn matches_tensorly_hosvd_and_hooi_errors() {
    let Some(r) = Reference::open("conv_decomp") else {
        return;
    };
    let w = array4(&r, "weight");
    let t = tucker2(&w, [8, 8], 100, 1e-4).unwrap();
    assert!(
        (t.errors[0] - 0.855921).abs() < 5e-4,
        "HOSVD error {}",
        t.errors[0]
    );
    let last = *t.errors.last().unwrap();
    assert!(
        (last - 0.827952).abs() < 5e-4,
        "HOOI error {last} after {} iterations",
        t.errors.len() - 1
    );
    // Errors never rise (HOOI is monotone) and the reported error is the real one.
    assert!(
        t.errors.windows(2).all(|e| e[1] <= e[0] + 1e-6),
        "{:?}",
        t.errors
    );
    assert!((relative(&t.reconstruct(), &w) - last).abs() < 1e-4);
    // Same reconstruction as tensorly's, up to the tolerance both stop at.
    assert!(relative(&t.reconstruct(), &array4(&r, "tucker_recon")) < 0.02);
}

#[test]
fn recovers_an_exact_tucker_tensor_and_rejects_bad_ranks() {
    // A tensor that is exactly Tucker-2 at ranks [3, 2].
    let core = Array4::from_shape_fn((3, 2, 3, 3), |(a, b, c, d)| {
        ((a * 5 + b * 3 + c * 2 + d) % 7) as f32 - 3.0
    });
    let u = ndarray::Array2::from_shape_fn((6, 3), |(i, j)| ((i * 3 + j * 5) % 4) as f32 - 1.5);
    let v = ndarray::Array2::from_shape_fn((5, 2), |(i, j)| ((i * 2 + j * 7) % 5) as f32 - 2.0);
    let exact = fasterai_decompose::tucker::Tucker2 {
        core,
        out_factor: u,
        in_factor: v,
        errors: vec![],
    };
    let w = exact.reconstruct();
    let t = tucker2(&w, [3, 2], 10, 1e-9).unwrap();
    assert!(t.errors[0] < 1e-3, "{:?}", t.errors);
    assert!(relative(&t.reconstruct(), &w) < 1e-4);
    assert!(tucker2(&w, [0, 2], 10, 1e-4).is_err());
    assert!(tucker2(&w, [3, 6], 10, 1e-4).is_err());
}

fn device() -> burn::tensor::Device {
    fasterai_core::device::parse_device("flex").unwrap()
}

fn to_tensor(w: &Array4<f32>) -> Tensor<4> {
    let data =
        burn::tensor::TensorData::new(w.iter().copied().collect::<Vec<_>>(), w.shape().to_vec());
    Tensor::from_data(data, &device())
}

/// A one-conv network with weight `w`, a bias, and the given geometry.
fn single_conv(
    w: &Array4<f32>,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Graph {
    let spec = LayerSpec::Conv2d(Conv2dSpec {
        in_channels: w.shape()[1],
        out_channels: w.shape()[0],
        kernel_size: [w.shape()[2], w.shape()[3]],
        stride,
        padding,
        dilation,
        groups: 1,
        bias: true,
    });
    let Layer::Conv2d(mut conv) = Layer::from_spec(&spec, InitScheme::PyTorchDefault, &device())
    else {
        unreachable!()
    };
    conv.weight = Param::from_tensor(to_tensor(w));
    Graph::indexed([Layer::Conv2d(conv)])
}

fn with_weight(net: &Graph, w: &Array4<f32>) -> Graph {
    let mut net = net.clone();
    let Layer::Conv2d(conv) = net.get_mut("0").unwrap() else {
        unreachable!()
    };
    conv.weight = Param::from_tensor(to_tensor(w));
    net
}

fn reference_net(r: &Reference) -> (Graph, Tensor<4>) {
    let d = device();
    let mut net = single_conv(&array4(r, "weight"), [1, 1], [1, 1], [1, 1]);
    let Layer::Conv2d(conv) = net.get_mut("0").unwrap() else {
        unreachable!()
    };
    conv.bias = Some(Param::from_tensor(r.tensor("bias", &d)));
    (net, r.tensor("x", &d))
}

#[test]
fn cp_als_matches_tensorly_parafac() {
    let Some(r) = Reference::open("conv_decomp") else {
        return;
    };
    let w = array4(&r, "weight");
    let cp = cp_als(&w, 8, CpConfig::default()).unwrap();
    let last = *cp.errors.last().unwrap();
    assert!(
        (0.909..=0.913).contains(&last),
        "CP error {last} after {} sweeps",
        cp.errors.len()
    );
    // ALS never raises the error, and the error it reports is the real one.
    assert!(
        cp.errors.windows(2).all(|e| e[1] <= e[0] + 1e-9),
        "{:?}",
        cp.errors
    );
    assert!((relative(&cp.reconstruct(), &w) - last).abs() < 1e-5);
    // tensorly's first-sweep error from the same SVD start is within the noise-fill spread.
    let tensorly_first = r.values("cp_errors").1[0];
    assert!(
        (cp.errors[0] - tensorly_first).abs() < 0.02,
        "{} vs {tensorly_first}",
        cp.errors[0]
    );

    // The four-conv chain against tensorly's own CP conv output: both are ~0.91 away from the
    // original, so they agree only roughly; exactness is checked on the composed weight below.
    let (net, x) = reference_net(&r);
    let config = ConvConfig::new(ConvMethod::Cp, ConvRank::Fixed(8));
    let (out, report) =
        decompose_convs(&net, &config, &[], Some(Activation::Spatial(x.clone()))).unwrap();
    assert_eq!(report.layers[0].params_after, 8 * (16 + 3 + 3 + 32) + 32);
    let y_cp: Tensor<4> = r.tensor("y_cp", &device());
    let y = out.forward(x).into_spatial().unwrap();
    let y_orig: Tensor<4> = r.tensor("y", &device());
    let ours = relative_frobenius(y.clone(), y_orig.clone());
    let theirs = relative_frobenius(y_cp, y_orig);
    assert!(
        (ours - theirs).abs() < 0.03,
        "output errors: ours {ours}, tensorly {theirs}"
    );
}

fn relative_frobenius(a: Tensor<4>, b: Tensor<4>) -> f64 {
    let num: f32 = (a - b.clone()).square().sum().sqrt().into_scalar();
    let den: f32 = b.square().sum().sqrt().into_scalar();
    (num / den) as f64
}

#[test]
fn cp_als_recovers_an_exact_cp_tensor() {
    let factor = |rows: usize, seed: usize| {
        Array2::from_shape_fn((rows, 3), |(i, j)| {
            (((i * 7 + j * 13 + seed) % 11) as f64 - 5.0) / 5.0
        })
    };
    let exact = fasterai_decompose::cp::Cp {
        out_factor: factor(12, 1),
        in_factor: factor(10, 2),
        vertical: factor(3, 3),
        horizontal: factor(3, 4),
        errors: vec![],
    };
    let w = exact.reconstruct();
    let cp = cp_als(
        &w,
        3,
        CpConfig {
            max_iter: 500,
            tol: 1e-12,
            seed: 1,
        },
    )
    .unwrap();
    let last = *cp.errors.last().unwrap();
    assert!(last < 1e-5, "error {last} after {} sweeps", cp.errors.len());
    assert!(relative(&cp.reconstruct(), &w) < 1e-5);
    // Near zero the error formula's cancellation leaves ~1e-7 of noise.
    assert!(
        cp.errors.windows(2).all(|e| e[1] <= e[0] + 1e-6),
        "{:?}",
        cp.errors
    );
}

#[test]
fn slicewise_svd_matches_the_reference() {
    let Some(r) = Reference::open("conv_decomp") else {
        return;
    };
    let w = array4(&r, "weight");
    let (approx, error) = slicewise(&w, 1).unwrap();
    assert!((error - 0.502929).abs() < 1e-5, "{error}");
    assert!(relative(&approx, &array4(&r, "slicewise_rank1_recon")) < 1e-5);
    // Rank 3 of 3×3 slices is exact.
    assert!(slicewise(&w, 3).unwrap().1 < 1e-6);
    assert!(slicewise(&w, 4).is_err() && slicewise(&w, 0).is_err());
}

#[test]
fn spatial_svd_error_is_the_truncated_tail() {
    let Some(r) = Reference::open("conv_decomp") else {
        return;
    };
    let w = array4(&r, "weight"); // matrix [(16·3), (32·3)] = 48×96
    for k in [1, 8, 24, 48] {
        let f = spatial_svd(&w, k).unwrap();
        let tail = fasterai_core::linalg::truncation_error(&f.low_rank.singular_values, k);
        // Float32 factors: ~1e-6 relative at real errors, ~3e-4 absolute near zero.
        let tolerance = if tail > 0.01 { 1e-5 } else { 1e-3 };
        assert!(
            (f.low_rank.relative_error - tail).abs() < tolerance,
            "k = {k}: {} vs {tail}",
            f.low_rank.relative_error
        );
        assert!(
            (relative(&f.reconstruct(), &w) - tail).abs() < 1e-4,
            "k = {k}"
        );
    }
    assert!(spatial_svd(&w, 48).unwrap().low_rank.relative_error < 1e-3);
    assert!(spatial_svd(&w, 0).is_err() && spatial_svd(&w, 49).is_err());
}

/// Every chain computes exactly the convolution of its composed weight, with the original
/// stride, padding and dilation, and the bias kept.
#[test]
fn conv_chains_reproduce_their_composed_weight() {
    let d = device();
    let w = Tensor::<4>::random([24, 12, 3, 3], Distribution::Normal(0.0, 1.0), &d);
    let w = Array4::from_shape_vec((24, 12, 3, 3), w.into_data().try_into_vec::<f32>().unwrap())
        .unwrap();
    let x = Tensor::<4>::random([2, 12, 15, 13], Distribution::Normal(0.0, 1.0), &d);
    for (stride, padding, dilation) in [
        ([1, 1], [1, 1], [1, 1]),
        ([2, 1], [1, 0], [1, 1]),
        ([1, 2], [1, 1], [2, 2]),
    ] {
        let net = single_conv(&w, stride, padding, dilation);
        let cases: [(ConvMethod, usize, Array4<f32>); 3] = [
            (
                ConvMethod::Tucker2,
                6,
                tucker2(&w, [6, 6], 100, 1e-4).unwrap().reconstruct(),
            ),
            (
                ConvMethod::Cp,
                10,
                cp_als(&w, 10, CpConfig::default()).unwrap().reconstruct(),
            ),
            (
                ConvMethod::SpatialSvd,
                9,
                spatial_svd(&w, 9).unwrap().reconstruct(),
            ),
        ];
        for (method, rank, composed) in cases {
            let config = ConvConfig::new(method, ConvRank::Fixed(rank));
            let (out, report) = decompose_convs(&net, &config, &[], None).unwrap();
            assert!(report.layers[0].decomposed, "{method:?}");
            let y = out
                .forward(Activation::Spatial(x.clone()))
                .into_spatial()
                .unwrap();
            let expected = with_weight(&net, &composed)
                .forward(Activation::Spatial(x.clone()))
                .into_spatial()
                .unwrap();
            assert_eq!(y.dims(), expected.dims());
            let e = relative_max_diff(y, expected);
            assert!(
                e < 1e-4,
                "{method:?} {stride:?} {padding:?} {dilation:?}: {e}"
            );
        }
    }
}

#[test]
fn tucker_conv_layers_reproduce_the_reference_output() {
    let Some(r) = Reference::open("conv_decomp") else {
        return;
    };
    let (net, x) = reference_net(&r);
    let config = ConvConfig::new(ConvMethod::Tucker2, ConvRank::Fixed(8));
    let (out, report) =
        decompose_convs(&net, &config, &[], Some(Activation::Spatial(x.clone()))).unwrap();
    let row = &report.layers[0];
    assert!(row.decomposed);
    assert!(
        (row.weight_error - 0.827952).abs() < 5e-4,
        "{}",
        row.weight_error
    );
    let y_err = row.output_error.unwrap();
    assert!((y_err - 0.838894).abs() < 5e-3, "output error {y_err}");
    // 16·8 + 8·8·9 + 8·32 + 32 parameters instead of 32·16·9 + 32.
    assert_eq!(row.params_after, 16 * 8 + 8 * 8 * 9 + 8 * 32 + 32);
    assert_eq!(out.output_shape(&[16, 12, 12]).unwrap(), vec![32, 12, 12]);
    let y = out.forward(Activation::Spatial(x)).into_spatial().unwrap();
    let reference: Tensor<4> = r.tensor("y_tucker", &device());
    let e = relative_max_diff(y, reference);
    assert!(e < 0.05, "against tensorly's Tucker conv output: {e}");
}

#[test]
fn bad_conv_requests_are_clear_errors() {
    let d = device();
    let w = Array4::from_shape_fn((8, 4, 3, 3), |(a, b, c, e)| {
        (a + 2 * b + c * e) as f32 - 4.0
    });
    let net = single_conv(&w, [1, 1], [1, 1], [1, 1]);
    let run = |method, rank| decompose_convs(&net, &ConvConfig::new(method, rank), &[], None);
    for method in [ConvMethod::Tucker2, ConvMethod::Cp, ConvMethod::SpatialSvd] {
        assert!(matches!(
            run(method, ConvRank::Fixed(0)),
            Err(DecomposeError::InvalidRank(_))
        ));
        assert!(matches!(
            run(method, ConvRank::Ratio(1.5)),
            Err(DecomposeError::InvalidRank(_))
        ));
        assert!(matches!(
            run(method, ConvRank::Ratio(0.0)),
            Err(DecomposeError::InvalidRank(_))
        ));
    }
    let config = ConvConfig::new(ConvMethod::Cp, ConvRank::Fixed(2));
    assert!(decompose_convs(&net, &config, &["1".into()], None).is_err());
    // A rank that saves nothing keeps the layer and says so.
    let (_, report) = run(ConvMethod::Cp, ConvRank::Fixed(100)).unwrap();
    assert!(!report.layers[0].decomposed && report.layers[0].action.starts_with("kept"));

    let mut bad = w.clone();
    bad[[0, 0, 0, 0]] = f32::NAN;
    let err = decompose_convs(
        &single_conv(&bad, [1, 1], [1, 1], [1, 1]),
        &config,
        &[],
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");

    let spec = LayerSpec::Conv2d(Conv2dSpec {
        in_channels: 4,
        out_channels: 8,
        kernel_size: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 2,
        bias: false,
    });
    let grouped = Graph::indexed([Layer::from_spec(&spec, InitScheme::PyTorchDefault, &d)]);
    let (same, report) = decompose_convs(&grouped, &config, &[], None).unwrap();
    assert!(!report.layers[0].decomposed, "{report}");
    assert!(
        report.layers[0]
            .action
            .contains("grouped conv (groups = 2)"),
        "{report}"
    );
    assert_eq!(count_parameters(&same), count_parameters(&grouped));
    assert!(cp_als(&Array4::zeros((2, 2, 3, 3)), 2, CpConfig::default()).is_err());
}

#[test]
fn branched_models_decompose_and_skip_what_does_not_apply() {
    let d = device();
    let build = |name: &str| {
        name.parse::<fasterai_models::Builtin>()
            .unwrap()
            .with_num_classes(10)
            .with_input_shape([3, 32, 32])
            .init(&d)
            .unwrap()
    };
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &d);
    let cases = [
        (
            "mobilenet_v3_small",
            ConvMethod::Tucker2,
            ConvRank::Ratio(0.5),
            "grouped conv",
        ),
        ("resnet20", ConvMethod::Cp, ConvRank::Fixed(8), "1×1 kernel"),
    ];
    for (name, method, rank, skip) in cases {
        let model = build(name);
        let config = ConvConfig {
            max_iter: 10,
            ..ConvConfig::new(method, rank)
        };
        let (out, report) = decompose_convs(&model.net, &config, &[], None).unwrap();
        let skipped: Vec<_> = report
            .layers
            .iter()
            .filter(|l| l.action.starts_with("skipped"))
            .collect();
        assert!(
            !skipped.is_empty() && skipped.iter().all(|l| l.action.contains(skip)),
            "{report}"
        );
        let done: Vec<_> = report.layers.iter().filter(|l| l.decomposed).collect();
        assert!(!done.is_empty(), "{report}");
        // Each decomposed conv became a chain `path.0`, `path.1`, … read where it was read.
        for l in &done {
            assert!(out.get(&l.path).is_none() && out.get(&format!("{}.0", l.path)).is_some());
        }
        assert!(report.params_after < report.params_before, "{report}");
        assert_eq!(out.forward(x.clone()).flatten().dims(), [2, 10]);
    }
}
