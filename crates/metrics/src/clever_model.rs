//! CLEVER on a model: seeded sampling in the `p`-ball around `x0` (clipped to the [0, 1]
//! box), batched gradient norms of the logit margin `g = Z_c - Z_j`, then the statistics
//! of [`crate::clever_score_from_maxima`].

use candle_core::{DType, Tensor, Var, D};
use models::Classifier;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

use crate::clever::{clever_score_from_maxima, CleverConfig, CleverEstimate, Norm};
use crate::error::{MetricsError, Result};

/// Which other classes `j` the margin `Z_c - Z_j` is taken against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CleverTarget {
    /// Every `j != c`; the score is the minimum (the paper's untargeted CLEVER).
    Untargeted,
    /// Only the runner-up class at `x0` (the authors' "top-2"): one class, a tenth of the cost.
    RunnerUp,
    /// One given class.
    Class(u32),
}

/// The CLEVER score of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CleverReport {
    /// The class `c` of `x0` (the model's arg-max).
    pub class: u32,
    /// The score: the minimum over the classes `j` examined.
    pub score: f64,
    /// The class `j` attaining it.
    pub closest_class: u32,
    /// Per class `j`: its estimate.
    pub per_class: Vec<(u32, CleverEstimate)>,
    /// Per class, in the order of `per_class`: the `N_b` batch maxima of the gradient
    /// norms that were fitted (to compare with another implementation's).
    pub batch_maxima: Vec<Vec<f64>>,
    /// Gradient evaluations spent.
    pub gradient_evaluations: usize,
}

fn cerr(e: candle_core::Error) -> MetricsError {
    MetricsError::Model(e.to_string())
}

/// `n` points uniformly distributed in the `norm`-ball of `radius` in `d` dimensions.
fn sample_ball(rng: &mut StdRng, n: usize, d: usize, radius: f64, norm: Norm) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * d);
    let normal = |rng: &mut StdRng| {
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    for _ in 0..n {
        match norm {
            Norm::Linf => out.extend((0..d).map(|_| rng.random_range(-radius..=radius) as f32)),
            Norm::L2 => {
                // Gaussian direction, radius R * U^(1/d).
                let v: Vec<f64> = (0..d).map(|_| normal(rng)).collect();
                let len = v
                    .iter()
                    .map(|a| a * a)
                    .sum::<f64>()
                    .sqrt()
                    .max(f64::MIN_POSITIVE);
                let r = radius * rng.random::<f64>().powf(1.0 / d as f64);
                out.extend(v.iter().map(|a| (a / len * r) as f32));
            }
            Norm::L1 => {
                // d + 1 exponentials normalised give a uniform point of the simplex;
                // random signs spread it over the L1 ball.
                let e: Vec<f64> = (0..=d)
                    .map(|_| -rng.random_range(f64::MIN_POSITIVE..1.0).ln())
                    .collect();
                let total: f64 = e.iter().sum();
                out.extend(e[..d].iter().map(|a| {
                    let s = if rng.random::<bool>() { 1.0 } else { -1.0 };
                    (s * a / total * radius) as f32
                }));
            }
        }
    }
    out
}

/// CLEVER for one image `x0` (`1 x 1 x 28 x 28`, pixels in [0, 1]) of `model`, with
/// `config.nb` batches of `config.ns` points, seeded by `seed`.
pub fn clever_score<M: Classifier + ?Sized>(
    model: &M,
    x0: &Tensor,
    target: CleverTarget,
    config: &CleverConfig,
    seed: u64,
) -> Result<CleverReport> {
    clever_score_in_passes(model, x0, target, config, seed, POINTS_PER_PASS)
}

/// Sample points per forward and backward pass: consecutive batches of `N_s` go
/// through the model together up to this many (a point's gradient does not depend on
/// the other points of its pass, and the points are drawn in the same order).
const POINTS_PER_PASS: usize = 256;

/// [`clever_score`] with whole batches of `N_s` points grouped into passes of at most
/// `per_pass` points (at least one batch a pass).
fn clever_score_in_passes<M: Classifier + ?Sized>(
    model: &M,
    x0: &Tensor,
    target: CleverTarget,
    config: &CleverConfig,
    seed: u64,
    per_pass: usize,
) -> Result<CleverReport> {
    let dims = x0.dims().to_vec();
    if dims.len() != 4 || dims[0] != 1 {
        return Err(MetricsError::Model(format!(
            "x0 must be one image 1 x C x H x W, got {dims:?}"
        )));
    }
    if config.nb == 0 || config.ns == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "nb * ns",
            value: (config.nb * config.ns) as f64,
            reason: "at least one sample",
        });
    }
    let device = x0.device();
    let dtype = x0.dtype();
    let logits: Vec<f64> = model
        .logits(x0)
        .and_then(|l| l.squeeze(0)?.to_dtype(DType::F64)?.to_vec1())
        .map_err(cerr)?;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let c = order[0];
    let classes: Vec<usize> = match target {
        CleverTarget::Untargeted => (0..logits.len()).filter(|&j| j != c).collect(),
        CleverTarget::RunnerUp => vec![order[1]],
        CleverTarget::Class(j) if (j as usize) < logits.len() && j as usize != c => {
            vec![j as usize]
        }
        CleverTarget::Class(j) => {
            return Err(MetricsError::InvalidParameter {
                name: "target class",
                value: f64::from(j),
                reason: "must be another class than x0's own",
            })
        }
    };
    let d: usize = dims[1..].iter().product();
    let x0_flat: Vec<f32> = x0
        .flatten_all()
        .and_then(|t| t.to_dtype(DType::F32)?.to_vec1())
        .map_err(cerr)?;
    let mut per_class = Vec::with_capacity(classes.len());
    let mut batch_maxima = Vec::with_capacity(classes.len());
    let mut evaluations = 0;
    for (ci, &j) in classes.iter().enumerate() {
        // One stream per class, so a class's estimate does not depend on the others.
        let mut rng = StdRng::seed_from_u64(seed ^ ((ci as u64 + 1) << 32) ^ j as u64);
        let mut maxima = Vec::with_capacity(config.nb);
        let group = (per_pass / config.ns).max(1);
        while maxima.len() < config.nb {
            let batches = group.min(config.nb - maxima.len());
            let mut points: Vec<f32> = Vec::with_capacity(batches * config.ns * d);
            for _ in 0..batches {
                let delta = sample_ball(&mut rng, config.ns, d, config.radius, config.norm);
                points.extend(
                    delta
                        .iter()
                        .enumerate()
                        .map(|(k, dv)| (x0_flat[k % d] + dv).clamp(0.0, 1.0)),
                );
            }
            let mut shape = dims.clone();
            shape[0] = batches * config.ns;
            let x = Tensor::from_vec(points, shape, device)
                .and_then(|t| t.to_dtype(dtype))
                .and_then(|t| Var::from_tensor(&t))
                .map_err(cerr)?;
            let norms = margin_gradient_norms(model, &x, c, j, config.norm).map_err(cerr)?;
            evaluations += batches * config.ns;
            maxima.extend(
                norms
                    .chunks(config.ns)
                    .map(|batch| batch.iter().copied().fold(0.0, f64::max)),
            );
        }
        let margin = logits[c] - logits[j];
        per_class.push((
            j as u32,
            clever_score_from_maxima(&maxima, margin, config.radius)?,
        ));
        batch_maxima.push(maxima);
    }
    let (closest_class, best) = per_class
        .iter()
        .min_by(|a, b| a.1.score.total_cmp(&b.1.score))
        .map(|(j, e)| (*j, e.score))
        .ok_or(MetricsError::EmptyInput { what: "classes" })?;
    Ok(CleverReport {
        class: c as u32,
        score: best,
        closest_class,
        per_class,
        batch_maxima,
        gradient_evaluations: evaluations,
    })
}

/// `||grad_x (Z_c - Z_j)||_q` for every point of the batch (examples are independent,
/// so one backward pass of the summed margin gives every per-example gradient).
fn margin_gradient_norms<M: Classifier + ?Sized>(
    model: &M,
    x: &Var,
    c: usize,
    j: usize,
    norm: Norm,
) -> candle_core::Result<Vec<f64>> {
    let logits = model.logits(x.as_tensor())?;
    let margin = (logits.narrow(D::Minus1, c, 1)? - logits.narrow(D::Minus1, j, 1)?)?;
    let grads = margin.sum_all()?.backward()?;
    let g = grads
        .get(x.as_tensor())
        .ok_or_else(|| candle_core::Error::Msg("no gradient reached the input".into()))?
        .flatten_from(1)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?;
    Ok(g.iter().map(|row| norm.dual_norm(row)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// logits = x W^T + b: the margin's gradient is constant, so CLEVER must give the
    /// exact distance margin / ||w_c - w_j||_q (when the ball is large enough to matter
    /// only through the cap).
    struct Linear {
        w: Tensor,
        b: Tensor,
    }

    impl Classifier for Linear {
        fn logits(&self, images: &Tensor) -> candle_core::Result<Tensor> {
            images
                .flatten_from(1)?
                .matmul(&self.w.t()?)?
                .broadcast_add(&self.b)
        }
    }

    fn linear() -> Linear {
        let dev = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(4);
        Linear {
            w: models::random::uniform(&mut rng, (10, 16), -0.3, 0.3, DType::F64, &dev).unwrap(),
            b: models::random::uniform(&mut rng, 10, -0.2, 0.2, DType::F64, &dev).unwrap(),
        }
    }

    #[test]
    fn linear_classifier_gives_the_exact_distance() {
        let model = linear();
        let dev = Device::Cpu;
        let x0 = Tensor::full(0.5f64, (1, 1, 4, 4), &dev).unwrap();
        let logits: Vec<f64> = model
            .logits(&x0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let w: Vec<Vec<f64>> = model.w.to_vec2().unwrap();
        for norm in [Norm::L2, Norm::Linf, Norm::L1] {
            let config = CleverConfig {
                nb: 20,
                ns: 16,
                radius: 100.0,
                norm,
            };
            let report = clever_score(&model, &x0, CleverTarget::Untargeted, &config, 1).unwrap();
            let c = report.class as usize;
            let exact = (0..10)
                .filter(|&j| j != c)
                .map(|j| {
                    let diff: Vec<f32> = (0..16).map(|k| (w[c][k] - w[j][k]) as f32).collect();
                    (logits[c] - logits[j]) / norm.dual_norm(&diff)
                })
                .fold(f64::INFINITY, f64::min);
            assert!(
                (report.score - exact).abs() <= 0.01 * exact,
                "{norm:?}: {} vs {exact}",
                report.score
            );
            assert_eq!(report.gradient_evaluations, 9 * 20 * 16);
        }
    }

    /// logits = tanh(x W1^T) W2^T: a gradient that varies from point to point.
    struct TwoLayer {
        w1: Tensor,
        w2: Tensor,
    }

    impl Classifier for TwoLayer {
        fn logits(&self, images: &Tensor) -> candle_core::Result<Tensor> {
            images
                .flatten_from(1)?
                .matmul(&self.w1.t()?)?
                .tanh()?
                .matmul(&self.w2.t()?)
        }
    }

    #[test]
    fn grouping_batches_into_passes_changes_no_maximum() {
        let dev = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(8);
        let mut uniform = |shape: (usize, usize)| {
            models::random::uniform(&mut rng, shape, -1.0, 1.0, DType::F64, &dev).unwrap()
        };
        let model = TwoLayer {
            w1: uniform((12, 16)),
            w2: uniform((10, 12)),
        };
        let x0 = Tensor::full(0.4f64, (1, 1, 4, 4), &dev).unwrap();
        for norm in [Norm::L2, Norm::Linf] {
            // 7 batches of 6: one a pass, then 3 or all 7 a pass (the last pass short).
            let config = CleverConfig {
                nb: 7,
                ns: 6,
                radius: 0.8,
                norm,
            };
            let run = |per_pass| {
                clever_score_in_passes(&model, &x0, CleverTarget::Untargeted, &config, 5, per_pass)
                    .unwrap()
            };
            let one = run(1);
            // The maxima differ from batch to batch: the test sees each batch's own.
            assert!(one.batch_maxima[0].windows(2).any(|w| w[0] != w[1]));
            for per_pass in [18, 20, 256] {
                let grouped = run(per_pass);
                assert_eq!(grouped.gradient_evaluations, 9 * 7 * 6);
                for (a, b) in one.batch_maxima.iter().zip(&grouped.batch_maxima) {
                    assert_eq!(a.len(), 7);
                    for (x, y) in a.iter().zip(b) {
                        assert!((x - y).abs() <= 1e-12 * x.abs(), "{norm:?}: {x} vs {y}");
                    }
                }
                assert!((one.score - grouped.score).abs() <= 1e-9 * one.score);
            }
        }
    }

    #[test]
    fn samples_lie_in_the_ball() {
        let mut rng = StdRng::seed_from_u64(0);
        for norm in [Norm::L1, Norm::L2, Norm::Linf] {
            let s = sample_ball(&mut rng, 50, 7, 0.3, norm);
            for p in s.chunks(7) {
                assert!(norm.of(p) <= 0.3 + 1e-6, "{norm:?} {}", norm.of(p));
            }
        }
    }

    #[test]
    fn seeded_and_capped() {
        let model = linear();
        let x0 = Tensor::full(0.5f64, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let config = CleverConfig {
            nb: 10,
            ns: 8,
            radius: 0.01,
            norm: Norm::L2,
        };
        let a = clever_score(&model, &x0, CleverTarget::RunnerUp, &config, 3).unwrap();
        let b = clever_score(&model, &x0, CleverTarget::RunnerUp, &config, 3).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.per_class.len(), 1);
        assert_eq!(a.batch_maxima.len(), 1);
        assert_eq!(a.batch_maxima[0].len(), config.nb);
        assert_eq!(a.score, 0.01, "capped at the radius");
        assert!(clever_score(&model, &x0, CleverTarget::Class(a.class), &config, 3).is_err());
    }
}
