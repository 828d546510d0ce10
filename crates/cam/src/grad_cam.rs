//! Grad-CAM (Selvaraju et al., ICCV 2017): the channel weights are the spatial means of
//! the gradient of the class logit with respect to the features,
//! `alpha_k = mean_ij d logit_c / d F_k(i, j)`. Grad-CAM's map is `ReLU(sum_k alpha_k F_k)`:
//! [`grad_cam`] returns the signed sum, and [`crate::MapScaling::Relu`] (or
//! [`crate::MapScaling::ReluMinMax`], pytorch-grad-cam's) applies the ReLU.
//!
//! For a GAP + linear head `alpha_k = W[c, k] / (h w)`, so Grad-CAM is CAM / (h w).

use candle_core::Tensor;
use models::FeatureClassifier;

use crate::activation_maps::ActivationMaps;
use crate::error::Result;
use crate::feature_gradients::{feature_gradients, FeatureGradients};
use crate::target::Target;

/// Grad-CAM of a batch of images for `target`, for any [`FeatureClassifier`]: signed
/// maps `N x h x w` (or `N x num_classes x h x w` for [`Target::AllClasses`]).
///
/// The logits of the whole batch are summed before differentiating, so every image
/// gets its own gradient as long as the head treats images independently (no batch
/// statistics), which holds for every model of this workspace.
pub fn grad_cam<M: FeatureClassifier + ?Sized>(
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
    let weights = grads.mean((3, 4))?; // N x T x K
    ActivationMaps::from_channel_weights(&features, &weights, classes, logits)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::class_activation_map::class_activation_map;
    use crate::error::CamError;
    use crate::scaling::MapScaling;
    use crate::test_model::{random_images, TinyCamModel};

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    proptest! {
        #![proptest_config(test_support::seeded(32))]

        #[test]
        fn grad_cam_is_relu_cam_over_area_for_a_gap_head(
            seed in any::<u64>(), k in 1usize..6, c in 1usize..5, n in 1usize..4, half in 2usize..5,
        ) {
            let model = TinyCamModel::random(seed, k, c);
            let x = random_images(seed ^ 5, n, 2 * half);
            let area = (half * half) as f64;
            for target in [Target::AllClasses, Target::Predicted, Target::Class(c - 1)] {
                let grad = grad_cam(&model, &x, &target).unwrap();
                let cam = class_activation_map(&model, &x, &target).unwrap();
                prop_assert_eq!(&grad.classes, &cam.classes);
                let g = values(&grad.scaled(MapScaling::Relu).unwrap().maps);
                let expected: Vec<f64> = values(&cam.scaled(MapScaling::Relu).unwrap().maps)
                    .iter().map(|v| v / area).collect();
                for (a, b) in g.iter().zip(&expected) {
                    prop_assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn grad_cam_rejects_a_class_the_model_lacks() {
        let model = TinyCamModel::random(0, 2, 3);
        let x = random_images(0, 1, 4);
        assert!(matches!(
            grad_cam(&model, &x, &Target::Class(3)),
            Err(CamError::ClassOutOfRange { .. })
        ));
    }

    #[test]
    fn grad_cam_batch_of_n_is_n_batches_of_one_and_per_image_picks_each_class() {
        let model = crate::method_checks::QuadraticHeadModel(TinyCamModel::random(2, 4, 5));
        let x = random_images(3, 5, 8);
        let method = crate::explainer::GradCam { model: &model };
        for target in [
            Target::Predicted,
            Target::AllClasses,
            Target::PerImage(vec![4, 0, 2, 2, 1]),
        ] {
            crate::method_checks::assert_batch_of_n_is_n_batches_of_one(
                &method, &x, &target, 1e-12,
            );
        }
        crate::method_checks::assert_per_image_target_picks_each_class(&method, &x, 1e-12);
    }
}
