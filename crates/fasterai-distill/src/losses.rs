//! The distillation losses, as functions of student and teacher tensors. Each returns a scalar
//! tensor (`[1]`); the teacher's side is detached so no gradient reaches it.
//!
//! Logit losses take `[B, classes]`; feature losses take activations `[B, C, H, W]` (or
//! `[B, F]` where noted) from the layers the user names.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

/// Hinton et al. (2015): `T² · KL(softmax(t/T) ‖ softmax(s/T))`, averaged over the batch. The
/// `T²` keeps the gradient's scale independent of the temperature.
pub fn soft_target(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    kl_batchmean(student / temperature, teacher.detach() / temperature)
        * (temperature * temperature)
}

/// `KL(softmax(t) ‖ softmax(s))` averaged over the batch: soft targets at `T = 1` without
/// scaling (fasterai's mutual loss).
pub fn mutual_kl(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    kl_batchmean(student, teacher.detach())
}

/// Mean squared difference of the logits (Ba & Caruana, 2014).
pub fn logits_mse(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    (student - teacher.detach()).square().mean()
}

/// `Σ_i p_t,i (ln p_t,i − ln p_s,i)` averaged over rows, from logits.
fn kl_batchmean(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let [batch, _] = student.dims();
    let log_p_s = log_softmax(student, 1);
    let log_p_t = log_softmax(teacher, 1);
    let p_t = log_p_t.clone().exp();
    (p_t * (log_p_t - log_p_s)).sum() / batch as f64
}

/// Decoupled KD (Zhao et al., 2022): `α·TCKD + β·NCKD`, both scaled by `T²`. TCKD is the KL
/// of the binary (target, rest) distributions; NCKD the KL among the non-target classes
/// (the target logit masked out).
pub fn decoupled(
    student: Tensor<2>,
    teacher: Tensor<2>,
    targets: Tensor<1, Int>,
    alpha: f64,
    beta: f64,
    temperature: f64,
) -> Tensor<1> {
    let [batch, classes] = student.dims();
    let teacher = teacher.detach();
    let mask: Tensor<2> = targets.one_hot::<2>(classes).float();
    let rest = mask.clone().neg() + 1.0;
    let p_s = softmax(student.clone() / temperature, 1);
    let p_t = softmax(teacher.clone() / temperature, 1);
    let binary = |p: Tensor<2>| {
        let target = (p.clone() * mask.clone()).sum_dim(1);
        let other = (p * rest.clone()).sum_dim(1);
        Tensor::cat(vec![target, other], 1).clamp_min(1e-12)
    };
    let (b_s, b_t) = (binary(p_s), binary(p_t));
    let tckd = (b_t.clone() * (b_t.log() - b_s.log())).sum() / batch as f64;
    // Non-target distributions: push the target logit far down before the softmax.
    let masked = |logits: Tensor<2>| logits / temperature - mask.clone() * 1000.0;
    let nckd = kl_batchmean(masked(student), masked(teacher));
    (tckd * alpha + nckd * beta) * (temperature * temperature)
}

/// Attention map of Zagoruyko & Komodakis (2017): the channel mean of `|f|^p`, flattened and
/// L2-normalised per sample. `[B, C, H, W]` → `[B, H·W]`.
pub fn attention_map(features: Tensor<4>, p: f64) -> Tensor<2> {
    let [batch, _, h, w] = features.dims();
    let a = features
        .abs()
        .powf_scalar(p)
        .mean_dim(1)
        .reshape([batch, h * w]);
    let norm = a.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    a / norm
}

/// Attention transfer: mean squared difference of the attention maps (same `H×W` needed,
/// any channel counts).
pub fn attention_transfer(student: Tensor<4>, teacher: Tensor<4>, p: f64) -> Tensor<1> {
    (attention_map(student, p) - attention_map(teacher.detach(), p))
        .square()
        .mean()
}

/// FitNet hints (Romero et al., 2015): mean squared difference of (adapted) features.
pub fn fitnet(student: Tensor<4>, teacher: Tensor<4>) -> Tensor<1> {
    (student - teacher.detach()).square().mean()
}

/// Similarity preserving (Tung & Mori, 2019): the batch's row-normalised Gram matrices of the
/// flattened features should agree; `‖G_s − G_t‖²_F / B²`.
pub fn similarity_preserving(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let [batch, _] = student.dims();
    let gram = |f: Tensor<2>| {
        let g = f.clone().matmul(f.transpose());
        let norm = g.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        g / norm
    };
    (gram(student) - gram(teacher.detach())).square().sum() / (batch * batch) as f64
}

/// Activation boundaries (Heo et al., 2019): a hinge that makes each student neuron active
/// (`> margin`) where the teacher's is, and inactive (`< −margin`) where it is not.
pub fn activation_boundaries(student: Tensor<4>, teacher: Tensor<4>, margin: f64) -> Tensor<1> {
    let teacher = teacher.detach();
    let on = teacher.clone().greater_elem(0.0).float();
    let off = on.clone().neg() + 1.0;
    let push_down =
        (student.clone() + margin).square() * student.clone().greater_elem(-margin).float() * off;
    let push_up =
        (student.clone() - margin).square() * student.lower_equal_elem(margin).float() * on;
    (push_down + push_up).mean()
}
