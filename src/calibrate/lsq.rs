//! Least squares for the fits: a straight line, two regressors without intercept, and a
//! small damped Gauss-Newton (Levenberg-Marquardt) for a few bounded parameters, plus the
//! quality numbers every fit reports.

use serde::Serialize;

/// How well predictions match observations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Quality {
    /// Observations.
    pub n: usize,
    /// Coefficient of determination, `1 - SS_res / SS_tot` (1 is perfect; can be negative).
    pub r2: f64,
    /// Root mean square of the residuals (observed - predicted), same unit as the data.
    pub rms: f64,
    /// Largest absolute residual.
    pub max_abs: f64,
    /// Mean of `|residual| / observed`, percent.
    pub mape_pct: f64,
}

/// Quality of `pred` against `obs` (same length, at least one).
pub fn quality(obs: &[f64], pred: &[f64]) -> Quality {
    let n = obs.len();
    if n == 0 {
        return Quality::default();
    }
    let mean = obs.iter().sum::<f64>() / n as f64;
    let ss_tot: f64 = obs.iter().map(|y| (y - mean).powi(2)).sum();
    let res: Vec<f64> = obs.iter().zip(pred).map(|(y, p)| y - p).collect();
    let ss_res: f64 = res.iter().map(|r| r * r).sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    let mape = obs
        .iter()
        .zip(&res)
        .filter(|(y, _)| **y != 0.0)
        .map(|(y, r)| (r / y).abs())
        .sum::<f64>()
        / n as f64
        * 100.0;
    Quality {
        n,
        r2,
        rms: (ss_res / n as f64).sqrt(),
        max_abs: res.iter().fold(0.0, |m, r| m.max(r.abs())),
        mape_pct: mape,
    }
}

/// `y = a + b x` by ordinary least squares; `None` when `x` does not vary.
pub fn line(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = x.len() as f64;
    if x.len() < 2 {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    if sxx <= f64::EPSILON * mx.abs().max(1.0) {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let b = sxy / sxx;
    Some((my - b * mx, b))
}

/// `y = α u + β v` by ordinary least squares (no intercept), with `1 - cos²(u, v)`, which is
/// near 0 when `u` and `v` are nearly proportional and the two cannot be told apart.
pub fn two(u: &[f64], v: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let suu: f64 = u.iter().map(|a| a * a).sum();
    let svv: f64 = v.iter().map(|a| a * a).sum();
    let suv: f64 = u.iter().zip(v).map(|(a, b)| a * b).sum();
    let suy: f64 = u.iter().zip(y).map(|(a, b)| a * b).sum();
    let svy: f64 = v.iter().zip(y).map(|(a, b)| a * b).sum();
    let det = suu * svv - suv * suv;
    let separable = if suu > 0.0 && svv > 0.0 {
        det / (suu * svv)
    } else {
        0.0
    };
    if det.abs() <= f64::MIN_POSITIVE {
        return (f64::NAN, f64::NAN, 0.0);
    }
    (
        (suy * svv - svy * suv) / det,
        (svy * suu - suy * suv) / det,
        separable,
    )
}

/// `y = γ w` by least squares.
pub fn scale(w: &[f64], y: &[f64]) -> f64 {
    let sww: f64 = w.iter().map(|a| a * a).sum();
    let swy: f64 = w.iter().zip(y).map(|(a, b)| a * b).sum();
    if sww > 0.0 { swy / sww } else { f64::NAN }
}

/// Minimise `Σ r(θ)²` over `θ` within `[lo, hi]` by Levenberg-Marquardt with forward
/// differences. `fixed[k]` keeps `θ[k]` at its start. Returns the parameters and whether it
/// converged (relative step below 1e-9 or cost no longer falling).
pub fn levenberg_marquardt(
    residuals: &dyn Fn(&[f64]) -> Vec<f64>,
    start: &[f64],
    lo: &[f64],
    hi: &[f64],
    fixed: &[bool],
) -> (Vec<f64>, bool) {
    let k = start.len();
    let cost = |r: &[f64]| r.iter().map(|x| x * x).sum::<f64>();
    let mut theta: Vec<f64> = start
        .iter()
        .enumerate()
        .map(|(i, t)| t.clamp(lo[i], hi[i]))
        .collect();
    let mut r = residuals(&theta);
    let mut c = cost(&r);
    let mut lambda = 1e-3;
    for _ in 0..200 {
        // Jacobian by forward differences.
        let mut jac = vec![vec![0.0; k]; r.len()];
        for j in 0..k {
            if fixed[j] {
                continue;
            }
            let h = 1e-4 * theta[j].abs().max(1e-4 * (hi[j] - lo[j]).abs().max(1e-12));
            let mut t2 = theta.clone();
            t2[j] += h;
            let r2 = residuals(&t2);
            for (i, row) in jac.iter_mut().enumerate() {
                row[j] = (r2[i] - r[i]) / h;
            }
        }
        let mut jtj = vec![vec![0.0; k]; k];
        let mut jtr = vec![0.0; k];
        for (i, row) in jac.iter().enumerate() {
            for a in 0..k {
                jtr[a] += row[a] * r[i];
                for b in 0..k {
                    jtj[a][b] += row[a] * row[b];
                }
            }
        }
        let mut improved = false;
        for _ in 0..30 {
            let mut m = jtj.clone();
            for a in 0..k {
                m[a][a] += lambda * jtj[a][a].max(1e-30);
                if fixed[a] {
                    m[a] = vec![0.0; k];
                    m[a][a] = 1.0;
                }
            }
            let rhs: Vec<f64> = (0..k)
                .map(|a| if fixed[a] { 0.0 } else { -jtr[a] })
                .collect();
            let Some(step) = solve(m, rhs) else {
                lambda *= 10.0;
                continue;
            };
            let cand: Vec<f64> = (0..k)
                .map(|a| (theta[a] + step[a]).clamp(lo[a], hi[a]))
                .collect();
            let rc = residuals(&cand);
            let cc = cost(&rc);
            if cc < c {
                let rel = (0..k)
                    .map(|a| ((cand[a] - theta[a]) / theta[a].abs().max(1e-12)).abs())
                    .fold(0.0, f64::max);
                theta = cand;
                r = rc;
                let fell = c - cc;
                c = cc;
                lambda = (lambda / 10.0).max(1e-12);
                improved = true;
                if rel < 1e-9 || fell <= 1e-15 * c.max(1e-300) {
                    return (theta, true);
                }
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            return (theta, true);
        }
    }
    (theta, false)
}

/// Solve `m x = b` by Gaussian elimination with partial pivoting.
fn solve(mut m: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&a, &c| m[a][col].abs().total_cmp(&m[c][col].abs()))?;
        if m[piv][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, piv);
        b.swap(col, piv);
        let pivot_row = m[col].clone();
        for row in col + 1..n {
            let f = m[row][col] / pivot_row[col];
            for (x, p) in m[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|c| m[row][c] * x[c]).sum();
        x[row] = (b[row] - s) / m[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_two_regressors_recover_exact_data() {
        let x = [1.0, 2.0, 4.0, 8.0];
        let y: Vec<f64> = x.iter().map(|v| 3.0 + 0.5 * v).collect();
        let (a, b) = line(&x, &y).unwrap();
        assert!((a - 3.0).abs() < 1e-12 && (b - 0.5).abs() < 1e-12);
        assert!(line(&[2.0, 2.0], &[1.0, 3.0]).is_none());
        let u = [1.0, 1.0, 1.0, 1.0];
        let yy: Vec<f64> = x.iter().map(|v| 2.0 * 1.0 + 3.0 * v).collect();
        let (al, be, sep) = two(&u, &x, &yy);
        assert!(
            (al - 2.0).abs() < 1e-9 && (be - 3.0).abs() < 1e-9,
            "{al} {be}"
        );
        assert!(sep > 0.1);
        let (_, _, sep) = two(&x, &x.map(|v| 2.0 * v), &yy);
        assert!(sep.abs() < 1e-12);
        let q = quality(&y, &y);
        assert_eq!((q.r2, q.rms, q.max_abs), (1.0, 0.0, 0.0));
    }

    #[test]
    fn levenberg_marquardt_fits_a_bounded_nonlinear_model() {
        // y = p0 + x / p1, p1 in (0, 1]
        let xs: Vec<f64> = (1..20).map(f64::from).collect();
        let truth = [2.0, 0.4];
        let ys: Vec<f64> = xs.iter().map(|x| truth[0] + x / truth[1]).collect();
        let res = |t: &[f64]| -> Vec<f64> {
            xs.iter()
                .zip(&ys)
                .map(|(x, y)| t[0] + x / t[1] - y)
                .collect()
        };
        let (t, ok) = levenberg_marquardt(
            &res,
            &[0.5, 0.9],
            &[0.0, 1e-3],
            &[10.0, 1.0],
            &[false, false],
        );
        assert!(ok);
        assert!(
            (t[0] - 2.0).abs() < 1e-6 && (t[1] - 0.4).abs() < 1e-8,
            "{t:?}"
        );
        let (t, _) = levenberg_marquardt(
            &res,
            &[2.5, 0.9],
            &[0.0, 1e-3],
            &[10.0, 1.0],
            &[true, false],
        );
        assert_eq!(t[0], 2.5);
    }
}
