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
