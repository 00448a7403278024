//! GFLOP/s of three f32 GEMMs on convolution-shaped products (out channels × pixels ×
//! in·kh·kw, weights as the left matrix): `gemm::gemm` (the engine's), and `rten-gemm` with
//! the weights as given and packed ahead (`prepack_a`, as an engine would pack them once).
//! Best of 5 timings of enough repetitions for ~1 s each, on rayon's pool; checks that the
//! three products agree.
#![allow(unsafe_code)]

use std::time::Instant;

use rten_gemm::{GemmExecutor, GemmInputA, GemmInputB, GemmOptions};
use rten_tensor::NdTensorView;

/// Seconds per call of `run`, best of 5 timings.
fn time(flops: f64, mut run: impl FnMut()) -> f64 {
    for _ in 0..3 {
        run();
    }
    let reps = ((2e9 / flops) as usize).clamp(3, 2000);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            run();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn main() {
    let shapes = [
        (64, 50176, 27),
        (128, 12544, 576),
        (256, 3136, 1152),
        (512, 784, 2304),
        (512, 196, 4608),
        (64, 3136, 64),
        (256, 3136, 64),
        (16, 1024, 144),
        (64, 64, 576),
        (4096, 1, 25088),
    ];
    let threads = rayon::current_num_threads();
    let rten = GemmExecutor::<f32>::default();
    println!(
        "gemm's x86-v4 kernels compiled in: {}; rten-gemm kernel {}; {threads} threads",
        cfg!(feature = "v4"),
        rten.kernel_name()
    );
    println!("| m × n × k | gemm (GFLOP/s) | rten-gemm | rten-gemm, A packed ahead |");
    println!("|---|---:|---:|---:|");
    for (m, n, k) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 7) as f32 - 3.0) * 0.125).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 5) as f32 - 2.0) * 0.25).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let t_gemm = time(flops, || {
            // SAFETY: a is m×k, b is k×n and c is m×n, all row-major and dense.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(threads),
                )
            }
        });
        let want = c.clone();
        let av = NdTensorView::from_data([m, k], &a[..]);
        let bv = NdTensorView::from_data([k, n], &b[..]);
        let mut d = vec![0f32; m * n];
        let t_rten = time(flops, || {
            rten.gemm(
                &mut d,
                GemmInputA::Unpacked(av.view()),
                GemmInputB::Unpacked(bv.view()),
                GemmOptions::default(),
            )
            .unwrap()
        });
        let packed = rten.prepack_a(av.view());
        let mut e = vec![0f32; m * n];
        let t_packed = time(flops, || {
            rten.gemm(
                &mut e,
                GemmInputA::Packed(&packed),
                GemmInputB::Unpacked(bv.view()),
                GemmOptions::default(),
            )
            .unwrap()
        });
        // Small integers times powers of two: every sum is exact in f32, whatever the order.
        assert!(d == want && e == want, "{m}×{n}×{k}: the products differ");
        let gf = |t: f64| flops / t / 1e9;
        println!(
            "| {m} × {n} × {k} | {:.1} | {:.1} | {:.1} |",
            gf(t_gemm),
            gf(t_rten),
            gf(t_packed)
        );
    }
}
