//! Every loss against values computed by hand (plain f64 arithmetic), the T² scaling, and that
//! no gradient reaches the teacher.

use burn::tensor::{Device, Int, Tensor, TensorData};
use fasterai_core::device::parse_device;
use fasterai_distill::losses::*;

fn device() -> Device {
    parse_device("flex").unwrap()
}

fn t2(rows: &[&[f32]], device: &Device) -> Tensor<2> {
    let cols = rows[0].len();
    let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), cols]), device)
}

fn t4(values: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(p, q)| p * (p / q).ln()).sum()
}

const S: [[f32; 3]; 2] = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]];
const T: [[f32; 3]; 2] = [[3.0, 2.0, 1.0], [0.0, 1.0, -0.5]];

fn logits(d: &Device) -> (Tensor<2>, Tensor<2>) {
    (t2(&[&S[0], &S[1]], d), t2(&[&T[0], &T[1]], d))
}

fn by_hand_kl(temperature: f64) -> f64 {
    (0..2)
        .map(|r| {
            let s: Vec<f64> = S[r].iter().map(|&v| v as f64 / temperature).collect();
            let t: Vec<f64> = T[r].iter().map(|&v| v as f64 / temperature).collect();
            kl(&softmax(&t), &softmax(&s))
        })
        .sum::<f64>()
        / 2.0
}

#[test]
fn soft_targets_mutual_and_mse_by_hand() {
    let d = device();
    let (s, t) = logits(&d);
    for temperature in [1.0, 2.0, 4.0] {
        let got = scalar(soft_target(s.clone(), t.clone(), temperature));
        let expected = temperature * temperature * by_hand_kl(temperature);
        assert!(
            (got - expected).abs() < 1e-5,
            "T={temperature}: {got} vs {expected}"
        );
    }
    assert!((scalar(mutual_kl(s.clone(), t.clone())) - by_hand_kl(1.0)).abs() < 1e-6);
    let mse: f64 = S
        .iter()
        .flatten()
        .zip(T.iter().flatten())
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / 6.0;
    assert!((scalar(logits_mse(s.clone(), t.clone())) - mse).abs() < 1e-6);
    // Identical outputs: nothing to learn.
    assert!(scalar(soft_target(s.clone(), s.clone(), 4.0)).abs() < 1e-6);
}

#[test]
fn decoupled_kd_by_hand() {
    let d = device();
    let (s, t) = logits(&d);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 1], [2]), &d);
    let (alpha, beta, temp) = (1.0, 8.0, 2.0);
    let got = scalar(decoupled(s, t, targets, alpha, beta, temp));
    let mut expected = 0.0;
    for (r, target) in [(0usize, 2usize), (1, 1)] {
        let ps = softmax(&S[r].iter().map(|&v| v as f64 / temp).collect::<Vec<_>>());
        let pt = softmax(&T[r].iter().map(|&v| v as f64 / temp).collect::<Vec<_>>());
        let bs = [ps[target], 1.0 - ps[target]];
        let bt = [pt[target], 1.0 - pt[target]];
        let rest = |z: &[f32; 3]| {
            softmax(
                &(0..3)
                    .filter(|&i| i != target)
                    .map(|i| z[i] as f64 / temp)
                    .collect::<Vec<_>>(),
            )
        };
        expected += alpha * kl(&bt, &bs) + beta * kl(&rest(&T[r]), &rest(&S[r]));
    }
    expected *= temp * temp / 2.0;
    assert!(
        (got - expected).abs() < 1e-4 * expected.max(1.0),
        "{got} vs {expected}"
    );
}

#[test]
fn feature_losses_by_hand() {
    let d = device();
    // One sample, two channels, 1×2 spatial.
    let s = t4(&[1.0, -2.0, 3.0, 0.0], [1, 2, 1, 2], &d);
    let t = t4(&[0.0, 1.0, 1.0, 1.0], [1, 2, 1, 2], &d);
    // Attention: channel mean of squares, L2-normalised.
    let norm = |a: [f64; 2]| {
        let n = (a[0] * a[0] + a[1] * a[1]).sqrt();
        [a[0] / n, a[1] / n]
    };
    let a_s = norm([(1.0 + 9.0) / 2.0, (4.0 + 0.0) / 2.0]);
    let a_t = norm([(0.0 + 1.0) / 2.0, (1.0 + 1.0) / 2.0]);
    let at = ((a_s[0] - a_t[0]).powi(2) + (a_s[1] - a_t[1]).powi(2)) / 2.0;
    assert!((scalar(attention_transfer(s.clone(), t.clone(), 2.0)) - at).abs() < 1e-6);

    let fit: f64 = [1.0, -3.0, 2.0, -1.0]
        .iter()
        .map(|v: &f64| v * v)
        .sum::<f64>()
        / 4.0;
    assert!((scalar(fitnet(s.clone(), t.clone())) - fit).abs() < 1e-6);

    // Activation boundaries, margin 1: teacher on (> 0) at positions 1, 2, 3.
    // s = [1, −2, 3, 0]: pos 0 teacher off, s > −1 → (1+1)² = 4; pos 1 on, s ≤ 1 → (−2−1)² = 9;
    // pos 2 on, s = 3 > 1 → 0; pos 3 on, s = 0 ≤ 1 → 1.
    assert!((scalar(activation_boundaries(s.clone(), t.clone(), 1.0)) - 14.0 / 4.0).abs() < 1e-6);

    // Similarity preserving on two samples of two features.
    let fs = t2(&[&[1.0, 0.0], &[1.0, 1.0]], &d);
    let ft = t2(&[&[0.0, 2.0], &[1.0, 0.0]], &d);
    let g = |f: [[f64; 2]; 2]| {
        let m = [
            [
                f[0][0] * f[0][0] + f[0][1] * f[0][1],
                f[0][0] * f[1][0] + f[0][1] * f[1][1],
            ],
            [
                f[1][0] * f[0][0] + f[1][1] * f[0][1],
                f[1][0] * f[1][0] + f[1][1] * f[1][1],
            ],
        ];
        m.map(|row| {
            let n = (row[0] * row[0] + row[1] * row[1]).sqrt();
            [row[0] / n, row[1] / n]
        })
    };
    let (gs, gt) = (g([[1.0, 0.0], [1.0, 1.0]]), g([[0.0, 2.0], [1.0, 0.0]]));
    let sp: f64 = (0..2)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .map(|(i, j)| (gs[i][j] - gt[i][j]).powi(2))
        .sum::<f64>()
        / 4.0;
    assert!((scalar(similarity_preserving(fs, ft)) - sp).abs() < 1e-6);
}

#[test]
fn gradients_reach_the_student_only() {
    let ad = device().autodiff();
    let s = t2(&[&S[0], &S[1]], &ad).require_grad();
    let t = t2(&[&T[0], &T[1]], &ad).require_grad();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 1], [2]), &ad);
    let feats = |v: &[f32]| t4(v, [1, 2, 1, 2], &ad).require_grad();
    let (fs, ft) = (feats(&[1.0, -2.0, 3.0, 0.0]), feats(&[0.0, 1.0, 1.0, 1.0]));
    let losses: Vec<Tensor<1>> = vec![
        soft_target(s.clone(), t.clone(), 4.0),
        mutual_kl(s.clone(), t.clone()),
        logits_mse(s.clone(), t.clone()),
        decoupled(s.clone(), t.clone(), targets, 1.0, 8.0, 4.0),
    ];
    for loss in losses {
        let grads = loss.backward();
        assert!(s.grad(&grads).is_some());
        assert!(t.grad(&grads).is_none(), "a gradient reached the teacher");
    }
    for loss in [
        attention_transfer(fs.clone(), ft.clone(), 2.0),
        fitnet(fs.clone(), ft.clone()),
        activation_boundaries(fs.clone(), ft.clone(), 1.0),
    ] {
        let grads = loss.backward();
        assert!(fs.grad(&grads).is_some());
        assert!(ft.grad(&grads).is_none(), "a gradient reached the teacher");
    }
    // T² keeps the gradient's size comparable across temperatures (Hinton et al.): without it
    // the gradient at T = 8 would be ~64× smaller than at T = 1.
    let grad_norm = |temperature: f64| {
        let s = t2(&[&S[0], &S[1]], &ad).require_grad();
        let g = s
            .grad(&soft_target(s.clone(), t.clone(), temperature).backward())
            .unwrap();
        g.square().sum().sqrt().into_scalar::<f32>() as f64
    };
    let ratio = grad_norm(8.0) / grad_norm(1.0);
    assert!(ratio > 0.1 && ratio < 10.0, "{ratio}");
}

#[test]
fn decoupled_kd_gradient_matches_finite_differences() {
    let d = parse_device("flex").unwrap().autodiff();
    let s0 = vec![0.3f32, -0.2, 0.5, 0.1, -0.4];
    let t = Tensor::<2>::from_data(
        TensorData::new(vec![0.1f32, 0.4, -0.3, 0.2, 0.0], [1, 5]),
        &d,
    );
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64], [1]), &d);
    let at = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, 5]), &d);
    let loss = |s: Tensor<2>| decoupled(s, t.clone(), y.clone(), 1.0, 8.0, 4.0);
    let s = at(&s0).require_grad();
    let grad = s.grad(&loss(s.clone()).backward()).unwrap();
    let grad = grad.into_data().try_to_vec::<f32>().unwrap();
    for i in 0..5 {
        let (mut up, mut down) = (s0.clone(), s0.clone());
        up[i] += 1e-2;
        down[i] -= 1e-2;
        let numeric = (scalar(loss(at(&up))) - scalar(loss(at(&down)))) / 2e-2;
        assert!(
            (grad[i] as f64 - numeric).abs() < 2e-3 * (1.0 + numeric.abs()),
            "{i}: {} vs {numeric}",
            grad[i]
        );
    }
}
