//! The attack skips work (stopped pairs leave the batch; a pair whose adaptive k is 0 is
//! not differentiated through the decoder and f1; the oracle is asked only about pairs
//! that f1 still calls by their kept label). This checks, on the bundled weights and
//! digits, that the skipping changes nothing: a plain loop over the whole batch, every
//! term in the graph and the oracle on every pair every iteration, stops every pair at
//! the same iteration and reaches the same codes to the bit.

use std::cell::Cell;

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use mnist_data::PixelFormat;
use models::{load_model, Classifier, GapCnn, Oracle, Svae};
use vae_attack::{latent_objective, next_k, type_one_attack, LatentAttackConfig, Objective, Stop};

/// The oracle, counting the images it is asked about.
struct Counting<'a> {
    oracle: &'a Oracle,
    images: Cell<usize>,
}

impl Classifier for Counting<'_> {
    fn logits(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        self.images.set(self.images.get() + images.dim(0)?);
        self.oracle.logits(images)
    }
}

struct Reference {
    z: Vec<Vec<f32>>,
    /// Images the oracle was asked about: every running pair, every iteration.
    oracle_images: usize,
    iterations: Vec<usize>,
    /// Iterations at which some pairs had k > 0 and others k = 0, both still running.
    mixed_iterations: usize,
}

/// The attack as written in ALGORITHMS.md, with no shortcut.
fn reference(
    svae: &Svae,
    f1: &GapCnn,
    oracle: &Oracle,
    x: &Tensor,
    keep: &[u32],
    targets: &[u32],
    config: &LatentAttackConfig,
) -> Reference {
    let Objective::Paper(adaptive) = config.objective else {
        panic!("the reference runs the paper's objective")
    };
    let n = keep.len();
    let dev = x.device();
    let binary = x.gt(127.0 / 255.0).unwrap().to_dtype(DType::F32).unwrap();
    let z = Var::from_tensor(&svae.encode(&binary).unwrap().0.detach()).unwrap();
    let t = Tensor::from_vec(targets.to_vec(), n, dev).unwrap();
    let y = Tensor::from_vec(keep.to_vec(), n, dev).unwrap();
    let mut k = vec![0f64; n];
    let mut m = z.as_tensor().zeros_like().unwrap();
    let mut v = m.clone();
    let mut active = vec![true; n];
    let mut iterations = vec![config.max_iters; n];
    let mut mixed_iterations = 0;
    let mut oracle_images = 0;
    for it in 0..=config.max_iters {
        let kt = Tensor::from_vec(k.iter().map(|&k| k as f32).collect(), n, dev).unwrap();
        let terms = latent_objective(svae, Some(f1), z.as_tensor(), &t, &y, &kt, config).unwrap();
        let f1_pred: Vec<u32> = terms
            .f1_logits
            .as_ref()
            .unwrap()
            .argmax(D::Minus1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let oracle_pred = oracle.predict(&terms.images.detach()).unwrap();
        oracle_images += active.iter().filter(|&&a| a).count();
        for i in 0..n {
            let success = f1_pred[i] == keep[i] && oracle_pred[i] == targets[i];
            if active[i] && (it == config.max_iters || success) {
                active[i] = false;
                iterations[i] = it;
            }
        }
        if active.iter().all(|a| !a) {
            break;
        }
        let running: Vec<f64> = (0..n).filter(|&i| active[i]).map(|i| k[i]).collect();
        if running.contains(&0.0) && running.iter().any(|&k| k > 0.0) {
            mixed_iterations += 1;
        }
        let g = terms
            .total
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(z.as_tensor())
            .unwrap()
            .detach();
        let step_t = (it + 1) as i32;
        m = ((&m * 0.9).unwrap() + (&g * 0.1).unwrap()).unwrap();
        v = ((&v * 0.999).unwrap() + (g.sqr().unwrap() * (1.0 - 0.999)).unwrap()).unwrap();
        let step = ((&m / (1.0 - 0.9f64.powi(step_t))).unwrap()
            / ((&v / (1.0 - 0.999f64.powi(step_t)))
                .unwrap()
                .sqrt()
                .unwrap()
                + 1e-8)
                .unwrap())
        .unwrap();
        let mask: Vec<f32> = active.iter().map(|&a| f32::from(u8::from(a))).collect();
        let mask = Tensor::from_vec(mask, (n, 1), dev).unwrap();
        let next =
            (z.as_tensor() - (step.broadcast_mul(&mask).unwrap() * config.lr).unwrap()).unwrap();
        z.set(&next.detach()).unwrap();
        let j1: Vec<f32> = terms.j1.as_ref().unwrap().to_vec1().unwrap();
        let j2: Vec<f32> = terms.j2.to_vec1().unwrap();
        for i in (0..n).filter(|&i| active[i]) {
            k[i] = next_k(k[i], f64::from(j1[i]), f64::from(j2[i]), &adaptive);
        }
    }
    Reference {
        z: z.as_tensor().to_vec2().unwrap(),
        oracle_images,
        iterations,
        mixed_iterations,
    }
}

#[test]
fn skipping_work_changes_the_codes_only_by_rounding() {
    let dev = Device::Cpu;
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/weights");
    let svae: Svae = load_model(&weights.join("svae.safetensors"), DType::F32, &dev).unwrap();
    let f1: GapCnn = load_model(&weights.join("gapcnn.safetensors"), DType::F32, &dev).unwrap();
    let oracle: Oracle = load_model(&weights.join("oracle.safetensors"), DType::F32, &dev).unwrap();
    let test = mnist_data::load_fixtures().unwrap().test;
    // A digit of each class, towards three other classes.
    let chosen = test.balanced_indices(1).unwrap();
    let (mut idx, mut targets) = (Vec::new(), Vec::new());
    for (j, &i) in chosen.iter().enumerate() {
        let label = u32::from(test.label(i).unwrap());
        for step in [1, 4, 7] {
            idx.push(i);
            targets.push((label + step + j as u32 % 2) % 10);
        }
    }
    let x = test.images_tensor(&idx, PixelFormat::Gray, &dev).unwrap();
    let keep = f1.predict(&x).unwrap();
    let config = LatentAttackConfig {
        max_iters: 60,
        record_every: 0,
        frame_every: 0,
        stop: Stop::Oracle,
        ..LatentAttackConfig::type_one()
    };
    let want = reference(&svae, &f1, &oracle, &x, &keep, &targets, &config);
    let counting = Counting {
        oracle: &oracle,
        images: Cell::new(0),
    };
    let got = type_one_attack(&svae, &f1, &counting, &x, &keep, &targets, None, &config).unwrap();
    // Both shortcuts were taken: pairs stopped early, and k was 0 for some running pairs
    // while positive for others.
    let early = want
        .iterations
        .iter()
        .filter(|&&it| it < config.max_iters)
        .count();
    assert!(early > 0, "no pair stopped early: {:?}", want.iterations);
    assert!(
        want.mixed_iterations > 0,
        "k never differed between running pairs"
    );
    assert_eq!(got.iterations, want.iterations);
    // The oracle was spared the pairs f1 had let go of (the final judgement asks it
    // about every pair once more).
    let asked = counting.images.get() - keep.len();
    assert!(
        asked < want.oracle_images,
        "the oracle was asked about {asked} images, as many as the plain loop's {}",
        want.oracle_images
    );
    println!(
        "the oracle saw {asked} images during the attack, the plain loop's {}",
        want.oracle_images
    );
    // Every operation is row-wise and a row's bits do not depend on its batch
    // (models' tests/batch_independence.rs), so the shortcuts reach the same codes to
    // the bit.
    let got_z: Vec<Vec<f32>> = got.z.to_vec2().unwrap();
    assert_eq!(got_z, want.z);
}
