//! The batched latent optimisation behind both attacks: Adam on z only, one k and one
//! early stop per (image, target) pair, a trajectory record for the strips.

use candle_core::{DType, Result as CResult, Tensor, Var, D};
use models::{Classifier, Svae};

use crate::config::{LatentAttackConfig, Objective, Start, Stop};
use crate::error::{AttackError, Result};
use crate::loss::{f1_terms, latent_objective, latent_terms, next_k, LossTerms};
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

/// The terms of the objective at the current codes of some pairs: row `r` belongs to
/// pair `rows[r]`.
struct Iterate {
    rows: Vec<usize>,
    j2: Tensor,
    l_dis: Tensor,
    z_norm: Tensor,
    f2_logits: Tensor,
    j1: Option<Tensor>,
    margin: Option<Tensor>,
    f1_logits: Option<Tensor>,
    f2_image_logits: Option<Tensor>,
    /// G(z), when it was needed (always with f1).
    images: Option<Tensor>,
}

impl Iterate {
    fn from_terms(rows: Vec<usize>, t: LossTerms) -> Self {
        Self {
            rows,
            j2: t.j2,
            l_dis: t.l_dis,
            z_norm: t.z_norm,
            f2_logits: t.f2_logits,
            j1: t.j1,
            margin: t.margin,
            f1_logits: t.f1_logits,
            f2_image_logits: t.f2_image_logits,
            images: Some(t.images),
        }
    }

    /// The rows of several groups, one after the other.
    fn concat(mut parts: Vec<Self>) -> CResult<Self> {
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        let cat = |f: &dyn Fn(&Self) -> &Tensor| -> CResult<Tensor> {
            Tensor::cat(&parts.iter().map(f).collect::<Vec<_>>(), 0)
        };
        let cat_opt = |f: &dyn Fn(&Self) -> Option<&Tensor>| -> CResult<Option<Tensor>> {
            let found: Option<Vec<&Tensor>> = parts.iter().map(f).collect();
            found.map(|v| Tensor::cat(&v, 0)).transpose()
        };
        Ok(Self {
            rows: parts.iter().flat_map(|p| p.rows.clone()).collect(),
            j2: cat(&|p| &p.j2)?,
            l_dis: cat(&|p| &p.l_dis)?,
            z_norm: cat(&|p| &p.z_norm)?,
            f2_logits: cat(&|p| &p.f2_logits)?,
            j1: cat_opt(&|p| p.j1.as_ref())?,
            margin: cat_opt(&|p| p.margin.as_ref())?,
            f1_logits: cat_opt(&|p| p.f1_logits.as_ref())?,
            f2_image_logits: cat_opt(&|p| p.f2_image_logits.as_ref())?,
            images: cat_opt(&|p| p.images.as_ref())?,
        })
    }
}

/// The verdict at some z: success per row and the arg-max of f2, f1 and the oracle.
struct Verdict {
    success: Vec<bool>,
    f2_pred: Vec<u32>,
    f2_prob: Vec<f32>,
    f1_pred: Option<Vec<u32>>,
    margin: Option<Vec<f32>>,
    /// Per row, when the oracle was asked about it.
    oracle_pred: Option<Vec<Option<u32>>>,
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
    /// Whether the oracle is asked at this iterate (every iteration only with
    /// [`Stop::Oracle`], and always on the final codes).
    fn asks_oracle(&self, last: bool) -> bool {
        self.oracle.is_some() && (last || self.stop == Stop::Oracle)
    }

    /// Success per row of `terms`, from the terms at its current z. The oracle is asked
    /// about every row when `last` or `every_row` (a trajectory point records its
    /// answer), otherwise only about the rows that every other condition already calls
    /// a success: its answer cannot change another row's verdict.
    fn verdict(&self, terms: &Iterate, last: bool, every_row: bool) -> Result<Verdict> {
        let rows = &terms.rows;
        let f2_pred = argmax_rows(&terms.f2_logits)?;
        let targets: Vec<u32> = rows.iter().map(|&i| self.targets[i]).collect();
        let t = Tensor::from_vec(targets.clone(), rows.len(), terms.f2_logits.device())?;
        let target_prob = |l: &Tensor| {
            rows_f32(
                &candle_nn::ops::softmax(l, D::Minus1)?
                    .gather(&t.unsqueeze(1)?, 1)?
                    .squeeze(1)?,
            )
        };
        let f2_prob = target_prob(&terms.f2_logits)?;
        let image_prob = terms
            .f2_image_logits
            .as_ref()
            .map(target_prob)
            .transpose()?;
        let f1_pred = terms.f1_logits.as_ref().map(argmax_rows).transpose()?;
        let margin = terms.margin.as_ref().map(rows_f32).transpose()?;
        // Success per row before the oracle's say.
        let before_oracle: Vec<bool> = (0..rows.len())
            .map(|r| {
                let target = targets[r];
                let kept = f1_pred.as_ref().is_none_or(|p| p[r] == self.keep[rows[r]]);
                match (self.stop, &f1_pred) {
                    (
                        Stop::Confident {
                            f2_prob: p,
                            margin: m,
                        },
                        _,
                    ) => {
                        let margin_ok = margin.as_ref().is_none_or(|v| f64::from(v[r]) >= m);
                        let image_ok = image_prob.as_ref().is_none_or(|v| f64::from(v[r]) >= p);
                        f2_pred[r] == target
                            && f64::from(f2_prob[r]) >= p
                            && kept
                            && margin_ok
                            && image_ok
                    }
                    (_, Some(_)) => kept,
                    (_, None) => f2_pred[r] == target,
                }
            })
            .collect();
        let oracle_pred = match self.oracle {
            Some(o) if self.asks_oracle(last) => {
                let images = terms.images.as_ref().ok_or_else(|| {
                    AttackError::InvalidInput("the oracle needs the decoded images".into())
                })?;
                let asked: Vec<usize> = (0..rows.len())
                    .filter(|&r| last || every_row || before_oracle[r])
                    .collect();
                let mut answers = vec![None; rows.len()];
                if !asked.is_empty() {
                    let images = images.detach();
                    let images = if asked.len() == rows.len() {
                        images
                    } else {
                        let index = Tensor::from_vec(
                            asked.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                            asked.len(),
                            images.device(),
                        )?;
                        images.index_select(&index, 0)?
                    };
                    for (&r, p) in asked.iter().zip(o.predict(&images)?) {
                        answers[r] = Some(p);
                    }
                }
                Some(answers)
            }
            _ => None,
        };
        // The judge-free stop never takes the oracle's word, even on the final codes.
        let oracle_judges = !matches!(self.stop, Stop::Confident { .. });
        let success = (0..rows.len())
            .map(|r| {
                before_oracle[r]
                    && (!oracle_judges
                        || oracle_pred
                            .as_ref()
                            .is_none_or(|p| p[r] == Some(targets[r])))
            })
            .collect();
        Ok(Verdict {
            success,
            f2_pred,
            f2_prob,
            f1_pred,
            margin,
            oracle_pred,
        })
    }
}

/// Pairs whose codes move together in one iteration: the objective's total (to
/// differentiate) and the code it was computed at.
struct Group {
    rows: Vec<usize>,
    z: Var,
    total: Tensor,
}

/// Stacks the rows `rows` of per-pair 1-D tensors.
fn stack_rows(all: &[Tensor], rows: &[usize]) -> CResult<Tensor> {
    Tensor::stack(&rows.iter().map(|&i| &all[i]).collect::<Vec<_>>(), 0)
}

/// Runs the latent optimisation. `f1 = None` is the class transition.
///
/// Each iteration computes only what the pairs still running need, and differentiates
/// only what carries a gradient: stopped pairs leave the batch; a pair whose f1 weight is
/// zero (the adaptive k starts at 0 and often stays there for hundreds of iterations)
/// has G(z) and f1 evaluated on a detached code, so the backward through the decoder and
/// f1 (most of an iteration's work) is skipped; in the constrained objective only the
/// pairs whose hinge is active go through f1's backward (`loss::hinge_term`); the
/// oracle of the early stop is asked only about the pairs whose other conditions
/// already hold (and about every pair at a trajectory point). None changes the
/// arithmetic: every operation is row-wise, a row's bits do not depend on the batch it
/// comes in (the models' `batch_independence` tests), and a skipped gradient is zero
/// (`0 * dJ1/dz`, or an inactive hinge's). The transition decodes G(z) only when an
/// oracle or a frame asks for it.
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
    // Per pair: the code and Adam's moments.
    let mut z: Vec<Tensor> = (0..n).map(|i| z0.get(i)).collect::<CResult<_>>()?;
    let zeros = z0.get(0)?.zeros_like()?;
    let mut m = vec![zeros.clone(); n];
    let mut v = vec![zeros; n];
    let mut k = match config.objective {
        Objective::Paper(_) => vec![0f64; n],
        Objective::Constrained(c) => vec![c.lambda0; n],
    };
    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut active = vec![true; n];
    let mut iterations = vec![config.max_iters; n];
    let mut trajectories = vec![Trajectory::default(); n];
    // The image term of the constrained objective reaches z through G for every pair.
    let image_term = matches!(config.objective, Objective::Constrained(c) if c.image_weight > 0.0);
    let labels = |rows: &[usize], of: &[u32]| {
        Tensor::from_vec(
            rows.iter().map(|&i| of[i]).collect::<Vec<_>>(),
            rows.len(),
            device,
        )
    };

    for it in 0..=config.max_iters {
        let last = it == config.max_iters;
        let (heavy, light): (Vec<usize>, Vec<usize>) = (0..n)
            .filter(|&i| active[i])
            .partition(|&i| image_term || (judge.f1.is_some() && k[i] != 0.0));
        let mut groups = Vec::new();
        let mut parts = Vec::new();
        for (rows, through_images) in [(heavy, true), (light, false)] {
            if rows.is_empty() {
                continue;
            }
            let zg = Var::from_tensor(&stack_rows(&z, &rows)?)?;
            let t = labels(&rows, judge.targets)?;
            let y = labels(&rows, &judge.keep)?;
            let (total, part) = if through_images {
                let w: Vec<f64> = rows.iter().map(|&i| k[i]).collect();
                let w = Tensor::from_vec(w, rows.len(), device)?.to_dtype(dtype)?;
                let terms = latent_objective(svae, judge.f1, zg.as_tensor(), &t, &y, &w, config)?;
                (
                    terms.total.clone(),
                    Iterate::from_terms(rows.clone(), terms),
                )
            } else {
                let decode = judge.f1.is_some() || judge.asks_oracle(false);
                let terms = latent_terms(svae, zg.as_tensor(), &t, config)?;
                let images = decode
                    .then(|| svae.decode(&zg.as_tensor().detach()))
                    .transpose()?;
                let f1_terms = match (judge.f1, &images) {
                    (Some(f1), Some(images)) => Some(f1_terms(f1, images, &y)?),
                    _ => None,
                };
                let (j1, margin, f1_logits) = match f1_terms {
                    Some((j1, margin, logits)) => (Some(j1), Some(margin), Some(logits)),
                    None => (None, None, None),
                };
                let part = Iterate {
                    rows: rows.clone(),
                    j2: terms.j2,
                    l_dis: terms.l_dis,
                    z_norm: terms.z_norm,
                    f2_logits: terms.f2_logits,
                    j1,
                    margin,
                    f1_logits,
                    f2_image_logits: None,
                    images,
                };
                (terms.total, part)
            };
            groups.push(Group { rows, z: zg, total });
            parts.push(part);
        }
        let mut terms = Iterate::concat(parts)?;
        let rows = terms.rows.clone();
        let point_due = config.record_every > 0 && it % config.record_every == 0;
        // A trajectory point records the oracle's answer for every row.
        let every_row = point_due || (last && config.record_every > 0);
        let Verdict {
            success: succeeded,
            f2_pred,
            oracle_pred,
            ..
        } = judge.verdict(&terms, false, every_row)?;
        let stops: Vec<bool> = (0..rows.len())
            .map(|r| last || (config.stop != Stop::Budget && succeeded[r]))
            .collect();
        let j1 = terms.j1.as_ref().map(rows_f32).transpose()?;
        let j2 = rows_f32(&terms.j2)?;
        let margins = terms.margin.as_ref().map(rows_f32).transpose()?;
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
            let frames = config.frame_every > 0 && (frame_due || any_stop);
            if frames && terms.images.is_none() {
                terms.images = Some(svae.decode(&stack_rows(&z, &rows)?)?);
            }
            let pixels: Option<Vec<Vec<f32>>> = match (&terms.images, frames) {
                (Some(images), true) => {
                    Some(images.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?)
                }
                _ => None,
            };
            for (r, &i) in rows.iter().enumerate() {
                if (point_due || stops[r]) && config.record_every > 0 {
                    trajectories[i].points.push(TrajectoryPoint {
                        iteration: it,
                        z_norm: z_norm[r],
                        j1: j1.as_ref().map_or(0.0, |j| j[r]),
                        j2: j2[r],
                        l_dis: l_dis[r],
                        k: k[i] as f32,
                        margin: margins.as_ref().map_or(0.0, |m| m[r]),
                        f1_probs: probs.as_ref().map(|p| p[r].clone()).unwrap_or_default(),
                        oracle_pred: oracle_pred.as_ref().and_then(|p| p[r]),
                        f2_pred: f2_pred[r],
                    });
                }
                if let Some(px) = &pixels {
                    if frame_due || stops[r] {
                        trajectories[i].frames.push(Frame {
                            iteration: it,
                            pixels: px[r].clone(),
                        });
                    }
                }
            }
        }
        for (r, &i) in rows.iter().enumerate() {
            if stops[r] {
                active[i] = false;
                iterations[i] = it;
            }
        }
        if active.iter().all(|a| !a) {
            break;
        }
        // One Adam step per group, applied to the pairs still running (a stopped pair
        // keeps its z).
        let t = (it + 1) as i32;
        for group in groups {
            if group.rows.iter().all(|&i| !active[i]) {
                continue;
            }
            let grads = group.total.sum_all()?.backward()?;
            let g = grads
                .get(group.z.as_tensor())
                .ok_or_else(|| AttackError::InvalidInput("no gradient reached z".into()))?
                .detach();
            let mg = ((stack_rows(&m, &group.rows)? * beta1)? + (&g * (1.0 - beta1))?)?;
            let vg = ((stack_rows(&v, &group.rows)? * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let step =
                ((&mg / (1.0 - beta1.powi(t)))? / ((&vg / (1.0 - beta2.powi(t)))?.sqrt()? + eps)?)?;
            let next = (group.z.as_tensor().detach() - (step * config.lr)?)?;
            for (r, &i) in group.rows.iter().enumerate() {
                if active[i] {
                    z[i] = next.get(r)?;
                    m[i] = mg.get(r)?;
                    v[i] = vg.get(r)?;
                }
            }
        }
        let by_row: std::collections::HashMap<usize, usize> =
            rows.iter().enumerate().map(|(r, &i)| (i, r)).collect();
        match (&config.objective, &j1, &margins) {
            (Objective::Paper(adaptive), Some(j1), _) => {
                for i in (0..n).filter(|&i| active[i]) {
                    let r = by_row[&i];
                    k[i] = next_k(k[i], f64::from(j1[r]), f64::from(j2[r]), adaptive);
                }
            }
            (Objective::Constrained(c), _, Some(mg)) => {
                for i in (0..n).filter(|&i| active[i]) {
                    k[i] = c.next_lambda(k[i], f64::from(mg[by_row[&i]]));
                }
            }
            _ => {}
        }
    }

    // Judge the final codes.
    let z_final = Tensor::stack(&z, 0)?;
    let zeros = Tensor::zeros(n, dtype, device)?;
    let t_all = Tensor::from_vec(judge.targets.to_vec(), n, device)?;
    let y_all = Tensor::from_vec(judge.keep.clone(), n, device)?;
    let terms = latent_objective(svae, judge.f1, &z_final, &t_all, &y_all, &zeros, config)?;
    let terms = Iterate::from_terms((0..n).collect(), terms);
    let Verdict {
        success,
        f2_pred,
        f2_prob,
        f1_pred,
        margin,
        oracle_pred,
    } = judge.verdict(&terms, true, true)?;
    let out_images = terms
        .images
        .ok_or_else(|| AttackError::InvalidInput("no decoded image".into()))?
        .detach();
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
        oracle_pred: oracle_pred
            .map(|p| p.into_iter().flatten().collect())
            .unwrap_or_default(),
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
