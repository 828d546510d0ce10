//! CAM (Zhou et al., CVPR 2016): the channel weights are the linear head's row of the
//! class, `CAM_c(i, j) = sum_k W[c, k] F_k(i, j)`, so `mean_ij CAM_c = logit_c - b_c`.

use candle_core::Tensor;
use models::CamModel;

use crate::activation_maps::ActivationMaps;
use crate::error::{CamError, Result};
use crate::target::{MapClasses, Target};

/// The head's weight, checked against the features: `num_classes x K`.
pub(crate) fn head_weight<M: CamModel + ?Sized>(model: &M, features: &Tensor) -> Result<Tensor> {
    let (weight, _) = model.head();
    let (_, k) = weight.dims2()?;
    let fk = features.dims().get(1).copied().unwrap_or(0);
    if features.rank() != 4 || fk != k {
        return Err(CamError::Shape(format!(
            "head weight {:?} does not fit features {:?}",
            weight.dims(),
            features.dims()
        )));
    }
    Ok(weight.to_dtype(features.dtype())?)
}

/// Rows of `weight` per image: `N x 1 x K` for one class each, `N x C x K` for all.
pub(crate) fn rows_per_image(weight: &Tensor, classes: &MapClasses, n: usize) -> Result<Tensor> {
    let (c, k) = weight.dims2()?;
    Ok(match classes {
        MapClasses::PerImage(cls) => {
            let idx: Vec<u32> = cls.iter().map(|&c| c as u32).collect();
            let idx = Tensor::from_vec(idx, n, weight.device())?;
            weight.index_select(&idx, 0)?.unsqueeze(1)?
        }
        MapClasses::All(_) => weight.unsqueeze(0)?.broadcast_as((n, c, k))?,
    })
}

/// CAM of a batch of images (`N x 1 x 28 x 28`) for `target`: raw (signed) maps of the
/// feature map's size (`N x h x w`, or `N x num_classes x h x w` for
/// [`Target::AllClasses`]).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use cam::{class_activation_map, Target};
/// use models::{init_model, GapCnn};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (model, _) = init_model::<GapCnn>(0, DType::F32, &Device::Cpu)?;
/// let x = Tensor::zeros((3, 1, 28, 28), DType::F32, &Device::Cpu)?;
/// let all = class_activation_map(&model, &x, &Target::AllClasses)?;
/// assert_eq!(all.maps.dims(), &[3, 10, 7, 7]);
/// # Ok(()) }
/// ```
pub fn class_activation_map<M: CamModel + ?Sized>(
    model: &M,
    images: &Tensor,
    target: &Target,
) -> Result<ActivationMaps> {
    let (features, logits) = model.features_and_logits(images)?;
    let weight = head_weight(model, &features)?;
    let classes = target.resolve(&logits)?;
    let weights = rows_per_image(&weight, &classes, features.dim(0)?)?;
    ActivationMaps::from_channel_weights(&features, &weights, classes, logits)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use metrics::{centre_of_mass_shift, spearman_correlation, top_k_intersection};
    use models::{init_model, random::uniform, GapCnn};
    use proptest::prelude::*;
    use rand::{rngs::StdRng, SeedableRng};

    use super::*;
    use crate::test_model::{random_images, random_tensor, TinyCamModel};

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all()
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
    }

    proptest! {
        #![proptest_config(test_support::seeded(32))]

        #[test]
        fn mean_of_cam_is_logit_minus_bias(
            seed in any::<u64>(), k in 1usize..6, c in 1usize..5, n in 1usize..4, half in 2usize..5,
        ) {
            let model = TinyCamModel::random(seed, k, c);
            let x = random_images(seed ^ 1, n, 2 * half);
            let maps = class_activation_map(&model, &x, &Target::AllClasses).unwrap();
            prop_assert_eq!(maps.maps.dims(), &[n, c, half, half]);
            let means = values(&maps.maps.mean((2, 3)).unwrap());
            let (_, bias) = model.head_tensors();
            let expected = values(&maps.logits.broadcast_sub(&bias).unwrap());
            prop_assert!(close(&means, &expected, 1e-10), "{means:?} vs {expected:?}");
        }

        #[test]
        fn cam_is_linear_in_the_head_weights(
            seed in any::<u64>(), k in 1usize..6, c in 1usize..5, a in -3.0f64..3.0, b in -3.0f64..3.0,
        ) {
            let model = TinyCamModel::random(seed, k, c);
            let mut rng = StdRng::seed_from_u64(seed ^ 2);
            let (w1, bias) = model.head_tensors();
            let w2 = random_tensor(&mut rng, &[c, k]);
            let mixed = ((&w1 * a).unwrap() + (&w2 * b).unwrap()).unwrap();
            let x = random_images(seed ^ 3, 2, 6);
            let cam = |w: &Tensor| {
                let m = model.with_head(w.clone(), bias.clone());
                values(&class_activation_map(&m, &x, &Target::AllClasses).unwrap().maps)
            };
            let (m1, m2, mixed) = (cam(&w1), cam(&w2), cam(&mixed));
            let combined: Vec<f64> = m1.iter().zip(&m2).map(|(p, q)| a * p + b * q).collect();
            prop_assert!(close(&mixed, &combined, 1e-10));
        }

        #[test]
        fn a_bias_shift_moves_logits_not_cam(
            seed in any::<u64>(), k in 1usize..6, c in 1usize..5, shift in -5.0f64..5.0,
        ) {
            let model = TinyCamModel::random(seed, k, c);
            let (w, bias) = model.head_tensors();
            let shifted = model.with_head(w, (&bias + shift).unwrap());
            let x = random_images(seed ^ 4, 2, 6);
            let before = class_activation_map(&model, &x, &Target::AllClasses).unwrap();
            let after = class_activation_map(&shifted, &x, &Target::AllClasses).unwrap();
            prop_assert_eq!(values(&before.maps), values(&after.maps));
            let moved: Vec<f64> = values(&before.logits).iter().map(|l| l + shift).collect();
            prop_assert!(close(&values(&after.logits), &moved, 1e-12));
        }
    }

    #[test]
    fn one_class_targets_are_slices_of_all_classes() {
        let model = TinyCamModel::random(7, 4, 3);
        let x = random_images(8, 5, 8);
        let all = class_activation_map(&model, &x, &Target::AllClasses).unwrap();
        let predicted = class_activation_map(&model, &x, &Target::Predicted).unwrap();
        let MapClasses::PerImage(classes) = &predicted.classes else {
            panic!("one class per image expected");
        };
        for (i, &c) in classes.iter().enumerate() {
            assert_eq!(
                predicted.map_values(i, 0).unwrap(),
                all.map_values(i, c).unwrap()
            );
        }
        let fixed = class_activation_map(&model, &x, &Target::Class(2)).unwrap();
        assert_eq!(fixed.maps.dims(), &[5, 4, 4]);
        assert_eq!(
            fixed.map_values(3, 0).unwrap(),
            all.map_values(3, 2).unwrap()
        );
    }

    #[test]
    fn gapcnn_cam_matches_explicit_channel_loops() {
        let dev = Device::Cpu;
        let (model, _) = init_model::<GapCnn>(0, DType::F32, &dev).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let x = uniform(&mut rng, (2, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).unwrap();
        let maps = class_activation_map(&model, &x, &Target::AllClasses).unwrap();
        assert_eq!(maps.maps.dims(), &[2, 10, 7, 7]);
        let got: Vec<f32> = maps.maps.flatten_all().unwrap().to_vec1().unwrap();

        let features: Vec<f32> = model
            .features(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (weight, _) = model.head();
        let weight: Vec<f32> = weight.flatten_all().unwrap().to_vec1().unwrap();
        let (n, classes, k, hw) = (2, 10, 128, 49);
        let mut expected = vec![0f32; n * classes * hw];
        for img in 0..n {
            for c in 0..classes {
                for ch in 0..k {
                    let w = weight[c * k + ch];
                    for p in 0..hw {
                        expected[(img * classes + c) * hw + p] +=
                            w * features[(img * k + ch) * hw + p];
                    }
                }
            }
        }
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "largest difference {worst}");
    }

    #[test]
    fn map_change_metrics_see_a_cam_unchanged_by_itself() {
        let dev = Device::Cpu;
        let (model, _) = init_model::<GapCnn>(3, DType::F32, &dev).unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        let x = uniform(&mut rng, (1, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).unwrap();
        let shown = class_activation_map(&model, &x, &Target::Predicted)
            .unwrap()
            .upsampled((28, 28), crate::Upsampling::Bilinear)
            .unwrap()
            .scaled(crate::MapScaling::MinMax)
            .unwrap();
        let map: Vec<f32> = shown
            .require_informative()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(top_k_intersection(&map, &map, 78).unwrap(), 1.0);
        assert!((spearman_correlation(&map, &map).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(centre_of_mass_shift(&map, &map, 28, 28).unwrap(), 0.0);
    }

    #[test]
    fn features_without_the_heads_channels_are_refused() {
        let model = TinyCamModel::random(1, 3, 2);
        let features = Tensor::zeros((1, 4, 2, 2), DType::F64, &Device::Cpu).unwrap();
        assert!(matches!(
            head_weight(&model, &features),
            Err(CamError::Shape(_))
        ));
    }

    #[test]
    fn cam_batch_of_n_is_n_batches_of_one_and_per_image_picks_each_class() {
        let model = TinyCamModel::random(9, 4, 5);
        let x = random_images(10, 5, 8);
        let method = crate::explainer::Cam { model: &model };
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
