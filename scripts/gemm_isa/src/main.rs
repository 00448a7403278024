//! GFLOP/s of `gemm::gemm` on convolution-shaped products (out channels × pixels × in·kh·kw),
//! best of 5 timings of enough repetitions for ~1 s each, on rayon's pool.
#![allow(unsafe_code)]

use std::time::Instant;

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
    println!(
        "x86-v4 kernels compiled in: {}; {threads} threads",
        cfg!(feature = "v4")
    );
    for (m, n, k) in shapes {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let mut run = || {
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
        };
        for _ in 0..3 {
            run();
        }
        let flops = 2.0 * (m * n * k) as f64;
        let reps = ((2e9 / flops) as usize).clamp(3, 2000);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                run();
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        println!(
            "{m:>5} x {n:>5} x {k:>5}: {:8.3} ms  {:6.1} GFLOP/s",
            best * 1e3,
            flops / best / 1e9
        );
    }
}
