//! Grad-CAM++ (Chattopadhay et al., WACV 2018), in pytorch-grad-cam's closed form.
//!
//! With `g = d logit_c / d F` and the score taken as `exp(logit_c)`, the paper's higher
//! derivatives become powers of `g` (for a network piecewise linear in the features) and
//! its eq. 19 gives, per channel `k` and position `(i, j)`,
//! `alpha = g^2 / (2 g^2 + sum_ab F_k(a, b) g^3)` (zero where `g = 0`), and the channel
//! weight `w_k = sum_ij alpha * ReLU(g)`. The map is `ReLU(sum_k w_k F_k)`: like every
//! method here, [`grad_cam_plus_plus`] returns the signed sum and the ReLU is
//! [`crate::MapScaling::Relu`]'s.
//!
//! Three choices, stated:
//! - the paper's weights carry a factor `exp(logit_c)` (from `d exp(S) / dF`); it is
//!   positive and the same for every channel of a map, so it only rescales the map, and
//!   pytorch-grad-cam leaves it out: so do we;
//! - `alpha * ReLU(g)` is computed as `g / (2 + sum_ab F_k g)` where `g > 0` (equal to the
//!   formula there), so tiny gradients neither underflow (`g^3`) nor divide 0 by 0;
//! - no `eps` in the denominator: pytorch-grad-cam adds 1e-6, which is the size of `g^2`
//!   itself for a GAP head over 7 x 7 (`g = W / 49`, about 1e-3) and would bias alpha.
//!
//! The closed form assumes non-negative features (after a ReLU, as in the paper and
//! every model here); with signed features `2 + sum F g` can vanish, which is reported
//! as [`CamError::NotFinite`] rather than returned.
//!
//! For a GAP + linear head `g = W[c, k] / (h w)` everywhere, so
//! `w_k = ReLU(W[c, k]) / (2 + W[c, k] mean_ij F_k)`.

use candle_core::{DType, Tensor};
use models::FeatureClassifier;

use crate::activation_maps::ActivationMaps;
use crate::error::{CamError, Result};
use crate::explainer::{Explainer, Resolution};
use crate::feature_gradients::{feature_gradients, FeatureGradients};
use crate::target::Target;

/// Grad-CAM++ of a batch of images for `target`, for any [`FeatureClassifier`]: signed
/// maps `N x h x w` (or `N x num_classes x h x w` for [`Target::AllClasses`]).
pub fn grad_cam_plus_plus<M: FeatureClassifier + ?Sized>(
    model: &M,
    images: &Tensor,
    target: &Target,
) -> Result<ActivationMaps> {
    let FeatureGradients {
        features,
        logits,
        classes,
        grads,
    } = feature_gradients(model, images, target)?;
    // sum_ab F_k(a, b), N x 1 x K x 1 x 1 against the gradients' N x T x K x h x w.
    let sums = features.sum_keepdim((2, 3))?.unsqueeze(1)?;
    let denominators = (grads.broadcast_mul(&sums)? + 2.0)?;
    let positive = grads.gt(0.0)?;
    // Where g <= 0 the term is 0 (ReLU(g) = 0); 1 keeps those denominators harmless.
    let denominators = positive.where_cond(&denominators, &denominators.ones_like()?)?;
    let weights = grads.relu()?.div(&denominators)?.sum((3, 4))?; // N x T x K
    let total = weights
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    if !total.is_finite() {
        return Err(CamError::NotFinite(
            "Grad-CAM++'s channel weights (2 + sum F * g vanished: signed features?)",
        ));
    }
    ActivationMaps::from_channel_weights(&features, &weights, classes, logits)
}

/// Grad-CAM++ (Chattopadhay et al., 2018) behind [`Explainer`]: [`grad_cam_plus_plus`],
/// for any [`FeatureClassifier`].
#[derive(Debug, Clone, Copy)]
pub struct GradCamPlusPlus<'a, M: ?Sized> {
    /// The explained model.
    pub model: &'a M,
}

impl<M: FeatureClassifier + ?Sized> Explainer for GradCamPlusPlus<'_, M> {
    fn name(&self) -> &'static str {
        "grad-cam++"
    }
    fn resolution(&self) -> Resolution {
        Resolution::Features
    }
    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps> {
        grad_cam_plus_plus(self.model, images, target)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::method_checks::{
        assert_batch_of_n_is_n_batches_of_one, assert_close,
        assert_per_image_target_picks_each_class, values, QuadraticHeadModel,
    };
    use crate::target::MapClasses;
    use crate::test_model::{random_images, TinyCamModel};

    /// Grad-CAM++ maps in plain f64 loops, one image, class and pixel at a time, from
    /// the formula as published: `grad(image, class, channel, pixel)` gives `g`.
    fn per_pixel_grad_cam_plus_plus(
        features: &[f64],
        (n, k, hw): (usize, usize, usize),
        classes: &[Vec<usize>],
        grad: impl Fn(usize, usize, usize, usize) -> f64,
    ) -> Vec<f64> {
        let mut maps = Vec::new();
        for img in 0..n {
            for &c in &classes[img] {
                let f = |ch: usize, p: usize| features[(img * k + ch) * hw + p];
                let mut map = vec![0f64; hw];
                for ch in 0..k {
                    let sum: f64 = (0..hw).map(|p| f(ch, p)).sum();
                    let mut weight = 0.0;
                    for p in 0..hw {
                        let g = grad(img, c, ch, p);
                        let alpha = if g == 0.0 {
                            0.0
                        } else {
                            g.powi(2) / (2.0 * g.powi(2) + sum * g.powi(3))
                        };
                        weight += alpha * g.max(0.0);
                    }
                    for (p, m) in map.iter_mut().enumerate() {
                        *m += weight * f(ch, p);
                    }
                }
                maps.extend(map);
            }
        }
        maps
    }

    fn classes_of(maps: &ActivationMaps, n: usize) -> Vec<Vec<usize>> {
        (0..n).map(|i| maps.classes.classes_of(i)).collect()
    }

    proptest! {
        #![proptest_config(test_support::seeded(24))]

        #[test]
        fn grad_cam_plus_plus_matches_a_per_pixel_loop_where_gradients_vary(
            seed in any::<u64>(), k in 1usize..6, c in 2usize..5, n in 1usize..4, half in 2usize..5,
        ) {
            // Head on mean(F^2): g = 2 W[c, k] F_k(i, j) / (h w), zero wherever F is.
            let model = QuadraticHeadModel(TinyCamModel::random(seed, k, c));
            let x = random_images(seed ^ 11, n, 2 * half);
            let (features, _) = model.features_and_logits(&x).unwrap();
            let f = values(&features);
            let (w, _) = model.0.head_tensors();
            let w = values(&w);
            let hw = half * half;
            for target in [Target::AllClasses, Target::Predicted, Target::Class(c - 1)] {
                let got = grad_cam_plus_plus(&model, &x, &target).unwrap();
                let expected = per_pixel_grad_cam_plus_plus(
                    &f, (n, k, hw), &classes_of(&got, n),
                    |img, cls, ch, p| 2.0 * w[cls * k + ch] * f[(img * k + ch) * hw + p] / hw as f64,
                );
                assert_close(&values(&got.maps), &expected, 1e-12, "quadratic head");
            }
        }

        #[test]
        fn grad_cam_plus_plus_weights_are_relu_w_over_two_plus_w_mean_f_for_a_gap_head(
            seed in any::<u64>(), k in 1usize..6, c in 2usize..5, n in 1usize..4, half in 2usize..5,
        ) {
            // g = W[c, k] / (h w) everywhere, so sum_ij alpha ReLU(g) collapses to
            // ReLU(W[c, k]) / (2 + W[c, k] mean_ij F_k): checked against the same
            // per-pixel loop and against that closed form.
            let model = TinyCamModel::random(seed, k, c);
            let x = random_images(seed ^ 12, n, 2 * half);
            let (features, _) = model.features_and_logits(&x).unwrap();
            let f = values(&features);
            let (w, _) = model.head_tensors();
            let w = values(&w);
            let hw = half * half;
            let got = grad_cam_plus_plus(&model, &x, &Target::AllClasses).unwrap();
            let loop_maps = per_pixel_grad_cam_plus_plus(
                &f, (n, k, hw), &classes_of(&got, n), |_, cls, ch, _| w[cls * k + ch] / hw as f64,
            );
            assert_close(&values(&got.maps), &loop_maps, 1e-12, "per-pixel loop");
            let mut closed = Vec::new();
            for img in 0..n {
                for cls in 0..c {
                    let mut map = vec![0f64; hw];
                    for ch in 0..k {
                        let fk = &f[(img * k + ch) * hw..(img * k + ch + 1) * hw];
                        let mean = fk.iter().sum::<f64>() / hw as f64;
                        let wk = w[cls * k + ch];
                        let weight = wk.max(0.0) / (2.0 + wk * mean);
                        for (m, v) in map.iter_mut().zip(fk) {
                            *m += weight * v;
                        }
                    }
                    closed.extend(map);
                }
            }
            assert_close(&values(&got.maps), &closed, 1e-12, "closed form");
        }
    }

    #[test]
    fn grad_cam_plus_plus_batch_of_n_is_n_batches_of_one() {
        let model = QuadraticHeadModel(TinyCamModel::random(3, 5, 4));
        let x = random_images(4, 5, 8);
        let method = GradCamPlusPlus { model: &model };
        for target in [
            Target::Predicted,
            Target::AllClasses,
            Target::Class(2),
            Target::PerImage(vec![0, 3, 1, 1, 2]),
        ] {
            assert_batch_of_n_is_n_batches_of_one(&method, &x, &target, 1e-12);
        }
    }

    #[test]
    fn grad_cam_plus_plus_per_image_target_picks_each_class() {
        let model = QuadraticHeadModel(TinyCamModel::random(5, 4, 5));
        let x = random_images(6, 6, 8);
        let method = GradCamPlusPlus { model: &model };
        assert_per_image_target_picks_each_class(&method, &x, 1e-12);
        assert_eq!(method.name(), "grad-cam++");
        assert_eq!(method.resolution(), Resolution::Features);
    }

    #[test]
    fn grad_cam_plus_plus_of_a_class_with_no_positive_gradient_is_zero() {
        // A head whose row for class 0 is negative: ReLU(g) = 0 everywhere, every weight 0.
        let tiny = TinyCamModel::random(9, 3, 2);
        let (w, b) = tiny.head_tensors();
        let w = (w.abs().unwrap() * -1.0).unwrap();
        let model = tiny.with_head(w, b);
        let x = random_images(10, 2, 6);
        let maps = grad_cam_plus_plus(&model, &x, &Target::Class(0)).unwrap();
        assert_eq!(maps.classes, MapClasses::PerImage(vec![0, 0]));
        assert!(values(&maps.maps).iter().all(|&v| v == 0.0));
    }
}
