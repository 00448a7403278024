#![allow(missing_docs)] // criterion_group! generates an undocumented function
//! Criterion benchmarks of the factorisations, at the sizes issue 4 names (reference timings:
//! PyTorch 2.9 / tensorly 0.10 on two cores):
//!
//! - `svd/4096x25088/{full,gram}/k=…`: truncated SVD of VGG16's first classifier weight
//!   (PyTorch's full SVD: 91 s). Slow: about 25 s per sample, ten samples each.
//! - `cp_als/256x256x3x3/rank64/10-sweeps` (tensorly: 80 ms per sweep, error 0.9437 after 100).
//! - `tucker2/256x256x3x3/rank64/10-iters` (tensorly: 0.51 s, error 0.8932).
//!
//! The errors reached are printed once before timing. Run one group with e.g.
//! `cargo bench -p fasterai --bench decompose -- cp_als`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fasterai::core::linalg::{SvdMethod, truncated_svd};
use fasterai::decompose::cp::{CpConfig, cp_als};
use fasterai::decompose::tucker::tucker2;
use ndarray::{Array2, Array4};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Standard-normal entries (Box–Muller), seeded.
fn normal(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// Runs `f` on the first call only: criterion calls a benchmark's closure once per sample, and
/// only for the benchmarks the command-line filter selects.
fn once(f: impl FnOnce()) -> impl FnMut() {
    let mut f = Some(f);
    move || {
        if let Some(f) = f.take() {
            f()
        }
    }
}

fn conv_weight() -> Array4<f32> {
    Array4::from_shape_vec((256, 256, 3, 3), normal(256 * 256 * 9, 0)).expect("sizes match")
}

fn cp(c: &mut Criterion) {
    let w = conv_weight();
    let ten = CpConfig {
        max_iter: 10,
        tol: 0.0,
        ..CpConfig::default()
    };
    let mut group = c.benchmark_group("cp_als/256x256x3x3/rank64");
    group.sample_size(10);
    let mut report = once(|| {
        let full = cp_als(&w, 64, CpConfig::default()).expect("valid rank");
        eprintln!(
            "cp_als rank 64: error {:.4} after {} sweeps",
            full.errors.last().expect("sweeps ran"),
            full.errors.len()
        );
    });
    group.bench_function("10-sweeps", |b| {
        report();
        b.iter(|| cp_als(&w, 64, ten))
    });
    group.finish();
}

fn tucker(c: &mut Criterion) {
    let w = conv_weight();
    let mut group = c.benchmark_group("tucker2/256x256x3x3/rank64");
    group.sample_size(10);
    let mut report = once(|| {
        let t = tucker2(&w, [64, 64], 10, 0.0).expect("valid ranks");
        eprintln!(
            "tucker2 [64, 64]: error {:.4} after {} HOOI iterations",
            t.errors.last().expect("HOSVD ran"),
            t.errors.len() - 1
        );
    });
    group.bench_function("10-iters", |b| {
        report();
        b.iter(|| tucker2(&w, [64, 64], 10, 0.0))
    });
    group.finish();
}

fn svd(c: &mut Criterion) {
    let a = std::cell::OnceCell::new();
    let a = || {
        a.get_or_init(|| {
            Array2::from_shape_vec((4096, 25088), normal(4096 * 25088, 1)).expect("sizes match")
        })
    };
    let mut group = c.benchmark_group("svd/4096x25088");
    group.sample_size(10);
    for k in [2048, 256] {
        for (name, method) in [("full", SvdMethod::Full), ("gram", SvdMethod::Gram)] {
            let mut report = once(|| {
                let error = truncated_svd(a(), k, method)
                    .expect("valid rank")
                    .relative_error;
                eprintln!("svd {name} k={k}: relative error {error:.6}");
            });
            group.bench_function(BenchmarkId::new(name, format!("k={k}")), |b| {
                report();
                b.iter(|| truncated_svd(a(), k, method))
            });
        }
    }
    group.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default();
    targets = cp, tucker, svd
);
criterion_main!(benches);
