//! Quadrature rules on [0, 1] for the path integral of Integrated Gradients: the points
//! `alpha` along the path and their weights (which sum to 1).
//!
//! The Riemann rules follow Captum's `approximation_methods.py` (left, right, middle at
//! `1/n` spacing). The trapezoid here spaces its `n` points `1/(n-1)` apart with halved
//! end weights, the textbook rule, whose weights sum to 1; Captum's `riemann_trapezoid`
//! keeps `1/n` weights on the same points, so its weights sum to `1 - 1/n`.
//! Gauss-Legendre (Captum's default) uses the roots of the Legendre polynomial `P_n`,
//! found by Newton's method from the Tricomi initial guess, mapped from [-1, 1] to
//! [0, 1]; numpy's `leggauss` gives the same points and weights.

use crate::error::{CamError, Result};

/// How the path integral `int_0^1 g(alpha) d alpha` is approximated from `n` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quadrature {
    /// Gauss-Legendre with `n` points: exact for polynomials of degree `2n - 1`
    /// (Captum's default for Integrated Gradients).
    #[default]
    GaussLegendre,
    /// Left Riemann sum: `alpha = k / n`, `k = 0..n`.
    RiemannLeft,
    /// Right Riemann sum: `alpha = k / n`, `k = 1..=n` (the form of Sundararajan et
    /// al.'s equation 3).
    RiemannRight,
    /// Midpoint rule: `alpha = (k + 1/2) / n`.
    RiemannMiddle,
    /// Trapezoid rule: `alpha = k / (n - 1)`, `k = 0..n`, end weights halved (`n >= 2`).
    RiemannTrapezoid,
}

impl Quadrature {
    /// The points (ascending, in [0, 1]) and weights of the rule with `n` points.
    pub fn points_and_weights(self, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        let least = if self == Quadrature::RiemannTrapezoid {
            2
        } else {
            1
        };
        if n < least {
            return Err(CamError::InvalidArgument(format!(
                "{self:?} needs at least {least} steps, got {n}"
            )));
        }
        let nf = n as f64;
        let uniform = |offset: f64| -> (Vec<f64>, Vec<f64>) {
            (
                (0..n).map(|k| (k as f64 + offset) / nf).collect(),
                vec![1.0 / nf; n],
            )
        };
        Ok(match self {
            Quadrature::GaussLegendre => gauss_legendre(n),
            Quadrature::RiemannLeft => uniform(0.0),
            Quadrature::RiemannRight => uniform(1.0),
            Quadrature::RiemannMiddle => uniform(0.5),
            Quadrature::RiemannTrapezoid => {
                let h = 1.0 / (nf - 1.0);
                let mut w = vec![h; n];
                w[0] = h / 2.0;
                w[n - 1] = h / 2.0;
                ((0..n).map(|k| k as f64 * h).collect(), w)
            }
        })
    }
}

/// Gauss-Legendre points and weights on [0, 1], ascending.
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let nf = n as f64;
    let mut points = vec![0.0; n];
    let mut weights = vec![0.0; n];
    // The roots are symmetric about 0: find the non-negative ones, largest first.
    for i in 0..n.div_ceil(2) {
        let theta = std::f64::consts::PI * (4.0 * i as f64 + 3.0) / (4.0 * nf + 2.0);
        let mut x = (1.0 - (nf - 1.0) / (8.0 * nf.powi(3))) * theta.cos();
        for _ in 0..100 {
            let (p, dp) = legendre(n, x);
            let dx = p / dp;
            x -= dx;
            if dx.abs() <= 2.0 * f64::EPSILON {
                break;
            }
        }
        let (_, derivative) = legendre(n, x);
        let w = 2.0 / ((1.0 - x * x) * derivative * derivative);
        // x in [-1, 1] -> alpha = (1 + x) / 2; weights halve.
        points[n - 1 - i] = (1.0 + x) / 2.0;
        points[i] = (1.0 - x) / 2.0;
        weights[n - 1 - i] = w / 2.0;
        weights[i] = w / 2.0;
    }
    (points, weights)
}

/// `P_n(x)` and `P_n'(x)` by the three-term recurrence.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, x);
    for k in 2..=n {
        let kf = k as f64;
        let p2 = ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf;
        p0 = p1;
        p1 = p2;
    }
    if n == 0 {
        return (1.0, 0.0);
    }
    // P_n' = n (x P_n - P_{n-1}) / (x^2 - 1), for |x| < 1.
    let dp = n as f64 * (x * p1 - p0) / (x * x - 1.0);
    (p1, dp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: [Quadrature; 5] = [
        Quadrature::GaussLegendre,
        Quadrature::RiemannLeft,
        Quadrature::RiemannRight,
        Quadrature::RiemannMiddle,
        Quadrature::RiemannTrapezoid,
    ];

    #[test]
    fn weights_sum_to_one_and_points_ascend_in_the_unit_interval() {
        for rule in RULES {
            for n in [2usize, 3, 7, 50, 64, 256] {
                let (a, w) = rule.points_and_weights(n).unwrap();
                assert_eq!((a.len(), w.len()), (n, n));
                let total: f64 = w.iter().sum();
                assert!((total - 1.0).abs() < 1e-13, "{rule:?} {n}: {total}");
                assert!(a.windows(2).all(|p| p[0] < p[1]), "{rule:?} {n}");
                assert!(a.iter().all(|&x| (0.0..=1.0).contains(&x)));
                assert!(w.iter().all(|&x| x > 0.0));
            }
        }
    }

    #[test]
    fn gauss_legendre_matches_numpy_and_integrates_degree_2n_minus_1_exactly() {
        // numpy.polynomial.legendre.leggauss(2): x = -+1/sqrt(3), w = 1, 1;
        // leggauss(3): x = -sqrt(3/5), 0, sqrt(3/5); w = 5/9, 8/9, 5/9.
        let (a, w) = Quadrature::GaussLegendre.points_and_weights(2).unwrap();
        let r = 1.0 / 3f64.sqrt();
        assert!((a[0] - (1.0 - r) / 2.0).abs() < 1e-15 && (a[1] - (1.0 + r) / 2.0).abs() < 1e-15);
        assert!((w[0] - 0.5).abs() < 1e-15 && (w[1] - 0.5).abs() < 1e-15);
        let (a, w) = Quadrature::GaussLegendre.points_and_weights(3).unwrap();
        assert!((a[1] - 0.5).abs() < 1e-15 && (w[1] - 4.0 / 9.0).abs() < 1e-15);
        assert!((a[2] - (1.0 + 0.6f64.sqrt()) / 2.0).abs() < 1e-15);
        for n in [1usize, 4, 10, 50] {
            let (a, w) = Quadrature::GaussLegendre.points_and_weights(n).unwrap();
            let degree = 2 * n - 1;
            let integral: f64 = a
                .iter()
                .zip(&w)
                .map(|(x, w)| w * x.powi(degree as i32))
                .sum();
            let exact = 1.0 / (degree as f64 + 1.0);
            assert!(
                (integral - exact).abs() < 1e-13,
                "n {n}: {integral} vs {exact}"
            );
        }
    }

    #[test]
    fn riemann_points_follow_captum() {
        let (a, _) = Quadrature::RiemannRight.points_and_weights(4).unwrap();
        assert_eq!(a, vec![0.25, 0.5, 0.75, 1.0]);
        let (a, _) = Quadrature::RiemannLeft.points_and_weights(4).unwrap();
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75]);
        let (a, _) = Quadrature::RiemannMiddle.points_and_weights(4).unwrap();
        assert_eq!(a, vec![0.125, 0.375, 0.625, 0.875]);
        let (a, w) = Quadrature::RiemannTrapezoid.points_and_weights(5).unwrap();
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(w, vec![0.125, 0.25, 0.25, 0.25, 0.125]);
    }

    #[test]
    fn too_few_steps_are_an_error() {
        assert!(Quadrature::RiemannTrapezoid.points_and_weights(1).is_err());
        for rule in RULES {
            assert!(matches!(
                rule.points_and_weights(0),
                Err(CamError::InvalidArgument(_))
            ));
        }
    }
}
