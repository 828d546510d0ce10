//! DeepFool (Moosavi-Dezfooli, Fawzi and Frossard, "DeepFool: a simple and accurate
//! method to fool deep neural networks", CVPR 2016), L2, batched, untargeted.

use candle_core::{DType, Tensor};
use models::Classifier;

use crate::attack::{check_examples, check_non_negative, Attack};
use crate::batch::{Batch, Targeting};
use crate::error::{AttackError, Result};
use crate::gradient::logit_gradients;
use crate::ops::{clamp_unit, gather_rows, per_example, scatter_rows};
use crate::outcome::AttackOutcome;

/// Each step linearises every margin `f_k = Z_k - Z_y` at the current iterate (the
/// gradient of the logit difference is `w_k = grad Z_k - grad Z_y`), picks the class
/// whose linearised boundary is nearest, `l = argmin_k |f_k| / ||w_k||`, and adds the
/// step `(|f_l| + 1e-4) / ||w_l||^2 w_l` to the accumulated perturbation `r`; the iterate
/// is `clip(x + (1 + overshoot) r)`. An example stops once it leaves its label.
/// Each step costs `K` input gradients per example (one forward, `K` backward passes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeepFool {
    /// Overshoot of the accumulated perturbation (paper: 0.02).
    pub overshoot: f64,
    /// Step limit (paper: 50).
    pub max_steps: usize,
}

impl Default for DeepFool {
    /// The paper's settings: overshoot 0.02, at most 50 steps.
    fn default() -> Self {
        Self {
            overshoot: 0.02,
            max_steps: 50,
        }
    }
}

impl Attack for DeepFool {
    fn name(&self) -> &'static str {
        "deepfool"
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
        check_non_negative("overshoot", self.overshoot)?;
        if *targeting != Targeting::Untargeted {
            return Err(AttackError::Unsupported {
                attack: "DeepFool",
                what: "targeted attacks",
            });
        }
        let batch = Batch::new(model, images, labels, targeting)?;
        let n = batch.len();
        let mut x = batch.images.clone();
        let mut r_total = batch.images.zeros_like()?;
        let mut evaluations = vec![0usize; n];
        let mut degenerate = vec![false; n];
        // Examples still to move: classified as their label, with usable gradients.
        let mut live: Vec<bool> = (0..n).map(|i| batch.is_attackable(i)).collect();
        for _ in 0..self.max_steps {
            let active: Vec<usize> = (0..n).filter(|&i| live[i]).collect();
            if active.is_empty() {
                break;
            }
            let xa = gather_rows(&x, &active)?;
            let (logits, grads) = logit_gradients(model, &xa)?;
            let k = logits.dim(1)?;
            let na = active.len();
            let labels_a: Vec<u32> = active.iter().map(|&i| batch.labels[i]).collect();
            let predictions = logits.argmax(1)?.to_vec1::<u32>()?;
            let grads = grads.flatten_from(2)?; // na x K x D
            let d = grads.dim(2)?;
            let label_idx = Tensor::from_vec(labels_a.clone(), (na, 1), xa.device())?;
            let grad_label = grads.gather(
                &label_idx
                    .unsqueeze(2)?
                    .broadcast_as((na, 1, d))?
                    .contiguous()?,
                1,
            )?;
            let w = grads.broadcast_sub(&grad_label)?; // na x K x D
            let w_norm: Vec<Vec<f64>> = w.to_dtype(DType::F64)?.sqr()?.sum(2)?.sqrt()?.to_vec2()?;
            let f: Vec<Vec<f64>> = logits
                .broadcast_sub(&logits.gather(&label_idx, 1)?)?
                .to_dtype(DType::F64)?
                .to_vec2()?;
            let mut chosen = vec![0u32; na];
            let mut coefficient = vec![0f64; na];
            for j in 0..na {
                let i = active[j];
                if predictions[j] != labels_a[j] {
                    // Already across: stop without another step.
                    live[i] = false;
                    continue;
                }
                evaluations[i] += k;
                let y = labels_a[j] as usize;
                let best = (0..k)
                    .filter(|&c| c != y && w_norm[j][c].is_finite() && w_norm[j][c] > 0.0)
                    .map(|c| (c, f[j][c].abs() / w_norm[j][c]))
                    .filter(|(_, dist)| dist.is_finite())
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                match best {
                    Some((c, _)) => {
                        chosen[j] = c as u32;
                        coefficient[j] = (f[j][c].abs() + 1e-4) / (w_norm[j][c] * w_norm[j][c]);
                    }
                    None => {
                        degenerate[i] = true;
                        live[i] = false;
                    }
                }
            }
            let chosen = Tensor::from_vec(chosen, (na, 1, 1), xa.device())?
                .broadcast_as((na, 1, d))?
                .contiguous()?;
            let coefficient =
                Tensor::from_vec(coefficient, na, xa.device())?.to_dtype(xa.dtype())?;
            let step = w
                .gather(&chosen, 1)?
                .squeeze(1)?
                .broadcast_mul(&per_example(&coefficient, 2)?)?
                .reshape(xa.shape())?;
            let r_active = (gather_rows(&r_total, &active)? + step)?;
            r_total = scatter_rows(&r_total, &active, &r_active)?;
            x = clamp_unit(&(&batch.images + (&r_total * (1.0 + self.overshoot))?)?)?;
        }
        // Every example keeps the iterate it reached (the clean image if never moved).
        AttackOutcome::new(model, batch, x, evaluations, degenerate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Affine;
    use candle_core::Device;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    const K: usize = 10;
    const D: usize = 16;

    /// A seeded 10-class affine model on 16 pixels and an image near grey.
    fn affine(seed: u64) -> (Affine, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let w = (0..K)
            .map(|_| (0..D).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let b = (0..K).map(|_| rng.random_range(-0.5..0.5)).collect();
        let x = (0..D).map(|_| rng.random_range(0.4..0.6)).collect();
        (Affine { w, b }, x)
    }

    proptest! {
        #![proptest_config(test_support::seeded(48))]

        /// On an affine model the linearisation is exact: one step reaches the nearest
        /// class boundary, `min_k |f_k - f_y| / ||w_k - w_y||` away (the distance from x
        /// to the outside of its class's polyhedron), and DeepFool stops there, its
        /// perturbation `(1 + overshoot) (|f_l| + 1e-4) / ||w_l||^2 w_l` exactly.
        #[test]
        fn on_an_affine_model_the_distance_is_the_closed_form(
            seed in 0u64..10_000,
            overshoot in prop_oneof![Just(0.02), 0.0f64..0.5],
        ) {
            let (model, x) = affine(seed);
            let z = model.logits_f64(&x);
            let y = (0..K).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap();
            // The nearest boundary, in f64 from the weights themselves.
            let (l, dist, w_norm) = (0..K)
                .filter(|&k| k != y)
                .map(|k| {
                    let wk: f64 = (0..D)
                        .map(|i| (model.w[k][i] - model.w[y][i]).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    (k, (z[k] - z[y]).abs() / wk, wk)
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let coefficient = (1.0 + overshoot) * ((z[l] - z[y]).abs() + 1e-4) / (w_norm * w_norm);
            let r: Vec<f64> = (0..D)
                .map(|i| coefficient * (model.w[l][i] - model.w[y][i]))
                .collect();
            // Inside the box, so no clipping (true for these seeds' small margins).
            prop_assume!(x.iter().zip(&r).all(|(a, b)| (0.0..=1.0).contains(&(a + b))));

            let images = Tensor::from_vec(x.clone(), (1, D), &Device::Cpu).unwrap();
            let attack = DeepFool { overshoot, max_steps: 50 };
            let o = attack.run(&model, &images, &[y as u32], &Targeting::Untargeted).unwrap();
            prop_assert!(o.success[0]);
            // One step: K gradients.
            prop_assert_eq!(o.gradient_evaluations[0], K);
            let expected_l2 = (1.0 + overshoot) * (dist + 1e-4 / w_norm);
            prop_assert!(
                (o.l2[0] - expected_l2).abs() < 1e-12 * (1.0 + expected_l2),
                "L2 {} against the closed form {}", o.l2[0], expected_l2
            );
            let adv: Vec<f64> = o.adversarial.flatten_all().unwrap().to_vec1().unwrap();
            for i in 0..D {
                prop_assert!((adv[i] - x[i] - r[i]).abs() < 1e-13, "pixel {}", i);
            }
        }
    }

    #[test]
    fn without_overshoot_it_stops_just_past_the_boundary() {
        // Two classes, margin Z_0 - Z_1 = 2 (x_0 - x_1) + 0.3 on two pixels: the boundary
        // is 0.3 / (2 sqrt 2) away from the grey image.
        let model = Affine {
            w: vec![vec![1.0, -1.0], vec![-1.0, 1.0]],
            b: vec![0.15, -0.15],
        };
        let images = Tensor::new(&[[0.5f64, 0.5]], &Device::Cpu).unwrap();
        let o = DeepFool {
            overshoot: 0.0,
            max_steps: 50,
        }
        .run(&model, &images, &[0], &Targeting::Untargeted)
        .unwrap();
        let expected = (0.3 + 1e-4) / 8f64.sqrt();
        assert!(
            (o.l2[0] - expected).abs() < 1e-15,
            "{} vs {expected}",
            o.l2[0]
        );
        assert!(o.success[0]);
    }
}
