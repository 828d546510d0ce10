//! The one base every method shares: a map is a weighted sum of feature channels,
//! `map(i, j) = sum_k weight_k F_k(i, j)`; methods differ only in their weights
//! (CAM: the head's row; Grad-CAM: pooled gradients; the study's ablation: one channel).

use candle_core::{DType, Tensor, D};

use crate::error::{CamError, Result};
use crate::scaling::{scale_maps, MapScaling, ScaledMaps};
use crate::target::MapClasses;
use crate::upsampling::{upsample, Upsampling};

/// Signed ("raw") maps of a batch, the classes they explain and the model's logits.
///
/// No convention has been applied yet: use [`ActivationMaps::upsampled`] and
/// [`ActivationMaps::scaled`] (ReLU, min-max) to get the published ones.
#[derive(Debug, Clone)]
pub struct ActivationMaps {
    /// `N x h x w` for one class per image ([`MapClasses::PerImage`]),
    /// `N x num_classes x h x w` for [`MapClasses::All`].
    pub maps: Tensor,
    /// The class of every map.
    pub classes: MapClasses,
    /// The logits of the images, `N x num_classes`.
    pub logits: Tensor,
}

/// `sum_k weights[n, t, k] * features[n, k, i, j]` for every image `n` and map `t`:
/// features `N x K x h x w`, weights `N x T x K`, result `N x T x h x w`.
pub fn weighted_feature_sum(features: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let (n, k, h, w) = features.dims4().map_err(|_| {
        CamError::Shape(format!(
            "features must be N x K x h x w, got {:?}",
            features.dims()
        ))
    })?;
    let (wn, t, wk) = weights.dims3()?;
    if (wn, wk) != (n, k) {
        return Err(CamError::Shape(format!(
            "channel weights {:?} do not fit features {:?}",
            weights.dims(),
            features.dims()
        )));
    }
    let flat = features.reshape((n, k, h * w))?;
    let weights = weights.to_dtype(features.dtype())?.contiguous()?;
    Ok(weights.matmul(&flat)?.reshape((n, t, h, w))?)
}

impl ActivationMaps {
    /// Maps from features and per-image channel weights (`N x T x K`); the class axis
    /// is dropped when there is one map per image.
    pub(crate) fn from_channel_weights(
        features: &Tensor,
        weights: &Tensor,
        classes: MapClasses,
        logits: Tensor,
    ) -> Result<Self> {
        Self::from_4d(weighted_feature_sum(features, weights)?, classes, logits)
    }

    /// Maps given as `N x T x h x w`, with the class axis dropped when there is one map
    /// per image (the layout of [`ActivationMaps::maps`]).
    pub(crate) fn from_4d(maps: Tensor, classes: MapClasses, logits: Tensor) -> Result<Self> {
        let maps = match classes {
            MapClasses::PerImage(_) => maps.squeeze(1)?,
            MapClasses::All(_) => maps,
        };
        Ok(Self {
            maps,
            classes,
            logits,
        })
    }

    /// The maps as `N x T x h x w` whatever the target (`T` = 1 or the number of classes).
    pub fn maps_4d(&self) -> Result<Tensor> {
        Ok(match self.maps.rank() {
            3 => self.maps.unsqueeze(1)?,
            _ => self.maps.clone(),
        })
    }

    /// Number of images.
    pub fn num_images(&self) -> usize {
        self.maps.dims().first().copied().unwrap_or(0)
    }

    /// `(h, w)` of the maps (an error if `maps` was replaced by a tensor of rank < 2).
    pub fn size(&self) -> Result<(usize, usize)> {
        match self.maps.dims() {
            [.., h, w] => Ok((*h, *w)),
            d => Err(CamError::Shape(format!(
                "maps need two spatial axes, got {d:?}"
            ))),
        }
    }

    /// Softmax of the logits (for captions; computed without a gradient path).
    pub fn probabilities(&self) -> Result<Tensor> {
        let logits = self.logits.to_dtype(DType::F32)?;
        let shifted = logits
            .broadcast_sub(&logits.max_keepdim(D::Minus1)?)?
            .exp()?;
        Ok(shifted.broadcast_div(&shifted.sum_keepdim(D::Minus1)?)?)
    }

    /// The same maps resized to `size` (height, width) with an [`Upsampling`] convention.
    pub fn upsampled(&self, size: (usize, usize), mode: Upsampling) -> Result<Self> {
        Ok(Self {
            maps: upsample(&self.maps, size, mode)?,
            classes: self.classes.clone(),
            logits: self.logits.clone(),
        })
    }

    /// The maps under a [`MapScaling`] convention, with a status per map.
    pub fn scaled(&self, scaling: MapScaling) -> Result<ScaledMaps> {
        scale_maps(&self.maps, scaling)
    }

    /// One map as row-major f32 values: image `image`, map `slot` along the class axis
    /// (0 when there is one map per image).
    pub fn map_values(&self, image: usize, slot: usize) -> Result<Vec<f32>> {
        let maps = self.maps_4d()?;
        let (n, t, _, _) = maps.dims4()?;
        if image >= n || slot >= t {
            return Err(CamError::InvalidArgument(format!(
                "map ({image}, {slot}) requested from {n} images x {t} maps"
            )));
        }
        Ok(maps
            .get(image)?
            .get(slot)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1()?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn weighted_sum_of_two_channels() {
        let dev = Device::Cpu;
        // One image, two 1 x 2 channels [1, 2] and [10, 20]; weights 1 and -1.
        let f = Tensor::new(&[[[[1f32, 2.0]], [[10.0, 20.0]]]], &dev).unwrap();
        let w = Tensor::new(&[[[1f32, -1.0]]], &dev).unwrap();
        let m = weighted_feature_sum(&f, &w).unwrap();
        assert_eq!(m.dims(), &[1, 1, 1, 2]);
        assert_eq!(
            m.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![-9.0, -18.0]
        );
    }

    #[test]
    fn size_is_the_last_two_axes() {
        let dev = Device::Cpu;
        let logits = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let maps = ActivationMaps {
            maps: Tensor::zeros((2, 3, 4, 5), DType::F32, &dev).unwrap(),
            classes: MapClasses::All(3),
            logits: logits.clone(),
        };
        assert_eq!(maps.size().unwrap(), (4, 5));
        assert_eq!(maps.num_images(), 2);
        let broken = ActivationMaps {
            maps: Tensor::zeros(2, DType::F32, &dev).unwrap(),
            ..maps
        };
        assert!(broken.size().is_err());
    }

    #[test]
    fn mismatched_weights_are_an_error() {
        let dev = Device::Cpu;
        let f = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((2, 1, 4), DType::F32, &dev).unwrap();
        assert!(matches!(
            weighted_feature_sum(&f, &w),
            Err(CamError::Shape(_))
        ));
    }
}
