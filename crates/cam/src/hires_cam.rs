//! HiResCAM (Draelos and Carin, 2020): the gradient multiplies the features element by
//! element, with no spatial pooling, `map(i, j) = sum_k g_k(i, j) F_k(i, j)`,
//! `g = d logit_c / d F`. Pooling the gradient first (Grad-CAM) can show regions the
//! model did not use; this map is what the features contribute to the logit's
//! first-order expansion, position by position.
//!
//! For a GAP + linear head `g_k(i, j) = W[c, k] / (h w)` everywhere (the mean divides by
//! `h w`), so HiResCAM = CAM / (h w), signed, with no ReLU involved (Draelos and
//! Carin's "HiResCAM equals CAM up to a constant" for such heads; the constant is
//! `1 / (h w)`, not `h w`). So `sum_ij HiResCAM_c = mean_ij CAM_c = logit_c - b_c`.

use candle_core::Tensor;
use models::FeatureClassifier;

use crate::activation_maps::ActivationMaps;
use crate::error::Result;
use crate::explainer::{Explainer, Resolution};
use crate::feature_gradients::{feature_gradients, FeatureGradients};
use crate::target::Target;

/// HiResCAM of a batch of images for `target`, for any [`FeatureClassifier`]: signed
/// maps `N x h x w` (or `N x num_classes x h x w` for [`Target::AllClasses`]).
pub fn hires_cam<M: FeatureClassifier + ?Sized>(
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
    // N x T x K x h x w times N x 1 x K x h x w, summed over the channels.
    let maps = grads.broadcast_mul(&features.unsqueeze(1)?)?.sum(2)?;
    ActivationMaps::from_4d(maps, classes, logits)
}

/// HiResCAM (Draelos and Carin, 2020) behind [`Explainer`]: [`hires_cam`], for any
/// [`FeatureClassifier`].
#[derive(Debug, Clone, Copy)]
pub struct HiResCam<'a, M: ?Sized> {
    /// The explained model.
    pub model: &'a M,
}

impl<M: FeatureClassifier + ?Sized> Explainer for HiResCam<'_, M> {
    fn name(&self) -> &'static str {
        "hires-cam"
    }
    fn resolution(&self) -> Resolution {
        Resolution::Features
    }
    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps> {
        hires_cam(self.model, images, target)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::class_activation_map::class_activation_map;
    use crate::method_checks::{
        assert_batch_of_n_is_n_batches_of_one, assert_close,
        assert_per_image_target_picks_each_class, values, QuadraticHeadModel,
    };
    use crate::test_model::{random_images, TinyCamModel};

    proptest! {
        #![proptest_config(test_support::seeded(32))]

        #[test]
        fn hires_cam_is_signed_cam_over_area_for_a_gap_head(
            seed in any::<u64>(), k in 1usize..6, c in 1usize..5, n in 1usize..4, half in 2usize..5,
        ) {
            // d logit_c / d F_k(i, j) = W[c, k] / (h w) since the pool is a mean, so
            // sum_k g_k F_k = (sum_k W[c, k] F_k) / (h w) = CAM / (h w), negative values
            // included. ("HiResCAM = CAM x h w" has the factor upside down: it would make
            // HiResCAM's sum h^2 w^2 times the logit, not the logit.)
            let model = TinyCamModel::random(seed, k, c);
            let x = random_images(seed ^ 21, n, 2 * half);
            let area = (half * half) as f64;
            for target in [Target::AllClasses, Target::Predicted, Target::Class(c - 1)] {
                let hires = hires_cam(&model, &x, &target).unwrap();
                let cam = class_activation_map(&model, &x, &target).unwrap();
                prop_assert_eq!(&hires.classes, &cam.classes);
                prop_assert_eq!(hires.maps.dims(), cam.maps.dims());
                let expected: Vec<f64> = values(&cam.maps).iter().map(|v| v / area).collect();
                assert_close(&values(&hires.maps), &expected, 1e-12, "CAM / (h w)");
            }
            // Hence the map sums to the logit minus the bias.
            let all = hires_cam(&model, &x, &Target::AllClasses).unwrap();
            let sums = values(&all.maps.sum((2, 3)).unwrap());
            let (_, bias) = model.head_tensors();
            let expected = values(&all.logits.broadcast_sub(&bias).unwrap());
            assert_close(&sums, &expected, 1e-10, "sum = logit - bias");
        }
    }

    #[test]
    fn hires_cam_matches_a_per_pixel_loop_where_gradients_vary() {
        // Head on mean(F^2): g = 2 W[c, k] F / (h w), so the map is
        // sum_k 2 W[c, k] F_k(i, j)^2 / (h w), computed here pixel by pixel.
        let (k, c, n, size) = (4, 3, 3, 8);
        let model = QuadraticHeadModel(TinyCamModel::random(22, k, c));
        let x = random_images(23, n, size);
        let got = hires_cam(&model, &x, &Target::AllClasses).unwrap();
        let f = values(&model.features_and_logits(&x).unwrap().0);
        let w = values(&model.0.head_tensors().0);
        let hw = (size / 2) * (size / 2);
        let mut expected = Vec::new();
        for img in 0..n {
            for cls in 0..c {
                for p in 0..hw {
                    let v: f64 = (0..k)
                        .map(|ch| {
                            let fv = f[(img * k + ch) * hw + p];
                            2.0 * w[cls * k + ch] * fv / hw as f64 * fv
                        })
                        .sum();
                    expected.push(v);
                }
            }
        }
        assert_close(&values(&got.maps), &expected, 1e-12, "per-pixel loop");
    }

    #[test]
    fn hires_cam_batch_of_n_is_n_batches_of_one() {
        let model = QuadraticHeadModel(TinyCamModel::random(24, 5, 4));
        let x = random_images(25, 5, 8);
        let method = HiResCam { model: &model };
        for target in [
            Target::Predicted,
            Target::AllClasses,
            Target::Class(3),
            Target::PerImage(vec![2, 0, 3, 3, 1]),
        ] {
            assert_batch_of_n_is_n_batches_of_one(&method, &x, &target, 1e-12);
        }
    }

    #[test]
    fn hires_cam_per_image_target_picks_each_class() {
        let model = QuadraticHeadModel(TinyCamModel::random(26, 4, 5));
        let x = random_images(27, 6, 8);
        let method = HiResCam { model: &model };
        assert_per_image_target_picks_each_class(&method, &x, 1e-12);
        assert_eq!(method.name(), "hires-cam");
        assert_eq!(method.resolution(), Resolution::Features);
    }
}
