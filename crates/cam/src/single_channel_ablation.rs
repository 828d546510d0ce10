//! The study's defective map, kept as a named ablation so the difference can be shown.
//!
//! Its notebook assigned (`=`) instead of accumulating (`+=`) in the loop over
//! channels, so its "CAM" is the last channel alone times its head weight, for class 7
//! whatever the prediction, then bilinearly resized (`cv2.INTER_LINEAR`) and min-max
//! normalised: apply [`SingleChannelAblation::STUDY_UPSAMPLING`] and
//! [`SingleChannelAblation::STUDY_SCALING`] to reproduce it.

use candle_core::Tensor;
use models::CamModel;

use crate::activation_maps::ActivationMaps;
use crate::class_activation_map::{head_weight, rows_per_image};
use crate::error::{CamError, Result};
use crate::scaling::MapScaling;
use crate::target::Target;
use crate::upsampling::Upsampling;

/// Which single channel, for which class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingleChannelAblation {
    /// The class whose head weight multiplies the channel (the study: 7, the true class
    /// of its test image 0).
    pub class: usize,
    /// The channel kept; `None` is the last one, `K - 1` (the study: 63 of 64).
    pub channel: Option<usize>,
}

impl Default for SingleChannelAblation {
    fn default() -> Self {
        Self {
            class: 7,
            channel: None,
        }
    }
}

impl SingleChannelAblation {
    /// The study resized with `cv2.INTER_LINEAR` before normalising.
    pub const STUDY_UPSAMPLING: Upsampling = Upsampling::Bilinear;
    /// The study min-max normalised the signed map (no ReLU).
    pub const STUDY_SCALING: MapScaling = MapScaling::MinMax;
}

/// The study's defective map: `W[class, k] F_k` for the one channel `k`, raw
/// (`N x h x w`, every image for the same class).
pub fn single_channel_ablation_map<M: CamModel + ?Sized>(
    model: &M,
    images: &Tensor,
    ablation: &SingleChannelAblation,
) -> Result<ActivationMaps> {
    let (features, logits) = model.features_and_logits(images)?;
    let weight = head_weight(model, &features)?;
    let (_, k) = weight.dims2()?;
    let channel = ablation.channel.unwrap_or(k.saturating_sub(1));
    if channel >= k {
        return Err(CamError::InvalidArgument(format!(
            "channel {channel} does not exist: the features have {k}"
        )));
    }
    let classes = Target::Class(ablation.class).resolve(&logits)?;
    let n = features.dim(0)?;
    // Every channel weight but one set to zero: the base does the rest.
    let mask: Vec<f32> = (0..k)
        .map(|i| if i == channel { 1.0 } else { 0.0 })
        .collect();
    let mask = Tensor::from_vec(mask, k, features.device())?.to_dtype(weight.dtype())?;
    let weights = rows_per_image(&weight, &classes, n)?.broadcast_mul(&mask)?;
    ActivationMaps::from_channel_weights(&features, &weights, classes, logits)
}

#[cfg(test)]
mod tests {
    use models::FeatureClassifier;

    use super::*;
    use crate::test_model::{random_images, TinyCamModel};

    #[test]
    fn the_ablation_is_the_last_channel_times_its_class_7_weight() {
        let (k, classes) = (5, 10);
        let model = TinyCamModel::random(11, k, classes);
        let x = random_images(12, 3, 8);
        let ablated =
            single_channel_ablation_map(&model, &x, &SingleChannelAblation::default()).unwrap();
        assert_eq!(ablated.maps.dims(), &[3, 4, 4]);
        assert_eq!(ablated.classes, crate::MapClasses::PerImage(vec![7; 3]));
        let (features, _) = model.features_and_logits(&x).unwrap();
        let w: f64 = model
            .head()
            .0
            .get(7)
            .unwrap()
            .get(k - 1)
            .unwrap()
            .to_scalar()
            .unwrap();
        let expected = (features.narrow(1, k - 1, 1).unwrap().squeeze(1).unwrap() * w).unwrap();
        let gap: f64 = (ablated.maps - expected)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(gap < 1e-12);
    }

    #[test]
    fn the_study_convention_gives_unit_range_maps_at_input_size() {
        let model = TinyCamModel::random(13, 4, 10);
        let x = random_images(14, 2, 8);
        let shown = single_channel_ablation_map(&model, &x, &SingleChannelAblation::default())
            .unwrap()
            .upsampled((8, 8), SingleChannelAblation::STUDY_UPSAMPLING)
            .unwrap()
            .scaled(SingleChannelAblation::STUDY_SCALING)
            .unwrap();
        let v: Vec<f64> = shown.maps.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    }

    #[test]
    fn a_missing_channel_or_class_is_an_error() {
        let model = TinyCamModel::random(0, 3, 10);
        let x = random_images(0, 1, 4);
        let bad_channel = SingleChannelAblation {
            class: 7,
            channel: Some(3),
        };
        assert!(matches!(
            single_channel_ablation_map(&model, &x, &bad_channel),
            Err(CamError::InvalidArgument(_))
        ));
        let small = TinyCamModel::random(0, 3, 5);
        assert!(matches!(
            single_channel_ablation_map(&small, &x, &SingleChannelAblation::default()),
            Err(CamError::ClassOutOfRange { class: 7, .. })
        ));
    }
}
