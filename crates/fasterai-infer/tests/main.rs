//! fasterai-infer's integration tests, in one binary (each test binary links Burn): the
//! engine's outputs against the graph it prepares, on every path each kernel can take.

mod engine;
mod families;
mod kernels;
mod transformer;

use burn::tensor::{Distribution, Tensor, TensorData};
use fasterai_core::prelude::*;
use fasterai_infer::{ConvPath, Inference, Isa, PathChoice};

/// The flex device.
pub fn flex() -> Device {
    parse_device("flex").unwrap()
}

/// Every way the engine can choose paths: measured, by rule, and each path forced.
pub fn choices() -> Vec<PathChoice> {
    let mut all = vec![PathChoice::Measure, PathChoice::Rules];
    all.extend(ConvPath::ALL.map(PathChoice::Force));
    all
}

/// Runs `check` with the engine's loops forced to each instruction set this CPU has (a note
/// for each it lacks), then goes back to the widest. Tests running beside it meanwhile take
/// whichever is forced: every one must give the same outputs.
pub fn for_each_isa(mut check: impl FnMut(Isa)) {
    for isa in Isa::ALL {
        if Isa::force(isa).is_err() {
            eprintln!(
                "note: this CPU lacks {}: its kernels are not run here",
                isa.name()
            );
            continue;
        }
        check(isa);
    }
    Isa::force(Isa::best()).unwrap();
}

/// `net`'s outputs on `x` prepared with `choice`, and the graph's own.
pub fn both(net: &Graph, x: Tensor<4>, choice: PathChoice) -> (Inference, Tensor<2>, Tensor<2>) {
    let prepared = Inference::with_choice(net.clone(), &flex(), choice);
    let fast = prepared.forward(x.clone()).flatten();
    let reference = net.forward(x).flatten();
    (prepared, fast, reference)
}

/// A batch of standard normal values.
pub fn normal(input: [usize; 4]) -> Tensor<4> {
    Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &flex())
}

/// NaN and ±∞ at scattered places of a random batch.
pub fn with_non_finite(input: [usize; 4]) -> Tensor<4> {
    let mut values = normal(input).into_data().try_to_vec::<f32>().unwrap();
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    for (k, i) in (0..values.len()).step_by(37).enumerate() {
        values[i] = specials[k % 3];
    }
    Tensor::from_data(TensorData::new(values, input), &flex())
}

/// Equal non-finite values at the same places (NaN where NaN, the same infinity where one),
/// finite values equal up to rounding.
pub fn assert_same_non_finite(fast: Tensor<2>, plain: Tensor<2>, what: &str) {
    let (a, b) = (
        fast.into_data().try_to_vec::<f32>().unwrap(),
        plain.into_data().try_to_vec::<f32>().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{what}: output sizes");
    assert!(
        b.iter().any(|v| !v.is_finite()),
        "{what}: the case tests nothing"
    );
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = if y.is_finite() {
            (x - y).abs() <= 1e-4 * (1.0 + y.abs())
        } else {
            x.is_nan() == y.is_nan() && (y.is_nan() || x == y)
        };
        assert!(same, "{what}: element {i} is {x}, the graph gives {y}");
    }
}
