//! Which vector instructions the engine's own loops (activations, depthwise, Winograd
//! transforms, pooling) run with: the widest the CPU has, or the one `FASTERAI_ISA` or
//! [`Isa::force`] names, so that tests and benchmarks can take every path the CPU can run. The
//! loops are plain Rust compiled once per instruction set (`pulp`); matrix products are the
//! `gemm` crate's, which picks AVX-512 or AVX2 for itself.

use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;

/// An instruction set the engine's loops are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64): no run-time detection needed.
    Baseline,
    /// AVX2 with FMA (x86-64-v3).
    Avx2,
    /// AVX-512 F/BW/CD/DQ/VL (x86-64-v4).
    Avx512,
}

/// 0: not chosen yet; otherwise `Isa as u8 + 1`.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

impl Isa {
    /// Every instruction set, narrowest first.
    pub const ALL: [Isa; 3] = [Isa::Baseline, Isa::Avx2, Isa::Avx512];

    /// The name `FASTERAI_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this CPU (and this build) can run it.
    pub fn available(self) -> bool {
        match self {
            Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => pulp::x86::V3::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => pulp::x86::V4::try_new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 => false,
        }
    }

    /// The widest instruction set this CPU can run.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|isa| isa.available())
            .unwrap_or(Isa::Baseline)
    }

    /// The instruction set in use: the forced one, else `FASTERAI_ISA`'s when valid, else the
    /// widest (read once per process).
    pub fn current() -> Isa {
        match CHOSEN.load(Ordering::Relaxed) {
            0 => {
                let isa = Isa::from_env().ok().flatten().unwrap_or_else(Isa::best);
                // A concurrent `force` wins over this first read.
                let _ =
                    CHOSEN.compare_exchange(0, isa as u8 + 1, Ordering::Relaxed, Ordering::Relaxed);
                Isa::ALL[CHOSEN.load(Ordering::Relaxed) as usize - 1]
            }
            code => Isa::ALL[code as usize - 1],
        }
    }

    /// Runs the engine's loops with `isa` from now on, in every thread; an error says so when
    /// the CPU lacks it.
    pub fn force(isa: Isa) -> Result<(), String> {
        if !isa.available() {
            return Err(format!(
                "this CPU cannot run {} (it has: {})",
                isa.name(),
                Isa::names_available()
            ));
        }
        CHOSEN.store(isa as u8 + 1, Ordering::Relaxed);
        Ok(())
    }

    /// `FASTERAI_ISA`'s instruction set: see [`parse`](Self::parse); unset is `None`.
    pub fn from_env() -> Result<Option<Isa>, String> {
        match std::env::var("FASTERAI_ISA") {
            Err(_) => Ok(None),
            Ok(name) => Isa::parse(&name),
        }
    }

    /// A name as `FASTERAI_ISA` takes it: empty or `auto` is `None` (the widest); `baseline`,
    /// `avx2` or `avx512` must be one this CPU has.
    pub fn parse(name: &str) -> Result<Option<Isa>, String> {
        if name.is_empty() || name == "auto" {
            return Ok(None);
        }
        let isa = Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == name)
            .ok_or_else(|| {
                format!("FASTERAI_ISA={name}: expected auto, baseline, avx2 or avx512")
            })?;
        if isa.available() {
            Ok(Some(isa))
        } else {
            Err(format!(
                "FASTERAI_ISA={name}: this CPU cannot run it (it has: {})",
                Isa::names_available()
            ))
        }
    }

    fn names_available() -> String {
        let names: Vec<_> = Isa::ALL
            .into_iter()
            .filter(|isa| isa.available())
            .map(Isa::name)
            .collect();
        names.join(", ")
    }
}

/// Runs `op` compiled for the instruction set in use ([`Isa::current`]).
#[inline(always)]
pub(crate) fn dispatch<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    use pulp::Simd;
    match Isa::current() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => match pulp::x86::V4::try_new() {
            Some(simd) => Simd::vectorize(simd, op),
            None => op.with_simd(pulp::Scalar::new()),
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => match pulp::x86::V3::try_new() {
            Some(simd) => Simd::vectorize(simd, op),
            None => op.with_simd(pulp::Scalar::new()),
        },
        _ => op.with_simd(pulp::Scalar::new()),
    }
}

/// Runs `f` inside a function compiled for the instruction set in use, so that its loops
/// (inlined there) vectorise with that set's registers.
#[inline(always)]
pub(crate) fn vectorize<R>(f: impl FnOnce() -> R) -> R {
    struct Call<F>(F);
    impl<R, F: FnOnce() -> R> pulp::WithSimd for Call<F> {
        type Output = R;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) -> R {
            (self.0)()
        }
    }
    dispatch(Call(f))
}

/// Independent accumulators of [`sum_of`] and [`dot_of`], which the compiler keeps in vector registers.
const SUM_LANES: usize = 16;

/// `Σ f(x)`, lane by lane (a plain float sum does not vectorise: its order is fixed).
#[inline(always)]
pub(crate) fn sum_of(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; SUM_LANES];
    let chunks = x.chunks_exact(SUM_LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a·b`, lane by lane.
#[inline(always)]
pub(crate) fn dot_of(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; SUM_LANES];
    let (ca, cb) = (a.chunks_exact(SUM_LANES), b.chunks_exact(SUM_LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (ca, cb) in ca.zip(cb) {
        for ((acc, a), b) in acc.iter_mut().zip(ca).zip(cb) {
            *acc += a * b;
        }
    }
    acc.iter().sum::<f32>() + tail
}
