//! The constrained Type I attack (ALGORITHMS.md section 9) on small seeded models: its
//! objective against finite differences, the margin and multiplier rules, the start
//! towards the target's mean code, and the proof that no judge is asked during it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use candle_core::{DType, Device, Result as CResult, Tensor, Var};
use models::{init_model, Classifier, GapCnn, Mlp, Oracle, Svae};
use rand::{rngs::StdRng, SeedableRng};
use vae_attack::{
    attack_then_judge, latent_objective, logit_margin, type_one_attack_judge_free, ClassMeans,
    Constraint, Judges, LatentAttackConfig, Objective, Start, Stop,
};

fn images(seed: u64, n: usize) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    models::random::uniform(&mut rng, (n, 1, 28, 28), 0.0, 1.0, DType::F32, &Device::Cpu).unwrap()
}

/// Asserts that autograd's gradient of the scalar `f` at `z0` matches central finite
/// differences (step 1e-6, relative error < 1e-4) at the flat indices `at`.
fn assert_gradient_matches_finite_differences(
    f: impl Fn(&Tensor) -> Tensor,
    z0: &Tensor,
    at: &[usize],
) {
    let var = Var::from_tensor(z0).unwrap();
    let g: Vec<f64> = f(var.as_tensor())
        .backward()
        .unwrap()
        .get(var.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = z0.flatten_all().unwrap().to_vec1().unwrap();
    for &i in at {
        let eval = |d: f64| {
            let mut v = base.clone();
            v[i] += d;
            f(&Tensor::from_vec(v, z0.dims(), z0.device()).unwrap())
                .to_scalar::<f64>()
                .unwrap()
        };
        let numeric = (eval(1e-6) - eval(-1e-6)) / 2e-6;
        let rel = (numeric - g[i]).abs() / numeric.abs().max(g[i].abs()).max(1e-9);
        assert!(
            rel < 1e-4,
            "z[{i}]: autograd {} vs finite difference {numeric}",
            g[i]
        );
    }
}

#[test]
fn constrained_objective_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let (svae, _) = init_model::<Svae>(0, DType::F64, &dev).unwrap();
    let (f1, _) = init_model::<Mlp>(1, DType::F64, &dev).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let z0 = models::random::normal(&mut rng, (3, 32), DType::F64, &dev).unwrap();
    let t = Tensor::new(&[9u32, 0, 4], &dev).unwrap();
    let y = Tensor::new(&[7u32, 7, 2], &dev).unwrap();
    let lambda = Tensor::new(&[0.5f64, 2.0, 7.0], &dev).unwrap();
    // A large kappa keeps every pair's hinge active, so the term is smooth here and its
    // gradient (through f1, the decoder and the max over the other classes) is tested.
    let config = LatentAttackConfig {
        objective: Objective::Constrained(Constraint {
            kappa: 50.0,
            ..Constraint::default()
        }),
        ..LatentAttackConfig::constrained()
    };
    let f = |z: &Tensor| {
        latent_objective(&svae, Some(&f1), z, &t, &y, &lambda, &config)
            .unwrap()
            .total
            .sum_all()
            .unwrap()
    };
    assert_gradient_matches_finite_differences(f, &z0, &[0, 7, 31, 33, 48, 64, 80, 95]);
    // The term itself: total - (paper terms without f1) = lambda * relu(kappa - margin).
    let terms = latent_objective(&svae, Some(&f1), &z0, &t, &y, &lambda, &config).unwrap();
    let without = latent_objective(&svae, None, &z0, &t, &y, &lambda, &config).unwrap();
    let term: Vec<f64> = (terms.total - without.total).unwrap().to_vec1().unwrap();
    let margin: Vec<f64> = terms.margin.unwrap().to_vec1().unwrap();
    for i in 0..3 {
        let lam = [0.5, 2.0, 7.0][i];
        let want = lam * (50.0 - margin[i]).max(0.0);
        assert!((term[i] - want).abs() < 1e-9 * want.abs().max(1.0), "{i}");
    }
}

/// A classifier that counts the rows it is asked about, and how many of them carried a
/// gradient (a graph back to the code).
struct RowCounting<'a> {
    inner: &'a dyn Classifier,
    rows: Cell<usize>,
    tracked_rows: Cell<usize>,
}

impl Classifier for RowCounting<'_> {
    fn logits(&self, images: &Tensor) -> CResult<Tensor> {
        let n = images.dim(0)?;
        self.rows.set(self.rows.get() + n);
        if images.track_op() {
            self.tracked_rows.set(self.tracked_rows.get() + n);
        }
        self.inner.logits(images)
    }
}

/// The gradient of `sum(total)` with respect to `z`, row by row.
fn gradient(total: &Tensor, z: &Var) -> Vec<Vec<f64>> {
    let grads = total.sum_all().unwrap().backward().unwrap();
    grads.get(z.as_tensor()).unwrap().to_vec2().unwrap()
}

/// f1's hinge goes through f1 with a graph only for the rows where it is active, and
/// the objective's value and gradient are those of the plain formula (every row through
/// f1 with its graph): checked with kappa at the median margin, half the rows on each
/// side, against `lambda * relu(kappa - margin)` added by hand to the objective
/// without f1.
#[test]
fn the_hinge_differentiates_only_the_rows_where_it_is_active() {
    let dev = Device::Cpu;
    let (svae, _) = init_model::<Svae>(4, DType::F64, &dev).unwrap();
    let (f1, _) = init_model::<Mlp>(5, DType::F64, &dev).unwrap();
    let mut rng = StdRng::seed_from_u64(6);
    let n = 8;
    let z0 = models::random::normal(&mut rng, (n, 32), DType::F64, &dev).unwrap();
    let t = Tensor::new(&[9u32, 0, 4, 1, 2, 3, 5, 6], &dev).unwrap();
    let y = Tensor::new(&[7u32, 7, 2, 0, 8, 6, 1, 3], &dev).unwrap();
    let lambda = Tensor::new(&[0.5f64, 2.0, 7.0, 1.0, 3.0, 0.25, 4.0, 1.5], &dev).unwrap();
    let margins: Vec<f64> = logit_margin(&f1.logits(&svae.decode(&z0).unwrap()).unwrap(), &y)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut sorted = margins.clone();
    sorted.sort_by(f64::total_cmp);
    // Between the 4th and 5th margins: rows below it are active.
    let kappa = (sorted[3] + sorted[4]) / 2.0;
    let active = margins.iter().filter(|&&m| m < kappa).count();
    assert_eq!(active, 4, "{margins:?}");
    let config = LatentAttackConfig {
        objective: Objective::Constrained(Constraint {
            kappa,
            ..Constraint::default()
        }),
        ..LatentAttackConfig::constrained()
    };
    let counting = RowCounting {
        inner: &f1,
        rows: Cell::new(0),
        tracked_rows: Cell::new(0),
    };
    let z = Var::from_tensor(&z0).unwrap();
    let got = latent_objective(
        &svae,
        Some(&counting),
        z.as_tensor(),
        &t,
        &y,
        &lambda,
        &config,
    )
    .unwrap();
    assert_eq!(
        counting.rows.get(),
        n + active,
        "every row once, the active again"
    );
    assert_eq!(
        counting.tracked_rows.get(),
        active,
        "only the active rows with a graph"
    );
    let got_total: Vec<f64> = got.total.to_vec1().unwrap();
    let got_grad = gradient(&got.total, &z);
    // The plain formula.
    let z = Var::from_tensor(&z0).unwrap();
    let without = latent_objective(&svae, None, z.as_tensor(), &t, &y, &lambda, &config).unwrap();
    let margin = logit_margin(
        &f1.logits(&svae.decode(z.as_tensor()).unwrap()).unwrap(),
        &y,
    )
    .unwrap();
    let hinge = (margin.affine(-1.0, kappa).unwrap().relu().unwrap() * &lambda).unwrap();
    let want = (without.total + hinge).unwrap();
    let want_total: Vec<f64> = want.to_vec1().unwrap();
    let want_grad = gradient(&want, &z);
    for i in 0..n {
        assert!((got_total[i] - want_total[i]).abs() < 1e-12, "row {i}");
        for k in 0..32 {
            let (a, b) = (got_grad[i][k], want_grad[i][k]);
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "row {i}, z[{k}]: {a} vs {b}"
            );
        }
    }
    // f1's part is what the active rows' gradients add to the objective without f1 (so
    // a row left out, or one too many, shows above).
    let z = Var::from_tensor(&z0).unwrap();
    let without = latent_objective(&svae, None, z.as_tensor(), &t, &y, &lambda, &config).unwrap();
    let without_grad = gradient(&without.total, &z);
    for i in 0..n {
        let change = (0..32)
            .map(|k| (want_grad[i][k] - without_grad[i][k]).abs())
            .fold(0.0, f64::max);
        if margins[i] < kappa {
            assert!(change > 1e-6, "row {i}: f1's gradient is {change}");
        } else {
            assert_eq!(change, 0.0, "row {i}");
        }
    }
}

#[test]
fn the_margin_is_own_logit_minus_the_best_other() {
    let dev = Device::Cpu;
    let logits = Tensor::new(
        &[[1.0f64, 5.0, 2.0], [3.0, -1.0, 3.5], [0.0, 0.0, 0.0]],
        &dev,
    )
    .unwrap();
    let labels = Tensor::new(&[1u32, 0, 2], &dev).unwrap();
    let m: Vec<f64> = logit_margin(&logits, &labels).unwrap().to_vec1().unwrap();
    assert_eq!(m, vec![3.0, -0.5, 0.0]);
}

#[test]
fn the_multiplier_grows_when_violated_shrinks_when_held_and_has_a_floor() {
    let c = Constraint::default();
    assert!((c.next_lambda(1.0, 0.2) - 1.05).abs() < 1e-15);
    assert!((c.next_lambda(1.0, 0.7) - 0.99).abs() < 1e-15);
    assert_eq!(c.next_lambda(1e-3, 3.0), 1e-3);
    // Uncapped: 200 violated steps take it far above the paper's cap of 1e-3.
    let mut lam = c.lambda0;
    for _ in 0..200 {
        lam = c.next_lambda(lam, -1.0);
    }
    assert!(lam > 1e4, "{lam}");
}

#[test]
fn the_start_lies_part_way_towards_the_target_mean() {
    let dev = Device::Cpu;
    let (svae, _) = init_model::<Svae>(0, DType::F32, &dev).unwrap();
    let (f1, _) = init_model::<GapCnn>(1, DType::F32, &dev).unwrap();
    let x = images(7, 2);
    let mut rng = StdRng::seed_from_u64(8);
    let means =
        ClassMeans::new(models::random::normal(&mut rng, (10, 32), DType::F32, &dev).unwrap())
            .unwrap();
    let config = LatentAttackConfig {
        max_iters: 0,
        stop: Stop::Budget,
        start: Start::TowardsTarget { fraction: 0.25 },
        ..LatentAttackConfig::constrained()
    };
    let keep = f1.predict(&x).unwrap();
    let out =
        type_one_attack_judge_free(&svae, &f1, &x, &keep, &[3, 8], Some(&means), &config).unwrap();
    let binary = x.gt(127.0 / 255.0).unwrap().to_dtype(DType::F32).unwrap();
    let (mu, _) = svae.encode(&binary).unwrap();
    let want = ((mu * 0.75).unwrap() + (means.rows(&[3, 8]).unwrap() * 0.25).unwrap()).unwrap();
    let diff: f32 = (out.z - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(diff < 1e-6, "{diff}");
    // Without the means the start is refused, not guessed.
    assert!(type_one_attack_judge_free(&svae, &f1, &x, &keep, &[3, 8], None, &config).is_err());
    let oracle_stop = LatentAttackConfig {
        stop: Stop::Oracle,
        ..config
    };
    assert!(
        type_one_attack_judge_free(&svae, &f1, &x, &keep, &[3, 8], Some(&means), &oracle_stop)
            .is_err()
    );
}

/// Who was asked, in order.
type Log = Rc<RefCell<Vec<&'static str>>>;

/// A classifier that writes its name to a shared log whenever it is asked.
struct Logged<'a> {
    name: &'static str,
    inner: &'a dyn Classifier,
    log: Log,
}

impl Classifier for Logged<'_> {
    fn logits(&self, images: &Tensor) -> CResult<Tensor> {
        self.log.borrow_mut().push(self.name);
        self.inner.logits(images)
    }
}

/// Runs 20 iterations of `config` with logged f1 and judges; returns the log.
fn call_order(config: &LatentAttackConfig) -> Vec<&'static str> {
    let dev = Device::Cpu;
    let (svae, _) = init_model::<Svae>(0, DType::F32, &dev).unwrap();
    let (gap, _) = init_model::<GapCnn>(1, DType::F32, &dev).unwrap();
    let (oracle, _) = init_model::<Oracle>(2, DType::F32, &dev).unwrap();
    let (mlp, _) = init_model::<Mlp>(3, DType::F32, &dev).unwrap();
    let log: Log = Rc::default();
    let logged = |name, inner| Logged {
        name,
        inner,
        log: log.clone(),
    };
    let f1 = logged("f1", &gap);
    let standard = logged("judge", &oracle);
    let robust = logged("judge", &mlp);
    let knn = logged("judge", &oracle);
    let judges = Judges {
        standard: &standard,
        robust: &robust,
        knn: &knn,
    };
    let x = images(9, 3);
    let keep = gap.predict(&x).unwrap();
    let mut rng = StdRng::seed_from_u64(10);
    let means =
        ClassMeans::new(models::random::normal(&mut rng, (10, 32), DType::F32, &dev).unwrap())
            .unwrap();
    let config = LatentAttackConfig {
        max_iters: 20,
        ..config.clone()
    };
    let (out, verdicts) = attack_then_judge(
        &svae,
        &f1,
        &judges,
        &x,
        &keep,
        &[1, 2, 3],
        Some(&means),
        &config,
    )
    .unwrap();
    assert_eq!(verdicts.standard.len(), 3);
    assert_eq!(verdicts.standard, oracle.predict(&out.images).unwrap());
    let calls = log.borrow().clone();
    calls
}

#[test]
fn the_constrained_attack_never_asks_a_judge_before_it_returns() {
    for stop in [Stop::Budget, LatentAttackConfig::confident(0.5)] {
        let calls = call_order(&LatentAttackConfig {
            stop,
            ..LatentAttackConfig::constrained()
        });
        let last_f1 = calls.iter().rposition(|&c| c == "f1").unwrap();
        let first_judge = calls.iter().position(|&c| c == "judge").unwrap();
        assert!(last_f1 > 10, "f1 steers every iteration: {calls:?}");
        assert!(
            first_judge > last_f1,
            "a judge was asked at call {first_judge}, before f1's last call {last_f1}"
        );
        assert_eq!(
            calls.len() - first_judge,
            3,
            "each judge once, on the final images"
        );
    }
    // The paper's mode judge-free too.
    let calls = call_order(&LatentAttackConfig {
        stop: Stop::Budget,
        ..LatentAttackConfig::type_one()
    });
    let last_f1 = calls.iter().rposition(|&c| c == "f1").unwrap();
    assert!(calls.iter().position(|&c| c == "judge").unwrap() > last_f1);
}

#[test]
fn the_oracle_stopped_reproduction_does_ask_the_oracle_during_the_attack() {
    // The same check catches a judge inside the loop: the paper's early stop asks the
    // standard oracle every iteration.
    let calls = call_order(&LatentAttackConfig::type_one());
    let last_f1 = calls.iter().rposition(|&c| c == "f1").unwrap();
    let first_judge = calls.iter().position(|&c| c == "judge").unwrap();
    assert!(first_judge < last_f1, "{calls:?}");
}

/// The image term: its value is `image_weight * CE(f2(mu(G(z))), t)`, computed here by
/// hand from the SVAE's parts, and its gradient (through the decoder, the encoder and
/// f2) matches finite differences.
#[test]
fn image_term_value_and_gradient() {
    let dev = Device::Cpu;
    let (svae, _) = init_model::<Svae>(3, DType::F64, &dev).unwrap();
    let mut rng = StdRng::seed_from_u64(8);
    let z0 = models::random::normal(&mut rng, (2, 32), DType::F64, &dev).unwrap();
    let t = Tensor::new(&[1u32, 6], &dev).unwrap();
    let y = Tensor::new(&[7u32, 3], &dev).unwrap();
    let lambda = Tensor::new(&[1.0f64, 1.0], &dev).unwrap();
    let with = |w: f64| LatentAttackConfig {
        objective: Objective::Constrained(Constraint {
            image_weight: w,
            ..Constraint::default()
        }),
        ..LatentAttackConfig::constrained()
    };
    let (on, off) = (with(0.7), with(0.0));
    let a = latent_objective(&svae, None, &z0, &t, &y, &lambda, &on).unwrap();
    let b = latent_objective(&svae, None, &z0, &t, &y, &lambda, &off).unwrap();
    assert!(b.f2_image_logits.is_none());
    let (mu, _) = svae.encode(&svae.decode(&z0).unwrap()).unwrap();
    let logp = candle_nn::ops::log_softmax(&svae.classify_latent(&mu).unwrap(), 1)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let diff: Vec<f64> = (a.total - b.total).unwrap().to_vec1().unwrap();
    for (i, target) in [1usize, 6].into_iter().enumerate() {
        let expected = -0.7 * logp[i][target];
        assert!(
            (diff[i] - expected).abs() < 1e-9,
            "{} vs {expected}",
            diff[i]
        );
    }
    let f = |z: &Tensor| {
        latent_objective(&svae, None, z, &t, &y, &lambda, &on)
            .unwrap()
            .total
            .sum_all()
            .unwrap()
    };
    assert_gradient_matches_finite_differences(f, &z0, &[0, 5, 31, 32, 47, 63]);
}
