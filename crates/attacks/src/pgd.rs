//! PGD (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
//! ICLR 2018) in the Linf and L2 geometries: from a random start in the eps-ball, steps
//! up the cross-entropy (down it, towards the target, when targeted), each followed by a
//! projection onto the eps-ball and the box [0, 1].

use candle_core::Tensor;
use models::random::{normal, uniform};
use models::Classifier;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::attack::{check_examples, check_non_negative, Attack};
use crate::batch::{Batch, Targeting};
use crate::error::{invalid, Result};
use crate::gradient::{cross_entropy_per_example, degenerate_rows, input_gradient, zero_rows};
use crate::ops::{
    clamp_unit, class_tensor, gather_rows, per_example, per_example_l2, project_l2, project_linf,
    scatter_rows,
};
use crate::outcome::AttackOutcome;

/// The settings shared by both geometries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgdConfig {
    /// Radius of the ball.
    pub eps: f64,
    /// Step size (Linf: per component; L2: length of the step).
    pub step_size: f64,
    /// Steps per start.
    pub steps: usize,
    /// Start from a uniform random point of the ball (else from the clean image).
    pub random_start: bool,
    /// Number of starts (>= 1). Each later start attacks only the examples that no
    /// earlier start broke; an example keeps the first successful iterate, or the last.
    pub restarts: usize,
    /// Seed of the random starts: example `e`'s start `r` draws from a generator seeded
    /// by (seed, e, r) alone ([`Attack::run_examples`]), whatever its batch.
    pub seed: u64,
}

impl PgdConfig {
    fn check(&self) -> Result<()> {
        check_non_negative("eps", self.eps)?;
        check_non_negative("step size", self.step_size)?;
        if self.restarts == 0 {
            return Err(invalid("PGD needs at least one start (restarts >= 1)"));
        }
        Ok(())
    }
}

/// PGD in the Linf ball: signed gradient steps, componentwise projection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgdLinf(pub PgdConfig);

impl PgdLinf {
    /// Madry's MNIST challenge settings: eps 0.3, step 0.01, 40 steps, random start,
    /// one start.
    pub fn madry_mnist() -> Self {
        Self(PgdConfig {
            eps: 0.3,
            step_size: 0.01,
            steps: 40,
            random_start: true,
            restarts: 1,
            seed: 0,
        })
    }
}

impl Default for PgdLinf {
    /// [`PgdLinf::madry_mnist`].
    fn default() -> Self {
        Self::madry_mnist()
    }
}

/// PGD in the L2 ball: normalised gradient steps, projection by rescaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgdL2(pub PgdConfig);

impl Default for PgdL2 {
    /// MNIST-sized: eps 2.0, 40 steps of 0.125 (the robustness library's rule
    /// `step = 2.5 eps / steps`), random start, one start. (torchattacks' defaults,
    /// eps 1.0, step 0.2, 10 steps, are for CIFAR-sized inputs.)
    fn default() -> Self {
        Self(PgdConfig {
            eps: 2.0,
            step_size: 0.125,
            steps: 40,
            random_start: true,
            restarts: 1,
            seed: 0,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Norm {
    Linf,
    L2,
}

impl Attack for PgdLinf {
    fn name(&self) -> &'static str {
        "pgd-linf"
    }

    fn run_examples(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
        examples: &[u64],
    ) -> Result<AttackOutcome> {
        check_examples(examples, labels)?;
        pgd(
            &self.0,
            Norm::Linf,
            model,
            images,
            labels,
            targeting,
            examples,
        )
    }
}

impl Attack for PgdL2 {
    fn name(&self) -> &'static str {
        "pgd-l2"
    }

    fn run_examples(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
        examples: &[u64],
    ) -> Result<AttackOutcome> {
        check_examples(examples, labels)?;
        pgd(
            &self.0,
            Norm::L2,
            model,
            images,
            labels,
            targeting,
            examples,
        )
    }
}

/// The generator of example `example`'s start `start`.
fn start_rng(seed: u64, example: u64, start: usize) -> StdRng {
    StdRng::seed_from_u64(common::seed::identity_seed(seed, example, start as u64))
}

/// A uniform random point of the ball around each row of `x0` (L2: a uniform direction
/// and a radius uniform in [0, eps], as torchattacks), inside the box; row `j` draws
/// from `rngs[j]`.
fn random_start(x0: &Tensor, norm: Norm, eps: f64, rngs: &mut [StdRng]) -> Result<Tensor> {
    if eps == 0.0 {
        return Ok(x0.clone());
    }
    let mut row_shape = x0.dims().to_vec();
    row_shape[0] = 1;
    let rows = rngs
        .iter_mut()
        .map(|rng| -> Result<Tensor> {
            Ok(match norm {
                Norm::Linf => uniform(
                    rng,
                    row_shape.as_slice(),
                    -eps,
                    eps,
                    x0.dtype(),
                    x0.device(),
                )?,
                Norm::L2 => {
                    let dir = normal(rng, row_shape.as_slice(), x0.dtype(), x0.device())?;
                    let radius: f64 = rng.random_range(0.0..=eps);
                    let length = dir
                        .sqr()?
                        .sum_all()?
                        .sqrt()?
                        .to_dtype(candle_core::DType::F64)?
                        .to_scalar::<f64>()?;
                    (dir * (radius / length.max(1e-12)))?
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let delta = Tensor::cat(&rows, 0)?;
    clamp_unit(&(x0 + delta)?)
}

fn pgd(
    config: &PgdConfig,
    norm: Norm,
    model: &dyn Classifier,
    images: &Tensor,
    labels: &[u32],
    targeting: &Targeting,
    examples: &[u64],
) -> Result<AttackOutcome> {
    config.check()?;
    let batch = Batch::new(model, images, labels, targeting)?;
    let n = batch.len();
    let ascent = if batch.targets.is_some() { -1.0 } else { 1.0 };
    let mut best = batch.images.clone();
    // Examples with nothing to attack are never touched.
    let mut done: Vec<bool> = (0..n).map(|i| !batch.is_attackable(i)).collect();
    let mut evaluations = vec![0usize; n];
    let mut degenerate = vec![false; n];
    for start in 0..config.restarts {
        let active: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
        if active.is_empty() {
            break;
        }
        let x0 = gather_rows(&batch.images, &active)?;
        let goal: Vec<u32> = active.iter().map(|&i| batch.goal_classes()[i]).collect();
        let classes = class_tensor(&goal, images.device())?;
        let mut x = if config.random_start {
            let mut rngs: Vec<StdRng> = active
                .iter()
                .map(|&i| start_rng(config.seed, examples[i], start))
                .collect();
            random_start(&x0, norm, config.eps, &mut rngs)?
        } else {
            x0.clone()
        };
        for _ in 0..config.steps {
            let g = input_gradient(model, &x, |z| cross_entropy_per_example(z, &classes))?;
            let bad = degenerate_rows(&g.gradient)?;
            for (j, &i) in active.iter().enumerate() {
                evaluations[i] += 1;
                degenerate[i] |= bad[j];
            }
            let grad = zero_rows(&g.gradient, &bad)?;
            let step = match norm {
                Norm::Linf => grad.sign()?,
                Norm::L2 => {
                    let len = per_example_l2(&grad)?.maximum(1e-12)?;
                    grad.broadcast_div(&per_example(&len, grad.rank())?)?
                }
            };
            let moved = (&x + (step * (ascent * config.step_size))?)?;
            let delta = (moved - &x0)?;
            let delta = match norm {
                Norm::Linf => project_linf(&delta, config.eps)?,
                Norm::L2 => project_l2(&delta, config.eps)?,
            };
            x = clamp_unit(&(&x0 + delta)?)?;
        }
        let predictions = model.predict(&x)?;
        best = scatter_rows(&best, &active, &x)?;
        for (j, &i) in active.iter().enumerate() {
            done[i] = batch.is_success(i, predictions[j]);
        }
    }
    AttackOutcome::new(model, batch, best, evaluations, degenerate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::setup;

    #[test]
    fn later_starts_attack_only_the_examples_still_standing() {
        let (model, images, labels) = setup(4, 6);
        let config = PgdConfig {
            eps: 0.02,
            step_size: 0.005,
            steps: 4,
            random_start: true,
            restarts: 3,
            seed: 8,
        };
        let out = PgdLinf(config)
            .run(&model, &images, &labels, &Targeting::Untargeted)
            .unwrap();
        for i in 0..out.len() {
            let g = out.gradient_evaluations[i];
            assert!(g % 4 == 0 && (4..=12).contains(&g), "{g}");
            if !out.success[i] {
                assert_eq!(g, 12, "a failed example ran every start");
            }
        }
    }

    #[test]
    fn an_examples_start_follows_its_identity_not_its_batch() {
        // Labels are the model's own predictions, so every example is attacked; with no
        // step the outcome is the random start itself.
        let (model, images, labels) = setup(5, 4);
        for norm in [Norm::Linf, Norm::L2] {
            let config = PgdConfig {
                eps: 0.2,
                step_size: 0.0,
                steps: 0,
                random_start: true,
                restarts: 1,
                seed: 3,
            };
            let run = |x: &Tensor, l: &[u32], ids: &[u64]| {
                let out = pgd(&config, norm, &model, x, l, &Targeting::Untargeted, ids).unwrap();
                let rows: Vec<Vec<f32>> =
                    out.adversarial.flatten_from(1).unwrap().to_vec2().unwrap();
                rows
            };
            let ids = [10u64, 11, 12, 13];
            let all = run(&images, &labels, &ids);
            // The batch reversed, identities with it: every example starts where it did.
            let order = Tensor::new(&[3u32, 2, 1, 0], images.device()).unwrap();
            let reversed = images.index_select(&order, 0).unwrap();
            let back: Vec<u32> = labels.iter().rev().copied().collect();
            let ids_back: Vec<u64> = ids.iter().rev().copied().collect();
            let rev = run(&reversed, &back, &ids_back);
            for i in 0..4 {
                assert_eq!(all[i], rev[3 - i], "{norm:?} example {i}");
            }
            // Alone in its batch, the same start.
            let alone = run(&images.narrow(0, 2, 1).unwrap(), &labels[2..3], &[12]);
            assert_eq!(alone[0], all[2]);
            // Another identity, another start (inside the ball and the box either way).
            let other = run(&images, &labels, &[20, 21, 22, 23]);
            assert_ne!(other[0], all[0]);
            let x0: Vec<Vec<f32>> = images.flatten_from(1).unwrap().to_vec2().unwrap();
            for (a, x) in all.iter().zip(&x0) {
                assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
                let moved: Vec<f64> = a.iter().zip(x).map(|(a, x)| f64::from(a - x)).collect();
                let size = match norm {
                    Norm::Linf => moved.iter().fold(0.0f64, |m, v| m.max(v.abs())),
                    Norm::L2 => moved.iter().map(|v| v * v).sum::<f64>().sqrt(),
                };
                assert!(size <= 0.2 + 1e-5 && size > 0.0, "{norm:?} {size}");
            }
        }
        // One identity per example.
        let wrong = PgdLinf::madry_mnist().run_examples(
            &model,
            &images,
            &labels,
            &Targeting::Untargeted,
            &[1, 2],
        );
        assert!(wrong.is_err());
    }

    #[test]
    fn madry_preset_is_the_published_one() {
        let PgdLinf(c) = PgdLinf::madry_mnist();
        assert_eq!((c.eps, c.step_size, c.steps), (0.3, 0.01, 40));
        assert!(c.random_start);
    }
}
