//! Tucker-2 (HOSVD + HOOI) against tensorly's `partial_tucker` (`shared/reference/conv_decomp`).

use fasterai_core::testing::Reference;
use fasterai_decompose::tucker::tucker2;
use ndarray::Array4;

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

#[test]
fn tucker_conv_layers_reproduce_the_reference_output() {
    use burn::module::Param;
    use fasterai_core::graph::{Activation, InitScheme, Layer, LayerSpec, Sequential};
    use fasterai_decompose::conv::{ConvRank, tucker_convs};

    let Some(r) = Reference::open("conv_decomp") else {
        return;
    };
    let d = fasterai_core::device::parse_device("flex").unwrap();
    let Layer::Conv2d(mut conv) =
        Layer::from_spec(&LayerSpec::conv3x3(16, 32), InitScheme::PyTorchDefault, &d)
    else {
        unreachable!()
    };
    conv.weight = Param::from_tensor(r.tensor("weight", &d));
    conv.bias = Some(Param::from_tensor(r.tensor("bias", &d)));
    let net = Sequential::indexed([Layer::Conv2d(conv)]);
    let x: burn::tensor::Tensor<4> = r.tensor("x", &d);
    let (out, report) = tucker_convs(
        &net,
        ConvRank::Fixed(8),
        &[],
        Some(Activation::Spatial(x.clone())),
    )
    .unwrap();
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
    let y = out.forward(x).into_spatial().unwrap();
    let reference: burn::tensor::Tensor<4> = r.tensor("y_tucker", &d);
    let e = fasterai_core::testing::relative_max_diff(y, reference);
    assert!(e < 0.05, "against tensorly's Tucker conv output: {e}");
}
