//! Deletion and insertion (Petsiuk et al., BMVC 2018, RISE; ALGORITHMS.md section 12):
//! pixels are removed from the image (deletion: set to a baseline) or added to the
//! baseline (insertion: copied from the image) in the order of the map, most important
//! first, `per_step` pixels at a time; the model's probability of the class after each
//! step traces a curve over the fraction of pixels changed, and its area (trapezoid rule,
//! the fraction on [0, 1]) is the score: low for deletion and high for insertion when the
//! map is faithful. This module orders the pixels, makes the step images and reduces the
//! curve; the driver that runs the model on the step images lives in the harness.

use crate::error::{ensure_finite, ensure_non_empty, ensure_same_len, MetricsError, Result};

/// Which curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelCurve {
    /// The image loses its most important pixels first (to the baseline).
    Deletion,
    /// The baseline gains the image's most important pixels first.
    Insertion,
}

/// The pixel indices by decreasing map value; equal values keep index order (a stable
/// sort), so the order is reproducible.
pub fn importance_order(map: &[f32]) -> Result<Vec<usize>> {
    ensure_non_empty("map", map)?;
    ensure_finite("map", map.iter().map(|&v| f64::from(v)))?;
    let mut order: Vec<usize> = (0..map.len()).collect();
    order.sort_by(|&a, &b| map[b].total_cmp(&map[a]));
    Ok(order)
}

/// Number of step images of a curve: step 0 (nothing changed) to the step that changed
/// every pixel.
pub fn steps(pixels: usize, per_step: usize) -> usize {
    pixels.div_ceil(per_step.max(1)) + 1
}

/// Step `step`'s image into `out`: the first `min(step * per_step, n)` pixels of `order`
/// changed (deletion: the image with those set to `baseline`; insertion: `baseline` with
/// those taken from the image).
pub fn step_image(
    curve: PixelCurve,
    image: &[f32],
    baseline: &[f32],
    order: &[usize],
    per_step: usize,
    step: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    ensure_same_len("image", image, "baseline", baseline)?;
    ensure_same_len("image", image, "pixel order", order)?;
    if per_step == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "per_step",
            value: 0.0,
            reason: "at least one pixel changes per step",
        });
    }
    let changed = step.saturating_mul(per_step).min(image.len());
    let (start, source) = match curve {
        PixelCurve::Deletion => (image, baseline),
        PixelCurve::Insertion => (baseline, image),
    };
    out.clear();
    out.extend_from_slice(start);
    for &i in &order[..changed] {
        out[i] = source[i];
    }
    Ok(())
}

/// The area under a curve sampled at equally spaced fractions 0, 1/(n-1), ..., 1 of the
/// pixels changed (the probabilities of the step images in order), by the trapezoid rule.
pub fn curve_auc(probabilities: &[f64]) -> Result<f64> {
    if probabilities.len() < 2 {
        return Err(MetricsError::InvalidParameter {
            name: "curve points",
            value: probabilities.len() as f64,
            reason: "a curve needs at least two points (before and after)",
        });
    }
    ensure_finite("probabilities", probabilities.iter().copied())?;
    let h = 1.0 / (probabilities.len() - 1) as f64;
    Ok(probabilities
        .windows(2)
        .map(|w| 0.5 * (w[0] + w[1]) * h)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_by_decreasing_value_with_ties_in_index_order() {
        assert_eq!(
            importance_order(&[0.1, 0.9, 0.5, 0.9, -1.0]).unwrap(),
            vec![1, 3, 2, 0, 4]
        );
        assert!(importance_order(&[]).is_err());
        assert!(importance_order(&[f32::NAN]).is_err());
    }

    #[test]
    fn the_first_and_last_steps_are_the_two_ends_and_insertion_mirrors_deletion() {
        let image = [0.2f32, 0.4, 0.6, 0.8, 1.0];
        let baseline = [0.0f32; 5];
        let order = importance_order(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        let n = steps(image.len(), 2);
        assert_eq!(n, 4);
        let mut out = Vec::new();
        let mut deletion = Vec::new();
        let mut insertion = Vec::new();
        for s in 0..n {
            step_image(
                PixelCurve::Deletion,
                &image,
                &baseline,
                &order,
                2,
                s,
                &mut out,
            )
            .unwrap();
            deletion.push(out.clone());
            step_image(
                PixelCurve::Insertion,
                &image,
                &baseline,
                &order,
                2,
                s,
                &mut out,
            )
            .unwrap();
            insertion.push(out.clone());
        }
        assert_eq!(deletion[0], image);
        assert_eq!(deletion[n - 1], baseline);
        assert_eq!(insertion[0], baseline);
        assert_eq!(insertion[n - 1], image);
        // Step 1 deletes the two most important pixels (0 and 2); insertion adds them.
        assert_eq!(deletion[1], [0.0, 0.4, 0.0, 0.8, 1.0]);
        assert_eq!(insertion[1], [0.2, 0.0, 0.6, 0.0, 0.0]);
        // Each pixel is either deleted or inserted at every step: the two images add up.
        for (d, i) in deletion.iter().zip(&insertion) {
            for ((a, b), x) in d.iter().zip(i).zip(&image) {
                assert_eq!(a + b, *x);
            }
        }
        assert!(step_image(
            PixelCurve::Deletion,
            &image,
            &baseline,
            &order,
            0,
            1,
            &mut out
        )
        .is_err());
        assert!(step_image(
            PixelCurve::Deletion,
            &image,
            &[0.0; 4],
            &order,
            1,
            1,
            &mut out
        )
        .is_err());
    }

    #[test]
    fn the_area_is_exact_for_constant_and_linear_curves() {
        assert!((curve_auc(&[0.3; 11]).unwrap() - 0.3).abs() < 1e-15);
        let down: Vec<f64> = (0..=10).map(|i| 1.0 - f64::from(i) / 10.0).collect();
        assert!((curve_auc(&down).unwrap() - 0.5).abs() < 1e-15);
        // A reversed curve has the same area.
        let mut up = down.clone();
        up.reverse();
        assert!((curve_auc(&up).unwrap() - 0.5).abs() < 1e-15);
        // A step from 1 to 0 after the first point: half a trapezoid of width 1/4.
        assert!((curve_auc(&[1.0, 0.0, 0.0, 0.0, 0.0]).unwrap() - 0.125).abs() < 1e-15);
        assert!(curve_auc(&[1.0]).is_err());
        assert!(curve_auc(&[1.0, f64::NAN]).is_err());
    }
}
