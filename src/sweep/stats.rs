//! Statistics over seeds (mean and Student-t 95% confidence interval) and the saturation
//! knee of a curve.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// A mean and, with at least two values, the half-width of its 95% confidence interval.
pub type MeanCi = (f64, Option<f64>);

/// Mean of `xs` and the half-width of its two-sided 95% confidence interval
/// (`t(0.975, n-1) * s / sqrt(n)`, `s` the sample standard deviation); the half-width is
/// `None` with fewer than two values. `None` altogether for no values.
pub fn mean_ci95(xs: &[f64]) -> Option<MeanCi> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return Some((mean, None));
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    let t = StudentsT::new(0.0, 1.0, n - 1.0)
        .expect("invariant: degrees of freedom >= 1")
        .inverse_cdf(0.975);
    Some((mean, Some(t * var.sqrt() / n.sqrt())))
}

/// Index of the knee of the curve `(xs[i], ys[i])` (x increasing), found as Kneedle does:
/// normalise both axes to [0, 1] and take the point farthest from the straight line joining
/// the first and last points. `None` with fewer than three points, a flat curve, or when no
/// point stands off the line by more than 5% of the range (no knee to speak of).
pub fn knee(xs: &[f64], ys: &[f64]) -> Option<usize> {
    let n = xs.len().min(ys.len());
    if n < 3 {
        return None;
    }
    let (x0, x1) = (xs[0], xs[n - 1]);
    let (ymin, ymax) = ys[..n]
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    let spread = |a: f64, b: f64| b.partial_cmp(&a) == Some(std::cmp::Ordering::Greater);
    if !spread(x0, x1) || !spread(ymin, ymax) {
        return None;
    }
    let nx = |x: f64| (x - x0) / (x1 - x0);
    let ny = |y: f64| (y - ymin) / (ymax - ymin);
    let (ya, yb) = (ny(ys[0]), ny(ys[n - 1]));
    let mut best = None;
    let mut best_d = 0.05;
    for i in 1..n - 1 {
        let line = ya + (yb - ya) * nx(xs[i]);
        let d = (ny(ys[i]) - line).abs();
        if d > best_d {
            best_d = d;
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_interval_match_the_t_table() {
        // n = 5, t(0.975, 4) = 2.776 (any t table).
        let (m, h) = mean_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(m, 3.0);
        let expected = 2.776_445 * (2.5f64).sqrt() / 5f64.sqrt();
        assert!((h.unwrap() - expected).abs() < 1e-5, "{h:?} vs {expected}");
        assert_eq!(mean_ci95(&[7.0]), Some((7.0, None)));
        assert_eq!(mean_ci95(&[]), None);
    }

    #[test]
    fn knee_of_a_saturating_curve_is_where_it_flattens() {
        let xs = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0];
        let ys = [1.0, 2.0, 3.0, 3.1, 3.15, 3.2, 3.2];
        assert_eq!(knee(&xs, &ys), Some(2));
        assert_eq!(knee(&xs, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), None);
        assert_eq!(knee(&xs[..2], &ys[..2]), None);
    }
}
