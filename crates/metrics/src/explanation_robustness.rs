//! How much an explanation moves under small, label-preserving input noise (ALGORITHMS.md
//! section 12), as reductions over explanations already computed (the batched drivers
//! that run the models live in the harness):
//!
//! - Max-Sensitivity (Yeh et al., NeurIPS 2019), relative to the explanation's own norm as
//!   in the authors' code and ALGORITHMS.md: `max_k ||e(x_k) - e(x)||_2 / ||e(x)||_2`
//!   (Quantus divides by the input's norm `||x||` instead: multiply by `||e(x)|| / ||x||`
//!   to compare);
//! - the Local Lipschitz Estimate (Alvarez-Melis and Jaakkola, 2018):
//!   `max_k ||e(x_k) - e(x)||_2 / ||x_k - x||_2`;
//! - the noise itself: uniform in the Linf ball of radius `r` (Quantus' default sampler
//!   for both), clipped to the pixel box [0, 1], seeded by a seed and the example's
//!   identity, so a draw never depends on batch order or thread count.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::{ensure_finite, ensure_non_empty, ensure_same_len, MetricsError, Result};

fn l2_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

fn check_all(what: &'static str, reference: &[f64], others: &[Vec<f64>]) -> Result<()> {
    ensure_non_empty(what, reference)?;
    ensure_non_empty("perturbed explanations", others)?;
    ensure_finite(what, reference.iter().copied())?;
    for o in others {
        ensure_same_len(what, reference, "a perturbed explanation", o)?;
        ensure_finite("a perturbed explanation", o.iter().copied())?;
    }
    Ok(())
}

/// Max-Sensitivity: the largest change of the explanation over the perturbed copies,
/// relative to the explanation's own L2 norm (`explanation` must not be all zero).
pub fn max_sensitivity(explanation: &[f64], perturbed: &[Vec<f64>]) -> Result<f64> {
    check_all("explanation", explanation, perturbed)?;
    let norm = explanation.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm == 0.0 {
        return Err(MetricsError::ConstantMap {
            which: "explanation (all zero: no relative change)",
        });
    }
    Ok(perturbed
        .iter()
        .map(|p| l2_distance(p, explanation) / norm)
        .fold(0.0, f64::max))
}

/// The Local Lipschitz Estimate: the largest ratio of the explanation's L2 change to the
/// input's L2 change over the perturbed copies (`inputs[k]` made `perturbed[k]`; a copy
/// equal to the input is refused, its ratio is undefined).
pub fn local_lipschitz_estimate(
    explanation: &[f64],
    input: &[f64],
    perturbed: &[Vec<f64>],
    perturbed_inputs: &[Vec<f64>],
) -> Result<f64> {
    check_all("explanation", explanation, perturbed)?;
    check_all("input", input, perturbed_inputs)?;
    ensure_same_len(
        "perturbed explanations",
        perturbed,
        "perturbed inputs",
        perturbed_inputs,
    )?;
    let mut best = 0.0f64;
    for (e, x) in perturbed.iter().zip(perturbed_inputs) {
        let dx = l2_distance(x, input);
        if dx == 0.0 {
            return Err(MetricsError::InvalidParameter {
                name: "input distance",
                value: 0.0,
                reason: "a perturbed input equals the input",
            });
        }
        best = best.max(l2_distance(e, explanation) / dx);
    }
    Ok(best)
}

/// The `sample`-th noisy copy of `pixels` for the example `example`: each pixel plus a
/// uniform draw in `[-radius, radius]`, clipped to [0, 1]. The draw depends only on
/// `(seed, example, sample)`.
pub fn linf_ball_noise(
    pixels: &[f32],
    radius: f64,
    seed: u64,
    example: u64,
    sample: u64,
) -> Result<Vec<f32>> {
    if !(radius.is_finite() && radius >= 0.0) {
        return Err(MetricsError::InvalidParameter {
            name: "radius",
            value: radius,
            reason: "must be a finite number >= 0",
        });
    }
    let mut rng = StdRng::seed_from_u64(common::seed::identity_seed(seed, example, sample));
    Ok(pixels
        .iter()
        .map(|&p| {
            let d = if radius > 0.0 {
                rng.random_range(-radius..=radius)
            } else {
                0.0
            };
            (f64::from(p) + d).clamp(0.0, 1.0) as f32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_sensitivity_is_zero_when_nothing_moves_and_exact_on_a_hand_case() {
        let e = vec![3.0, 4.0];
        assert_eq!(max_sensitivity(&e, &[e.clone(), e.clone()]).unwrap(), 0.0);
        // ||(3,4) - (3,4)|| = 0, ||(0,4) - (3,4)|| = 3, ||(3,8) - (3,4)|| = 4; ||e|| = 5.
        let s = max_sensitivity(&e, &[vec![0.0, 4.0], vec![3.0, 8.0]]).unwrap();
        assert!((s - 0.8).abs() < 1e-15, "{s}");
        assert!(max_sensitivity(&[0.0, 0.0], &[vec![1.0, 0.0]]).is_err());
        assert!(matches!(
            max_sensitivity(&e, &[vec![1.0]]),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            max_sensitivity(&e, &[vec![f64::NAN, 1.0]]),
            Err(MetricsError::NotFinite { .. })
        ));
        assert!(max_sensitivity(&e, &[]).is_err());
    }

    #[test]
    fn the_lipschitz_estimate_scales_with_the_explanation_and_inversely_with_the_input() {
        let (e, x) = (vec![1.0, 2.0, 3.0], vec![0.5, 0.5, 0.5]);
        let pe = vec![vec![1.0, 2.0, 5.0], vec![2.0, 2.0, 3.0]];
        let px = vec![vec![0.5, 0.5, 0.7], vec![0.6, 0.5, 0.5]];
        let base = local_lipschitz_estimate(&e, &x, &pe, &px).unwrap();
        // Changes of 2 over 0.2 and of 1 over 0.1: both 10.
        assert!((base - 10.0).abs() < 1e-9, "{base}");
        let doubled: Vec<Vec<f64>> = pe
            .iter()
            .map(|p| p.iter().zip(&e).map(|(a, b)| b + 2.0 * (a - b)).collect())
            .collect();
        let d = local_lipschitz_estimate(&e, &x, &doubled, &px).unwrap();
        assert!((d - 2.0 * base).abs() < 1e-9);
        let far: Vec<Vec<f64>> = px
            .iter()
            .map(|p| p.iter().zip(&x).map(|(a, b)| b + 2.0 * (a - b)).collect())
            .collect();
        let h = local_lipschitz_estimate(&e, &x, &pe, &far).unwrap();
        assert!((h - base / 2.0).abs() < 1e-9);
        assert!(local_lipschitz_estimate(&e, &x, &pe, &[x.clone(), x.clone()]).is_err());
    }

    #[test]
    fn ball_noise_stays_in_the_ball_and_the_box_and_depends_only_on_its_identity() {
        let pixels: Vec<f32> = (0..784).map(|i| (i % 29) as f32 / 28.0).collect();
        let a = linf_ball_noise(&pixels, 0.1, 7, 42, 3).unwrap();
        for (p, q) in pixels.iter().zip(&a) {
            assert!((0.0..=1.0).contains(q));
            assert!(f64::from((q - p).abs()) <= 0.1 + 1e-6);
        }
        // Another call order, the same draw; another example or sample, another draw.
        let _ = linf_ball_noise(&pixels, 0.1, 7, 1, 0).unwrap();
        assert_eq!(linf_ball_noise(&pixels, 0.1, 7, 42, 3).unwrap(), a);
        assert_ne!(linf_ball_noise(&pixels, 0.1, 7, 43, 3).unwrap(), a);
        assert_ne!(linf_ball_noise(&pixels, 0.1, 7, 42, 4).unwrap(), a);
        assert_ne!(linf_ball_noise(&pixels, 0.1, 8, 42, 3).unwrap(), a);
        assert_eq!(linf_ball_noise(&pixels, 0.0, 7, 42, 3).unwrap(), pixels);
        assert!(linf_ball_noise(&pixels, -0.1, 7, 42, 3).is_err());
        assert!(linf_ball_noise(&pixels, f64::NAN, 7, 42, 3).is_err());
    }
}
