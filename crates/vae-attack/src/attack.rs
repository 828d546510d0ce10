//! The batched latent optimisation behind both attacks: Adam on z only, one k and one
//! early stop per (image, target) pair, a trajectory record for the strips.

use candle_core::{DType, Result as CResult, Tensor, Var, D};
use models::{Classifier, Svae};

use crate::config::{LatentAttackConfig, Objective, Start, Stop};
use crate::error::{AttackError, Result};
use crate::loss::{latent_objective, next_k, LossTerms};
use crate::means::ClassMeans;

/// One recorded step of one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajectoryPoint {
    /// Iteration (0 = the start, z = mu(x)).
    pub iteration: usize,
    /// ||z||_2.
    pub z_norm: f32,
    /// J1 = CE(f1(G(z)), y) (0 for the transition).
    pub j1: f32,
    /// J2 = CE(f2(z), t).
    pub j2: f32,
    /// BCE(D(z), 1).
    pub l_dis: f32,
    /// The weight of f1's term: the adaptive k, or the constrained attack's lambda.
    pub k: f32,
    /// f1's logit margin for the kept label (0 for the transition).
    pub margin: f32,
    /// f1's class probabilities on G(z) (empty for the transition).
    pub f1_probs: Vec<f32>,
    /// The oracle's arg-max on G(z), when there is an oracle.
    pub oracle_pred: Option<u32>,
    /// f2's arg-max on z.
    pub f2_pred: u32,
}

/// A decoded image kept along the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Iteration.
    pub iteration: usize,
    /// G(z), 28 x 28 row-major in [0, 1].
    pub pixels: Vec<f32>,
}

/// What happened to one pair.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trajectory {
    /// Every `record_every` iterations (and at the stop).
    pub points: Vec<TrajectoryPoint>,
    /// Every `frame_every` iterations, and at the stop.
    pub frames: Vec<Frame>,
}

/// The result of a latent attack on a batch of pairs.
#[derive(Debug, Clone)]
pub struct LatentOutcome {
    /// Final codes z* (`N x 32`): the code at success, else after the last iteration.
    pub z: Tensor,
    /// G(z*), `N x 1 x 28 x 28`.
    pub images: Tensor,
    /// Success per pair by the run's own rule, judged on z*: with [`Stop::Oracle`], f1
    /// keeps y and the oracle says t (transition: f2 says t, and the oracle too when one
    /// is given); judge-free, f1 keeps y and f2 says t (with [`Stop::Confident`], at its
    /// probability and margin). Judges give their verdicts on `images` afterwards.
    pub success: Vec<bool>,
    /// Iterations run per pair (the iteration of success with early stop).
    pub iterations: Vec<usize>,
    /// f1's arg-max on G(z*) (Type I only; empty otherwise).
    pub f1_pred: Vec<u32>,
    /// f1's logit margin for the kept label on G(z*) (Type I only; empty otherwise).
    pub margin: Vec<f32>,
    /// f2's probability of the target at z*.
    pub f2_prob: Vec<f32>,
    /// The oracle's arg-max on G(z*) (empty without an oracle).
    pub oracle_pred: Vec<u32>,
    /// f2's arg-max on z*.
    pub f2_pred: Vec<u32>,
    /// ||G(z*) - x||_2 per pair.
    pub l2: Vec<f32>,
    /// ||G(z*) - x||_inf per pair.
    pub linf: Vec<f32>,
    /// Per-pair records.
    pub trajectories: Vec<Trajectory>,
}

fn argmax_rows(logits: &Tensor) -> CResult<Vec<u32>> {
    logits.argmax(D::Minus1)?.to_vec1()
}

fn rows_f32(t: &Tensor) -> CResult<Vec<f32>> {
    t.to_dtype(DType::F32)?.to_vec1()
}

/// Checks the images and labels of a batch of pairs.
fn validate(images: &Tensor, targets: &[u32], keep: Option<&[u32]>) -> Result<usize> {
    let dims = images.dims();
    if dims.len() != 4 || dims[1..] != [1, 28, 28] {
        return Err(AttackError::InvalidInput(format!(
            "images must be N x 1 x 28 x 28, got {dims:?}"
        )));
    }
    let n = dims[0];
    if n == 0 {
        return Err(AttackError::InvalidInput("no image to attack".into()));
    }
    if targets.len() != n || keep.is_some_and(|k| k.len() != n) {
        return Err(AttackError::InvalidInput(format!(
            "{n} images but {} targets{}",
            targets.len(),
            keep.map(|k| format!(" and {} labels", k.len()))
                .unwrap_or_default()
        )));
    }
    if let Some(bad) = targets
        .iter()
        .chain(keep.unwrap_or(&[]))
        .find(|&&c| c >= 10)
    {
        return Err(AttackError::InvalidInput(format!(
            "class {bad} is outside 0..=9"
        )));
    }
    let lo = images.min_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let hi = images.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) {
        return Err(AttackError::InvalidInput(format!(
            "pixels must lie in [0, 1], found [{lo}, {hi}]"
        )));
    }
    Ok(n)
}

/// The verdict at some z: success per pair and the arg-max of f2, f1 and the oracle.
struct Verdict {
    success: Vec<bool>,
    f2_pred: Vec<u32>,
    f2_prob: Vec<f32>,
    f1_pred: Option<Vec<u32>>,
    margin: Option<Vec<f32>>,
    oracle_pred: Option<Vec<u32>>,
}

/// Who takes part in the run, and the rule that says a pair is done.
struct Judge<'a> {
    f1: Option<&'a dyn Classifier>,
    /// Only with [`Stop::Oracle`] (or the transition checked by an oracle).
    oracle: Option<&'a dyn Classifier>,
    keep: Vec<u32>,
    targets: &'a [u32],
    stop: Stop,
}

impl Judge<'_> {
    /// Success per pair from the terms at the current z. The oracle (when there is one)
    /// is asked every iteration only with [`Stop::Oracle`], and always on the final codes.
    fn verdict(&self, terms: &LossTerms, last: bool) -> Result<Verdict> {
        let f2_pred = argmax_rows(&terms.f2_logits)?;
        let t = Tensor::from_vec(
            self.targets.to_vec(),
            self.targets.len(),
            terms.f2_logits.device(),
        )?;
        let f2_prob = rows_f32(
            &candle_nn::ops::softmax(&terms.f2_logits, D::Minus1)?
                .gather(&t.unsqueeze(1)?, 1)?
                .squeeze(1)?,
        )?;
        let image_prob = terms
            .f2_image_logits
            .as_ref()
            .map(|l| {
                rows_f32(
                    &candle_nn::ops::softmax(l, D::Minus1)?
                        .gather(&t.unsqueeze(1)?, 1)?
                        .squeeze(1)?,
                )
            })
            .transpose()?;
        let f1_pred = terms.f1_logits.as_ref().map(argmax_rows).transpose()?;
        let margin = terms.margin.as_ref().map(rows_f32).transpose()?;
        let oracle_pred = match self.oracle {
            Some(o) if last || self.stop == Stop::Oracle => {
                Some(o.predict(&terms.images.detach())?)
            }
            _ => None,
        };
        let ok = (0..self.targets.len())
            .map(|i| {
                let target = self.targets[i];
                let oracle_ok = oracle_pred.as_ref().is_none_or(|p| p[i] == target);
                let kept = f1_pred.as_ref().is_none_or(|p| p[i] == self.keep[i]);
                match (self.stop, &f1_pred) {
                    (
                        Stop::Confident {
                            f2_prob: p,
                            margin: m,
                        },
                        _,
                    ) => {
                        let margin_ok = margin.as_ref().is_none_or(|v| f64::from(v[i]) >= m);
                        let image_ok = image_prob.as_ref().is_none_or(|v| f64::from(v[i]) >= p);
                        f2_pred[i] == target
                            && f64::from(f2_prob[i]) >= p
                            && kept
                            && margin_ok
                            && image_ok
                    }
                    (_, Some(_)) => kept && oracle_ok,
                    (_, None) => f2_pred[i] == target && oracle_ok,
                }
            })
            .collect();
        Ok(Verdict {
            success: ok,
            f2_pred,
            f2_prob,
            f1_pred,
            margin,
            oracle_pred,
        })
    }
}

/// Runs the latent optimisation. `f1 = None` is the class transition.
fn run(
    svae: &Svae,
    judge: Judge<'_>,
    images: &Tensor,
    means: Option<&ClassMeans>,
    config: &LatentAttackConfig,
) -> Result<LatentOutcome> {
    let n = images.dim(0)?;
    let device = images.device();
    let dtype = images.dtype();
    // The SVAE sees binarised digits (pixel > 127 of 255).
    let binary = images.gt(127.0 / 255.0)?.to_dtype(dtype)?;
    let (mu, _) = svae.encode(&binary)?;
    let z0 = match config.start {
        Start::Mu => mu.detach(),
        Start::TowardsTarget { fraction } => {
            if !(0.0..=1.0).contains(&fraction) {
                return Err(AttackError::InvalidInput(format!(
                    "the start fraction must lie in [0, 1], got {fraction}"
                )));
            }
            let means = means.ok_or_else(|| {
                AttackError::InvalidInput(
                    "a start towards the target needs the class means of the training images"
                        .into(),
                )
            })?;
            let target_means = means.rows(judge.targets)?.to_dtype(dtype)?;
            ((mu.detach() * (1.0 - fraction))? + (target_means * fraction)?)?
        }
    };
    let z = Var::from_tensor(&z0)?;
    let t_tensor = Tensor::from_vec(judge.targets.to_vec(), n, device)?;
    let y_tensor = Tensor::from_vec(judge.keep.clone(), n, device)?;
    let mut k = match config.objective {
        Objective::Paper(_) => vec![0f64; n],
        Objective::Constrained(c) => vec![c.lambda0; n],
    };
    let mut m = mu.zeros_like()?.detach();
    let mut v = m.clone();
    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut active = vec![true; n];
    let mut iterations = vec![config.max_iters; n];
    let mut trajectories = vec![Trajectory::default(); n];

    for it in 0..=config.max_iters {
        let k_tensor = Tensor::from_vec(k.clone(), n, device)?.to_dtype(dtype)?;
        let terms = latent_objective(
            svae,
            judge.f1,
            z.as_tensor(),
            &t_tensor,
            &y_tensor,
            &k_tensor,
            config,
        )?;
        let Verdict {
            success: succeeded,
            f2_pred,
            oracle_pred,
            ..
        } = judge.verdict(&terms, false)?;
        let last = it == config.max_iters;
        let stops: Vec<bool> = (0..n)
            .map(|i| active[i] && (last || (config.stop != Stop::Budget && succeeded[i])))
            .collect();
        let j1 = terms.j1.as_ref().map(rows_f32).transpose()?;
        let j2 = rows_f32(&terms.j2)?;
        let margins = terms.margin.as_ref().map(rows_f32).transpose()?;
        let point_due = config.record_every > 0 && it % config.record_every == 0;
        let frame_due = config.frame_every > 0 && it % config.frame_every == 0;
        let any_stop = stops.iter().any(|&s| s);
        // Frames are kept whether or not a point is due, so any frame_every works.
        let record =
            point_due || frame_due || (any_stop && config.record_every + config.frame_every > 0);
        if record {
            let z_norm = rows_f32(&terms.z_norm)?;
            let l_dis = rows_f32(&terms.l_dis)?;
            let probs: Option<Vec<Vec<f32>>> = terms
                .f1_logits
                .as_ref()
                .map(|l| {
                    candle_nn::ops::softmax(l, D::Minus1)?
                        .to_dtype(DType::F32)?
                        .to_vec2()
                })
                .transpose()?;
            let pixels: Option<Vec<Vec<f32>>> = if frame_due || stops.iter().any(|&s| s) {
                Some(
                    terms
                        .images
                        .flatten_from(1)?
                        .to_dtype(DType::F32)?
                        .to_vec2()?,
                )
            } else {
                None
            };
            for i in (0..n).filter(|&i| active[i]) {
                if (point_due || stops[i]) && config.record_every > 0 {
                    trajectories[i].points.push(TrajectoryPoint {
                        iteration: it,
                        z_norm: z_norm[i],
                        j1: j1.as_ref().map_or(0.0, |j| j[i]),
                        j2: j2[i],
                        l_dis: l_dis[i],
                        k: k[i] as f32,
                        margin: margins.as_ref().map_or(0.0, |m| m[i]),
                        f1_probs: probs.as_ref().map(|p| p[i].clone()).unwrap_or_default(),
                        oracle_pred: oracle_pred.as_ref().map(|p| p[i]),
                        f2_pred: f2_pred[i],
                    });
                }
                if let Some(px) = &pixels {
                    if (frame_due || stops[i]) && config.frame_every > 0 {
                        trajectories[i].frames.push(Frame {
                            iteration: it,
                            pixels: px[i].clone(),
                        });
                    }
                }
            }
        }
        for i in 0..n {
            if stops[i] {
                active[i] = false;
                iterations[i] = it;
            }
        }
        if active.iter().all(|a| !a) {
            break;
        }
        // One Adam step, applied to the rows still active (a stopped pair keeps its z).
        let grads = terms.total.sum_all()?.backward()?;
        let g = grads
            .get(z.as_tensor())
            .ok_or_else(|| AttackError::InvalidInput("no gradient reached z".into()))?
            .detach();
        let t = (it + 1) as i32;
        m = ((&m * beta1)? + (&g * (1.0 - beta1))?)?;
        v = ((&v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
        let step =
            ((&m / (1.0 - beta1.powi(t)))? / ((&v / (1.0 - beta2.powi(t)))?.sqrt()? + eps)?)?;
        let mask: Vec<f64> = active.iter().map(|&a| if a { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, (n, 1), device)?.to_dtype(dtype)?;
        let next = (z.as_tensor() - (step.broadcast_mul(&mask)? * config.lr)?)?;
        z.set(&next.detach())?;
        match (&config.objective, &j1, &margins) {
            (Objective::Paper(adaptive), Some(j1), _) => {
                for i in (0..n).filter(|&i| active[i]) {
                    k[i] = next_k(k[i], f64::from(j1[i]), f64::from(j2[i]), adaptive);
                }
            }
            (Objective::Constrained(c), _, Some(m)) => {
                for i in (0..n).filter(|&i| active[i]) {
                    k[i] = c.next_lambda(k[i], f64::from(m[i]));
                }
            }
            _ => {}
        }
    }

    // Judge the final codes.
    let z_final = z.as_tensor().detach();
    let zeros = Tensor::zeros(n, dtype, device)?;
    let terms = latent_objective(
        svae, judge.f1, &z_final, &t_tensor, &y_tensor, &zeros, config,
    )?;
    let Verdict {
        success,
        f2_pred,
        f2_prob,
        f1_pred,
        margin,
        oracle_pred,
    } = judge.verdict(&terms, true)?;
    let out_images = terms.images.detach();
    let diff = (&out_images - images)?.flatten_from(1)?;
    Ok(LatentOutcome {
        z: z_final,
        l2: rows_f32(&diff.sqr()?.sum(D::Minus1)?.sqrt()?)?,
        linf: rows_f32(&diff.abs()?.max(D::Minus1)?)?,
        images: out_images,
        success,
        iterations,
        f1_pred: f1_pred.unwrap_or_default(),
        margin: margin.unwrap_or_default(),
        f2_prob,
        oracle_pred: oracle_pred.unwrap_or_default(),
        f2_pred,
        trajectories,
    })
}

/// The class transition: moves z from mu(x) towards class `targets[i]` of the latent
/// classifier (L = CE(f2(z), t) + 0.01 BCE(D(z), 1) + 5e-4 ||z||), Adam on z only.
/// Success: f2 says t (and the oracle too, when one is given and the stop rule is
/// [`Stop::Oracle`]).
pub fn class_transition(
    svae: &Svae,
    oracle: Option<&dyn Classifier>,
    images: &Tensor,
    targets: &[u32],
    config: &LatentAttackConfig,
) -> Result<LatentOutcome> {
    let n = validate(images, targets, None)?;
    let judge = Judge {
        f1: None,
        oracle,
        keep: vec![0; n],
        targets,
        stop: config.stop,
    };
    run(svae, judge, images, None, config)
}

/// The Type I attack as the study reproduces it: the image should become `targets[i]`
/// for the oracle while f1 keeps `keep[i]` (usually f1's own label of the clean image).
/// With [`Stop::Oracle`] a pair stops at the first iterate where f1 keeps its label and
/// the oracle says the target, so the oracle takes part in the attack; with another
/// stop rule the oracle is not asked (use [`type_one_attack_judge_free`]).
#[allow(clippy::too_many_arguments)]
pub fn type_one_attack(
    svae: &Svae,
    f1: &dyn Classifier,
    oracle: &dyn Classifier,
    images: &Tensor,
    keep: &[u32],
    targets: &[u32],
    means: Option<&ClassMeans>,
    config: &LatentAttackConfig,
) -> Result<LatentOutcome> {
    validate(images, targets, Some(keep))?;
    let judge = Judge {
        f1: Some(f1),
        oracle: Some(oracle),
        keep: keep.to_vec(),
        targets,
        stop: config.stop,
    };
    run(svae, judge, images, means, config)
}

/// A Type I attack that sees f1, the SVAE and (for a start towards the target) the class
/// means of training images, never a judge: either objective of
/// [`LatentAttackConfig::objective`], stopping on the budget or on [`Stop::Confident`].
/// Judges see only the returned images. [`Stop::Oracle`] is refused.
pub fn type_one_attack_judge_free(
    svae: &Svae,
    f1: &dyn Classifier,
    images: &Tensor,
    keep: &[u32],
    targets: &[u32],
    means: Option<&ClassMeans>,
    config: &LatentAttackConfig,
) -> Result<LatentOutcome> {
    validate(images, targets, Some(keep))?;
    if config.stop == Stop::Oracle {
        return Err(AttackError::InvalidInput(
            "a judge-free attack cannot stop on the oracle's verdict".into(),
        ));
    }
    let judge = Judge {
        f1: Some(f1),
        oracle: None,
        keep: keep.to_vec(),
        targets,
        stop: config.stop,
    };
    run(svae, judge, images, means, config)
}
