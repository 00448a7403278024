//! Rank estimation by empirical variational Bayesian matrix factorisation (EVBMF; Nakajima,
//! Sugiyama, Babacan & Tomioka, "Global analytic solution of fully-observed variational Bayesian
//! matrix factorization", JMLR 2013).
//!
//! For an `L×M` matrix `Y = signal + N(0, σ²)` noise, the analytic VB solution keeps exactly the
//! singular values above a threshold that depends on `σ²`; σ² itself is chosen by minimising the
//! free energy over a bracket. This is the rule seed 002's conv decomposition uses to pick
//! Tucker ranks from the mode-0 and mode-1 unfoldings of a conv weight.

/// The outcome of [`evbmf`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evbmf {
    /// Number of singular values kept.
    pub rank: usize,
    /// Estimated noise variance.
    pub sigma2: f64,
    /// Singular values above this are kept.
    pub threshold: f64,
    /// The VB-shrunk values of the kept singular values.
    pub shrunk: Vec<f64>,
}

/// Absolute tolerance on σ² of the bounded minimisation (scipy's `minimize_scalar(method =
/// 'bounded')` default, which the reference implementation uses).
pub const DEFAULT_XATOL: f64 = 1e-5;

/// EVBMF on the singular values (descending) of an `rows×cols` matrix, minimising the free
/// energy to an absolute tolerance `xatol` on σ². The matrix is taken with its shorter side as
/// `L` (the reference requires callers to transpose; here either orientation gives the same).
pub fn evbmf(singular_values: &[f64], rows: usize, cols: usize, xatol: f64) -> Evbmf {
    let (l, m) = (rows.min(cols) as f64, rows.max(cols) as f64);
    let h = singular_values.len().min(rows.min(cols));
    let s = &singular_values[..h];
    let alpha = l / m;
    let tau_bar = 2.5129 * alpha.sqrt();
    let xubar = (1.0 + tau_bar) * (1.0 + alpha / tau_bar);

    // Bracket for σ² (upper: all energy is noise; lower: the tail beyond the largest possible
    // signal rank is noise).
    let upper = s.iter().map(|v| v * v).sum::<f64>() / (l * m);
    // Largest possible signal rank, minus one; −1 for a single row or column (the whole
    // spectrum is then the tail, as in the reference).
    let eh_ub = ((l / (1.0 + alpha)).ceil() - 1.0).min(h as f64) as isize - 1;
    let tail = &s[((eh_ub + 1) as usize).min(h)..];
    let lower = if tail.is_empty() {
        0.0
    } else {
        let first = tail[0] * tail[0] / (m * xubar);
        let mean = tail.iter().map(|v| v * v).sum::<f64>() / tail.len() as f64 / m;
        first.max(mean)
    };

    let free_energy = |sigma2: f64| -> f64 {
        let mut energy = 0.0;
        for &sv in s {
            let x = sv * sv / (m * sigma2);
            if x > xubar {
                let b = x - (1.0 + alpha);
                let tau = 0.5 * (b + (b * b - 4.0 * alpha).sqrt());
                energy += x - tau + ((tau + 1.0) / x).ln() + alpha * (tau / alpha + 1.0).ln();
            } else {
                energy += x - x.ln();
            }
        }
        energy
    };
    let sigma2 = bounded_minimum(free_energy, lower, upper, xatol);

    let threshold = (m * sigma2 * xubar).sqrt();
    let rank = s.iter().filter(|&&v| v > threshold).count();
    let shrunk = s[..rank]
        .iter()
        .map(|&v| {
            let a = 1.0 - (l + m) * sigma2 / (v * v);
            v / 2.0 * (a + (a * a - 4.0 * l * m * sigma2 * sigma2 / v.powi(4)).sqrt())
        })
        .collect();
    Evbmf {
        rank,
        sigma2,
        threshold,
        shrunk,
    }
}

/// Brent's method for a minimum of `f` on `[a, b]` (golden-section steps, parabolic
/// interpolation when it behaves), stopping when the bracket is within `xatol` plus a relative
/// `√ε` of the best point.
fn bounded_minimum(f: impl Fn(f64) -> f64, mut a: f64, mut b: f64, xatol: f64) -> f64 {
    const MAX_EVALUATIONS: usize = 500;
    let sqrt_eps = f64::EPSILON.sqrt();
    let golden = 0.5 * (3.0 - 5f64.sqrt());
    // best (x, fx), second best (w, fw), previous second best (v, fv)
    let mut v = a + golden * (b - a);
    let (mut w, mut x) = (v, v);
    let mut fx = f(x);
    let (mut fv, mut fw) = (fx, fx);
    let (mut step, mut last_step) = (0.0f64, 0.0f64);
    let mut evaluations = 1;
    loop {
        let mid = 0.5 * (a + b);
        let tol1 = sqrt_eps * x.abs() + xatol / 3.0;
        let tol2 = 2.0 * tol1;
        if (x - mid).abs() <= tol2 - 0.5 * (b - a) || evaluations >= MAX_EVALUATIONS {
            return x;
        }
        let mut use_golden = true;
        if last_step.abs() > tol1 {
            // Parabola through (v, fv), (w, fw), (x, fx).
            let r = (x - w) * (fx - fv);
            let mut q = (x - v) * (fx - fw);
            let mut p = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            }
            q = q.abs();
            let older = last_step;
            last_step = step;
            if p.abs() < (0.5 * q * older).abs() && p > q * (a - x) && p < q * (b - x) {
                step = p / q;
                let u = x + step;
                if u - a < tol2 || b - u < tol2 {
                    step = if mid >= x { tol1 } else { -tol1 };
                }
                use_golden = false;
            }
        }
        if use_golden {
            last_step = if x >= mid { a - x } else { b - x };
            step = golden * last_step;
        }
        let u = x + if step >= 0.0 {
            step.abs().max(tol1)
        } else {
            -step.abs().max(tol1)
        };
        let fu = f(u);
        evaluations += 1;
        if fu <= fx {
            if u >= x {
                a = x;
            } else {
                b = x;
            }
            (v, fv) = (w, fw);
            (w, fw) = (x, fx);
            (x, fx) = (u, fu);
        } else {
            if u < x {
                a = u;
            } else {
                b = u;
            }
            if fu <= fw || w == x {
                (v, fv) = (w, fw);
                (w, fw) = (u, fu);
            } else if fu <= fv || v == x || v == w {
                (v, fv) = (u, fu);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brent_finds_a_parabola_minimum() {
        let x = bounded_minimum(|x| (x - 0.3).powi(2) + 1.0, 0.0, 2.0, 1e-10);
        assert!((x - 0.3).abs() < 1e-7, "{x}");
        // Minimum at the boundary.
        let x = bounded_minimum(|x| x, 1.0, 2.0, 1e-8);
        assert!((x - 1.0).abs() < 1e-6, "{x}");
    }
}
