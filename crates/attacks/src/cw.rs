//! Carlini-Wagner L2 (Carlini and Wagner, "Towards Evaluating the Robustness of Neural
//! Networks", IEEE S&P 2017), as in the authors' `nn_robust_attacks/l2_attack.py`:
//! the tanh change of variables, Adam, and a binary search over the constant `c`.

use candle_core::{Tensor, Var};
use models::Classifier;

use crate::attack::{check_examples, check_non_negative, Attack};
use crate::batch::{Batch, Targeting};
use crate::error::{invalid, Result};
use crate::gradient::{degenerate_rows, margin_per_example, nonfinite_rows, zero_rows};
use crate::ops::{class_tensor, gather_rows, scatter_rows, to_f64s};
use crate::outcome::AttackOutcome;

/// Keeps `atanh` finite at pixels of exactly 0 or 1 (the authors' factor).
const TANH_SHRINK: f64 = 0.999_999;
/// "No upper bound on c found yet" (the authors' 1e10).
const NO_UPPER_BOUND: f64 = 1e10;

/// With `x' = (tanh w + 1) / 2` (always in the box), minimises
/// `||x' - x||_2^2 + c f(x')` over `w` with Adam, where
/// `f = max(max_{j != t} Z_j - Z_t, -kappa)` for a target `t` and
/// `f = max(Z_y - max_{j != y} Z_j, -kappa)` untargeted: the best other logit itself,
/// never floored at 0. Each of `binary_search_steps` rounds restarts from
/// `w = atanh(2x - 1)`; after a round, `c` is bisected between the largest failing and the smallest
/// succeeding value, or multiplied by 10 while no success is known. Every example keeps
/// its smallest successful perturbation over all rounds; an example never broken keeps
/// its clean image. A success needs the margin to pass `kappa`; one gradient per example
/// per Adam step. With `abort_early`, an example stops its round once its own loss has
/// not fallen by 0.01% over a tenth of the steps (the authors' check, whose default batch
/// is one example), so its result does not depend on the rest of its batch, and the batch
/// shrinks as its examples converge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarliniWagnerL2 {
    /// Confidence `kappa` (paper: 0).
    pub kappa: f64,
    /// Adam's learning rate (paper: 1e-2).
    pub learning_rate: f64,
    /// Adam steps per round (paper: 10 000). Background pixels start saturated near
    /// `w = atanh(-1)`, and Adam moves `w` by about `learning_rate` a step, so too few
    /// steps leave them fixed: on a trained MNIST MLP (50 test images) 100 steps broke
    /// 62% of the images, 1 000 steps 100% at mean L2 0.681 (DeepFool: 0.686).
    pub steps: usize,
    /// Rounds of the search over `c` (paper: 9).
    pub binary_search_steps: usize,
    /// The first `c` (paper: 1e-3).
    pub initial_const: f64,
    /// An example stops a round once its loss has not fallen by 0.01% over a tenth of the
    /// steps (paper: on).
    pub abort_early: bool,
}

impl Default for CarliniWagnerL2 {
    /// The authors' defaults: kappa 0, lr 1e-2, 10 000 steps, 9 rounds, c0 1e-3, abort
    /// early.
    fn default() -> Self {
        Self {
            kappa: 0.0,
            learning_rate: 1e-2,
            steps: 10_000,
            binary_search_steps: 9,
            initial_const: 1e-3,
            abort_early: true,
        }
    }
}

impl CarliniWagnerL2 {
    fn check(&self) -> Result<()> {
        check_non_negative("kappa", self.kappa)?;
        check_non_negative("learning rate", self.learning_rate)?;
        check_non_negative("initial constant", self.initial_const)?;
        if self.binary_search_steps == 0 {
            return Err(invalid("CW needs at least one binary search step"));
        }
        Ok(())
    }
}

/// Adam (Kingma and Ba) on one tensor, with the authors' TensorFlow defaults.
struct Adam {
    lr: f64,
    m: Tensor,
    v: Tensor,
    t: i32,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    fn new(lr: f64, like: &Tensor) -> Result<Self> {
        Ok(Self {
            lr,
            m: like.zeros_like()?,
            v: like.zeros_like()?,
            t: 0,
        })
    }

    fn step(&mut self, w: &Tensor, g: &Tensor) -> Result<Tensor> {
        self.t += 1;
        self.m = ((&self.m * Self::BETA1)? + (g * (1.0 - Self::BETA1))?)?;
        self.v = ((&self.v * Self::BETA2)? + (g.sqr()? * (1.0 - Self::BETA2))?)?;
        let m_hat = (&self.m / (1.0 - Self::BETA1.powi(self.t)))?;
        let v_hat = (&self.v / (1.0 - Self::BETA2.powi(self.t)))?;
        let update = (m_hat / (v_hat.sqrt()? + Self::EPS)?)?;
        Ok((w - (update * self.lr)?)?)
    }

    /// Keeps only the moments of the rows at `rows` (examples that stopped drop out).
    fn keep_rows(&mut self, rows: &[usize]) -> Result<()> {
        self.m = gather_rows(&self.m, rows)?;
        self.v = gather_rows(&self.v, rows)?;
        Ok(())
    }
}

impl Attack for CarliniWagnerL2 {
    fn name(&self) -> &'static str {
        "cw-l2"
    }

    fn run_examples(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
        examples: &[u64],
    ) -> Result<AttackOutcome> {
        self.run_examples_observed(model, images, labels, targeting, examples, &mut |_| {})
    }

    fn run_examples_observed(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
        examples: &[u64],
        observe: &mut dyn FnMut(f64),
    ) -> Result<AttackOutcome> {
        check_examples(examples, labels)?;
        Ok(self.search(model, images, labels, targeting, observe)?.0)
    }
}

/// One round of the search over `c` for one example: the constant tried, whether any
/// Adam step reached the goal, and the smallest successful L2 distance of the round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Round {
    pub c: f64,
    pub success: bool,
    pub best_l2: Option<f64>,
}

impl CarliniWagnerL2 {
    /// The attack, and per example the rounds of its search over `c` (none for an
    /// example that was not attackable). `observe` gets the fraction of the rounds' steps
    /// passed after each Adam step (an early stop of every example skips ahead).
    pub(crate) fn search(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
        observe: &mut dyn FnMut(f64),
    ) -> Result<(AttackOutcome, Vec<Vec<Round>>)> {
        self.check()?;
        let batch = Batch::new(model, images, labels, targeting)?;
        let n = batch.len();
        let active: Vec<usize> = (0..n).filter(|&i| batch.is_attackable(i)).collect();
        let mut evaluations = vec![0usize; n];
        let mut degenerate = vec![false; n];
        let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); n];
        if active.is_empty() {
            let clean = batch.images.clone();
            let outcome = AttackOutcome::new(model, batch, clean, evaluations, degenerate)?;
            return Ok((outcome, rounds));
        }
        let na = active.len();
        let targeted = batch.targets.is_some();
        let x0 = gather_rows(&batch.images, &active)?;
        let goal: Vec<u32> = active.iter().map(|&i| batch.goal_classes()[i]).collect();
        let classes = class_tensor(&goal, images.device())?;
        // w0 = atanh(y), y = (2x - 1) * shrink.
        let y = x0.affine(2.0 * TANH_SHRINK, -TANH_SHRINK)?;
        let w0 = (((&y + 1.0)? / (1.0 - &y)?)?.log()? * 0.5)?;
        let mut lower = vec![0f64; na];
        let mut upper = vec![NO_UPPER_BOUND; na];
        let mut c = vec![self.initial_const; na];
        let mut best_l2 = vec![f64::INFINITY; na];
        let mut best = x0.clone();
        let budget = (self.binary_search_steps * self.steps).max(1) as f64;
        for round in 0..self.binary_search_steps {
            // The examples still stepping this round (positions in `active`), and their
            // rows of the state: an example whose own loss stalls drops out.
            let mut run: Vec<usize> = (0..na).collect();
            let mut w = w0.clone();
            let mut x_run = x0.clone();
            let mut classes_run = classes.clone();
            let mut c_run = Tensor::from_vec(c.clone(), na, x0.device())?.to_dtype(x0.dtype())?;
            let mut adam = Adam::new(self.learning_rate, &w)?;
            let mut round_success = vec![false; na];
            let mut round_best = vec![f64::INFINITY; na];
            let mut previous = vec![f64::INFINITY; na];
            for step in 0..self.steps {
                if run.is_empty() {
                    break;
                }
                let var = Var::from_tensor(&w)?;
                let adversarial = ((var.as_tensor().tanh()? + 1.0)? * 0.5)?;
                let logits = model.logits(&adversarial)?;
                let margin = margin_per_example(&logits, &classes_run)?;
                // m <= -kappa means the goal is reached with confidence kappa.
                let m = if targeted { margin.neg()? } else { margin };
                let f = ((&m + self.kappa)?.relu()? - self.kappa)?;
                let dist = (&adversarial - &x_run)?.sqr()?.flatten_from(1)?.sum(1)?;
                let per_example = (&dist + (&f * &c_run)?)?;
                let grad = match per_example.sum_all()?.backward()?.get(var.as_tensor()) {
                    Some(g) => g.detach(),
                    None => w.zeros_like()?,
                };
                let m_values = to_f64s(&m)?;
                let dist_values = to_f64s(&dist)?;
                let bad = nonfinite_rows(&grad)?;
                // The distance term always has a gradient, so masking is judged on f's
                // own gradient, once a round (one more backward pass, not counted).
                let f_flat = if step == 0 {
                    match f.sum_all()?.backward()?.get(var.as_tensor()) {
                        Some(g) => degenerate_rows(g)?,
                        None => vec![true; run.len()],
                    }
                } else {
                    vec![false; run.len()]
                };
                let mut improved = Vec::new();
                for (r, &j) in run.iter().enumerate() {
                    let i = active[j];
                    evaluations[i] += 1;
                    let success = m_values[r] < -self.kappa;
                    // A flat f is only suspicious while f is still active.
                    degenerate[i] |= bad[r] || (f_flat[r] && !success);
                    if success {
                        round_success[j] = true;
                        round_best[j] = round_best[j].min(dist_values[r]);
                        if dist_values[r] < best_l2[j] {
                            best_l2[j] = dist_values[r];
                            improved.push(r);
                        }
                    }
                }
                if !improved.is_empty() {
                    let rows = gather_rows(&adversarial.detach(), &improved)?;
                    let at: Vec<usize> = improved.iter().map(|&r| run[r]).collect();
                    best = scatter_rows(&best, &at, &rows)?;
                }
                // The authors' early stop, judged on each example's own loss (their
                // default batch holds one example), so an example's result does not
                // depend on the rest of its batch.
                let mut keep: Vec<usize> = (0..run.len()).collect();
                if self.abort_early && step % (self.steps / 10).max(1) == 0 {
                    let losses = to_f64s(&per_example)?;
                    // The authors' `l > prev * .9999` stops; anything else (a NaN too)
                    // goes on.
                    let stalled = |r: usize| {
                        let bar = previous[run[r]] * 0.9999;
                        losses[r].partial_cmp(&bar) == Some(std::cmp::Ordering::Greater)
                    };
                    keep.retain(|&r| !stalled(r));
                    for (r, &j) in run.iter().enumerate() {
                        previous[j] = losses[r];
                    }
                }
                w = adam.step(&w, &zero_rows(&grad, &bad)?)?;
                if keep.len() < run.len() {
                    w = gather_rows(&w, &keep)?;
                    x_run = gather_rows(&x_run, &keep)?;
                    classes_run = gather_rows(&classes_run, &keep)?;
                    c_run = gather_rows(&c_run, &keep)?;
                    adam.keep_rows(&keep)?;
                    run = keep.iter().map(|&r| run[r]).collect();
                }
                observe((round * self.steps + step + 1) as f64 / budget);
            }
            for j in 0..na {
                rounds[active[j]].push(Round {
                    c: c[j],
                    success: round_success[j],
                    best_l2: round_success[j].then(|| round_best[j].sqrt()),
                });
                if round_success[j] {
                    upper[j] = upper[j].min(c[j]);
                    if upper[j] < NO_UPPER_BOUND * 0.1 {
                        c[j] = (lower[j] + upper[j]) / 2.0;
                    }
                } else {
                    lower[j] = lower[j].max(c[j]);
                    if upper[j] < NO_UPPER_BOUND * 0.1 {
                        c[j] = (lower[j] + upper[j]) / 2.0;
                    } else {
                        c[j] *= 10.0;
                    }
                }
            }
        }
        let adversarial = scatter_rows(&batch.images, &active, &best)?;
        let outcome = AttackOutcome::new(model, batch, adversarial, evaluations, degenerate)?;
        Ok((outcome, rounds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Affine;
    use candle_core::Device;

    const S: [f64; 4] = [1.0, -1.0, 1.0, -1.0];

    /// A two-class affine model on 4 pixels with the margin `Z_0 - Z_1 = g.x + beta`,
    /// `g = gamma s`, `s = (1, -1, 1, -1)`: at the image 0.5 everywhere the margin is
    /// `beta` (label 0). For a margin `m0 > 0` the CW objective
    /// `||d||^2 + c max(m(x + d), 0)` is minimised, for `c` below `c* = 2 m0 / ||g||^2`,
    /// at `d = -(c / 2) g`, short of the boundary (a failure); above `c*` the minimiser
    /// is on the boundary and Adam's iterates cross it (a success, at an L2 distance
    /// just above the boundary's, `m0 / ||g||`). `gamma` and `beta` put the boundary 0.3
    /// from the grey image (0.15 a pixel, inside the box) with the given `c*`.
    fn line(c_star: f64) -> Affine {
        let distance = 0.3;
        let gamma = distance / c_star;
        let beta = 2.0 * gamma * distance;
        Affine {
            w: vec![S.iter().map(|v| gamma * v).collect(), vec![0.0; 4]],
            b: vec![beta, 0.0],
        }
    }

    /// The grey image moved by `t` along `s`.
    fn along(t: f64) -> [f64; 4] {
        S.map(|v| 0.5 + t * v)
    }

    fn attack(rounds: usize) -> CarliniWagnerL2 {
        CarliniWagnerL2 {
            steps: 300,
            binary_search_steps: rounds,
            abort_early: false,
            ..CarliniWagnerL2::default()
        }
    }

    /// Runs CW on the images (label 0) and checks, per image, the constants tried, each
    /// round's outcome against the closed form (`c > c*`) and the example kept.
    fn check_schedule(model: &Affine, images: &[[f64; 4]], expected_c: &[&[f64]]) {
        let dev = Device::Cpu;
        let rounds_wanted = expected_c.iter().map(|c| c.len()).max().unwrap();
        let flat: Vec<f64> = images.iter().flatten().copied().collect();
        let x0 = Tensor::from_vec(flat, (images.len(), 4), &dev).unwrap();
        let labels = vec![0; images.len()];
        let (outcome, rounds) = attack(rounds_wanted)
            .search(model, &x0, &labels, &Targeting::Untargeted, &mut |_| {})
            .unwrap();
        let g: Vec<f64> = (0..4).map(|i| model.w[0][i] - model.w[1][i]).collect();
        let g_norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        for (e, x) in images.iter().enumerate() {
            let z = model.logits_f64(x);
            let m0 = z[0] - z[1];
            let (c_star, distance) = (2.0 * m0 / (g_norm * g_norm), m0 / g_norm);
            let tried: Vec<f64> = rounds[e].iter().map(|r| r.c).collect();
            let want = expected_c[e];
            assert_eq!(tried.len(), want.len(), "image {e}: tried {tried:?}");
            for (got, w) in tried.iter().zip(want) {
                assert!(
                    (got - w).abs() <= 1e-12 * w,
                    "image {e} (c* {c_star}): tried {tried:?}, expected {want:?}"
                );
            }
            let successes: Vec<bool> = rounds[e].iter().map(|r| r.success).collect();
            let predicted: Vec<bool> = want.iter().map(|&c| c > c_star).collect();
            assert_eq!(
                successes, predicted,
                "image {e} (c* {c_star}): {:?}",
                rounds[e]
            );
            let best = rounds[e]
                .iter()
                .filter_map(|r| r.best_l2)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))));
            match best {
                Some(best) => {
                    assert!(outcome.success[e]);
                    // The kept example is the smallest success over all rounds, and no
                    // success can be closer than the boundary.
                    let kept = outcome.l2[e];
                    assert!((kept - best).abs() < 1e-9, "image {e}: {kept} vs {best}");
                    assert!(
                        kept >= distance && kept < 1.05 * distance,
                        "image {e}: kept L2 {kept}, the boundary at {distance}"
                    );
                    let adv = outcome.adversarial.get(e).unwrap().to_vec1().unwrap();
                    let z = model.logits_f64(&adv);
                    assert!(
                        z[1] > z[0],
                        "image {e}: the kept example is not across: {z:?}"
                    );
                }
                None => {
                    assert!(!outcome.success[e]);
                    assert_eq!(
                        outcome.l2[e], 0.0,
                        "image {e}: a failure keeps the clean image"
                    );
                }
            }
        }
    }

    #[test]
    fn c_goes_up_tenfold_until_a_success_then_bisects() {
        // Success first at c = 1, then bisection between 0.1 (failed) and 1: 0.55 and
        // 0.325 succeed.
        check_schedule(
            &line(0.2),
            &[along(0.0)],
            &[&[1e-3, 1e-2, 1e-1, 1.0, 0.55, 0.325]],
        );
        // Success first at 0.1, then 0.055 and 0.0325 between 0.01 and the last success.
        check_schedule(
            &line(0.02),
            &[along(0.0)],
            &[&[1e-3, 1e-2, 1e-1, 0.055, 0.0325]],
        );
        // A failing bisection step raises the lower end: 1 succeeds, 0.55 fails (the
        // next would be (0.55 + 1) / 2, too near c* to call).
        check_schedule(
            &line(0.74),
            &[along(0.0)],
            &[&[1e-3, 1e-2, 1e-1, 1.0, 0.55]],
        );
        // Never a success: ten times a round, and the clean image kept.
        check_schedule(&line(5.0), &[along(0.0)], &[&[1e-3, 1e-2, 1e-1]]);
    }

    #[test]
    fn an_early_stop_is_each_examples_own() {
        // With the authors' early stop, an example stops a round when its own loss
        // stalls: in a batch it gets the rounds, the gradient evaluations and the
        // example it gets alone, and examples stop at different steps (a stop judged on
        // the batch's total loss would stop them all at once).
        let model = line(0.2);
        let images = [along(0.0), along(-0.1275), along(0.05)];
        let cw = CarliniWagnerL2 {
            steps: 300,
            binary_search_steps: 6,
            ..CarliniWagnerL2::default()
        };
        assert!(cw.abort_early);
        let dev = Device::Cpu;
        let run = |images: &[[f64; 4]]| {
            let flat: Vec<f64> = images.iter().flatten().copied().collect();
            let x0 = Tensor::from_vec(flat, (images.len(), 4), &dev).unwrap();
            let labels = vec![0; images.len()];
            let mut seen = Vec::new();
            let result = cw
                .search(&model, &x0, &labels, &Targeting::Untargeted, &mut |f| {
                    seen.push(f)
                })
                .unwrap();
            // The fraction only rises, and never past 1.
            assert!(seen.windows(2).all(|w| w[0] < w[1]) && seen.last() <= Some(&1.0));
            result
        };
        let (together, rounds) = run(&images);
        for (e, image) in images.iter().enumerate() {
            let (alone, alone_rounds) = run(&[*image]);
            assert_eq!(
                together.gradient_evaluations[e], alone.gradient_evaluations[0],
                "image {e}"
            );
            assert_eq!(rounds[e].len(), alone_rounds[0].len());
            for (a, b) in rounds[e].iter().zip(&alone_rounds[0]) {
                assert_eq!((a.c, a.success), (b.c, b.success), "image {e}");
                match (a.best_l2, b.best_l2) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "image {e}"),
                    (a, b) => assert_eq!(a, b),
                }
            }
            assert!((together.l2[e] - alone.l2[0]).abs() < 1e-9, "image {e}");
        }
        let evaluations = &together.gradient_evaluations;
        assert!(evaluations.iter().all(|&g| g < 6 * 300), "{evaluations:?}");
        assert!(
            evaluations[0] != evaluations[1] || evaluations[1] != evaluations[2],
            "{evaluations:?}"
        );
    }

    #[test]
    fn each_example_has_its_own_schedule() {
        // In one batch: the grey image (c* 0.2) and one nearer the boundary (margin
        // 0.135, c* 0.03) part ways at the fourth round; a third image is on the wrong
        // side already (margin 0.9 - 1.5 * 1.2 < 0), so nothing is tried on it.
        let model = line(0.2);
        let near = along(-0.1275);
        let z = model.logits_f64(&near);
        assert!((z[0] - z[1] - 0.135).abs() < 1e-12);
        check_schedule(
            &model,
            &[along(0.0), near],
            &[&[1e-3, 1e-2, 1e-1, 1.0], &[1e-3, 1e-2, 1e-1, 0.055]],
        );
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[along(0.0), along(-0.3)], &dev).unwrap();
        let (outcome, rounds) = attack(2)
            .search(&model, &x0, &[0, 0], &Targeting::Untargeted, &mut |_| {})
            .unwrap();
        assert_eq!((rounds[0].len(), rounds[1].len()), (2, 0));
        assert!(!outcome.success[1] && outcome.l2[1] == 0.0);
    }
}
