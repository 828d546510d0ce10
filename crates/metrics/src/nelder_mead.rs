//! A small derivative-free minimiser (Nelder–Mead simplex, as `scipy.optimize.fmin`)
//! for the few-parameter likelihoods of this crate. Non-finite objective values are
//! treated as +inf, so an objective can express bounds by returning infinity.

/// Where the search stopped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Minimum {
    /// The best point found.
    pub point: Vec<f64>,
    /// Objective value there.
    pub value: f64,
}

/// Stopping rule and start of the simplex.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NelderMeadOptions {
    /// Offset of each initial vertex from the start along its axis.
    pub initial_step: f64,
    /// Stop when every vertex lies within this distance (per coordinate) of the best...
    pub x_tolerance: f64,
    /// ...and every value within this of the best one.
    pub f_tolerance: f64,
    /// Hard limit on iterations.
    pub max_iterations: usize,
}

impl Default for NelderMeadOptions {
    fn default() -> Self {
        Self {
            initial_step: 0.5,
            x_tolerance: 1e-8,
            f_tolerance: 1e-10,
            max_iterations: 2000,
        }
    }
}

/// Minimises `f` from `start` (standard coefficients: reflection 1, expansion 2,
/// contraction 1/2, shrink 1/2).
pub(crate) fn minimize(
    f: impl Fn(&[f64]) -> f64,
    start: &[f64],
    options: NelderMeadOptions,
) -> Minimum {
    let eval = |x: &[f64]| {
        let v = f(x);
        if v.is_nan() {
            f64::INFINITY
        } else {
            v
        }
    };
    let n = start.len();
    if n == 0 {
        return Minimum {
            point: Vec::new(),
            value: eval(start),
        };
    }
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    simplex.push((start.to_vec(), eval(start)));
    for axis in 0..n {
        let mut vertex = start.to_vec();
        vertex[axis] += options.initial_step;
        let value = eval(&vertex);
        simplex.push((vertex, value));
    }

    for _ in 0..options.max_iterations {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if converged(&simplex, options) {
            break;
        }
        let worst = simplex[n].clone();
        let centroid: Vec<f64> = (0..n)
            .map(|i| simplex[..n].iter().map(|(x, _)| x[i]).sum::<f64>() / n as f64)
            .collect();
        let along = |t: f64| -> Vec<f64> {
            centroid
                .iter()
                .zip(&worst.0)
                .map(|(c, w)| c + t * (c - w))
                .collect()
        };
        let reflected = along(1.0);
        let fr = eval(&reflected);
        if fr < simplex[0].1 {
            let expanded = along(2.0);
            let fe = eval(&expanded);
            simplex[n] = if fe < fr {
                (expanded, fe)
            } else {
                (reflected, fr)
            };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (reflected, fr);
        } else {
            // Contract towards the better of the worst point and its reflection.
            let (t, bound) = if fr < worst.1 {
                (0.5, fr)
            } else {
                (-0.5, worst.1)
            };
            let contracted = along(t);
            let fc = eval(&contracted);
            if fc < bound {
                simplex[n] = (contracted, fc);
            } else {
                let best = simplex[0].0.clone();
                for vertex in simplex.iter_mut().skip(1) {
                    let shrunk: Vec<f64> = best
                        .iter()
                        .zip(&vertex.0)
                        .map(|(b, x)| b + 0.5 * (x - b))
                        .collect();
                    let value = eval(&shrunk);
                    *vertex = (shrunk, value);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (point, value) = simplex.swap_remove(0);
    Minimum { point, value }
}

fn converged(simplex: &[(Vec<f64>, f64)], options: NelderMeadOptions) -> bool {
    let (best, best_value) = (&simplex[0].0, simplex[0].1);
    if !best_value.is_finite() {
        return false;
    }
    simplex[1..].iter().all(|(x, v)| {
        (v - best_value).abs() <= options.f_tolerance
            && x.iter()
                .zip(best)
                .all(|(a, b)| (a - b).abs() <= options.x_tolerance)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let rosenbrock = |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let m = minimize(rosenbrock, &[-1.2, 1.0], NelderMeadOptions::default());
        assert!((m.point[0] - 1.0).abs() < 1e-4 && (m.point[1] - 1.0).abs() < 1e-4);
    }

    #[test]
    fn respects_infinite_walls() {
        // Minimum of (x - 2)^2 subject to x <= 1, expressed as +inf beyond the wall.
        let walled = |x: &[f64]| {
            if x[0] > 1.0 {
                f64::INFINITY
            } else {
                (x[0] - 2.0).powi(2)
            }
        };
        let m = minimize(walled, &[0.0], NelderMeadOptions::default());
        assert!((m.point[0] - 1.0).abs() < 1e-6);
    }
}
