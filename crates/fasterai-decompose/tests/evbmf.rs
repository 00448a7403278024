//! EVBMF against the reference implementation's numbers (`shared/reference/evbmf`).

use fasterai_core::linalg::singular_values;
use fasterai_core::testing::Reference;
use fasterai_decompose::evbmf::{DEFAULT_XATOL, evbmf};
use ndarray::Array2;

fn check(
    r: &Reference,
    name: &str,
    rows: usize,
    cols: usize,
    singular: &[f64],
    summary: &serde_json::Value,
) {
    let result = evbmf(singular, rows, cols, DEFAULT_XATOL);
    let expected_rank = summary["rank"].as_u64().unwrap() as usize;
    assert_eq!(result.rank, expected_rank, "{name}");
    // Same bounded minimisation, same tolerance: the same σ² and threshold.
    let sigma2 = summary["sigma2"].as_f64().unwrap();
    assert!(
        (result.sigma2 - sigma2).abs() <= 1e-6 * sigma2.max(1e-12) + 1e-9,
        "{name}: σ² {} vs {sigma2}",
        result.sigma2
    );
    let threshold = summary["threshold"].as_f64().unwrap();
    assert!(
        (result.threshold - threshold).abs() <= 1e-5 * threshold,
        "{name}: {} vs {threshold}",
        result.threshold
    );
    // A tight tolerance changes σ² a little and the rank not at all.
    assert_eq!(
        evbmf(singular, rows, cols, 1e-14).rank,
        expected_rank,
        "{name} (xatol 1e-14)"
    );
    let (_, shrunk) = r.values(&format!("{name}_evbmf_d"));
    assert_eq!(shrunk.len(), expected_rank);
    for (a, b) in result.shrunk.iter().zip(shrunk) {
        assert!((a - b).abs() <= 1e-4 * b.abs(), "{name}: shrunk {a} vs {b}");
    }
}

fn summary(name: &str) -> serde_json::Value {
    let dir = fasterai_core::testing::shared_dir().unwrap();
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference/summary.json")).unwrap())
            .unwrap();
    all["evbmf"][name].clone()
}

#[test]
fn matches_reference_ranks_8_0_24() {
    let Some(r) = Reference::open("evbmf") else {
        return;
    };
    for (name, rows, cols) in [
        ("m1_rank8_plus_noise_64x256", 64, 256),
        ("m2_pure_noise_96x400", 96, 400),
        ("m3_decaying_spectrum_128x1152", 128, 1152),
    ] {
        // From our own SVD of the stored matrix.
        let (shape, values) = r.values(name);
        assert_eq!(shape, [rows, cols]);
        let a = Array2::from_shape_vec((rows, cols), values.iter().map(|&v| v as f32).collect())
            .unwrap();
        let s = singular_values(&a).unwrap();
        check(&r, name, rows, cols, &s, &summary(name));
        // Transposed input gives the same answer.
        assert_eq!(
            evbmf(&s, cols, rows, DEFAULT_XATOL).rank,
            evbmf(&s, rows, cols, DEFAULT_XATOL).rank
        );
    }
}

#[test]
fn conv_weight_unfoldings_give_ranks_12_and_6() {
    let Some(r) = Reference::open("evbmf") else {
        return;
    };
    let (shape, w) = r.values("conv_weight_64x32x3x3");
    assert_eq!(shape, [64, 32, 3, 3]);
    // Mode-0 unfolding: rows = out channels; mode-1: rows = in channels (tensorly's order).
    let mode0 = Array2::from_shape_fn((64, 288), |(o, j)| w[o * 288 + j] as f32);
    let mode1 = Array2::from_shape_fn((32, 576), |(i, j)| {
        let (o, k) = (j / 9, j % 9);
        w[o * 288 + i * 9 + k] as f32
    });
    check(
        &r,
        "conv_unfold0_64x288",
        64,
        288,
        &singular_values(&mode0).unwrap(),
        &summary("conv_unfold0_64x288"),
    );
    check(
        &r,
        "conv_unfold1_32x576",
        32,
        576,
        &singular_values(&mode1).unwrap(),
        &summary("conv_unfold1_32x576"),
    );
}

#[test]
fn a_single_row_is_all_noise_not_a_panic() {
    // One singular value: the whole spectrum is the tail, σ² = s²/M, and the threshold
    // s·√xubar lies above s (as the reference computes for L = 1).
    for (rows, cols) in [(1, 9), (9, 1)] {
        let e = evbmf(&[3.0], rows, cols, DEFAULT_XATOL);
        assert_eq!(e.rank, 0);
        assert!((e.sigma2 - 1.0).abs() < 1e-6, "{}", e.sigma2);
    }
}
