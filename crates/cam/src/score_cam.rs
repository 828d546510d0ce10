//! Score-CAM (Wang et al., CVPR-W 2020): gradient-free channel weights. Each feature
//! channel `F_k` is upsampled to the input's size and min-max scaled to a mask
//! `M_k` in [0, 1]; the weight of channel `k` for class `c` is the model's softmax
//! probability of `c` on the masked input `x * M_k`. The map is `ReLU(sum_k w_k F_k)`:
//! [`score_cam`] returns the signed sum, the ReLU is [`crate::MapScaling::Relu`]'s.
//!
//! As the authors' code (`haofanwang/Score-CAM`): bilinear upsampling with half-pixel
//! centres ([`Upsampling::Bilinear`], PyTorch's `align_corners=False`; pytorch-grad-cam
//! uses `align_corners=True`), the softmax over classes (pytorch-grad-cam instead takes
//! the raw logit and a softmax over channels), no baseline subtracted, and a channel that
//! is constant gets weight 0 (it has no mask to speak of; the authors skip it). The
//! weighted sum is taken at the features' resolution: upsampling is linear, so
//! upsampling the map afterwards ([`ActivationMaps::upsampled`]) gives the authors' sum
//! of upsampled channels.
//!
//! The masked forwards of the `N x K` channels that are not constant run in batches of
//! `batch` (images and channels together); the masks of a batch are built when it
//! runs, so memory stays `O(batch x H x W)` whatever `N x K`.

use candle_core::{Tensor, D};
use models::{Classifier, FeatureClassifier};

use crate::activation_maps::ActivationMaps;
use crate::error::{CamError, Result};
use crate::explainer::{Explainer, Resolution};
use crate::feature_gradients::feature_dims;
use crate::target::{MapClasses, Target};
use crate::upsampling::{upsample, Upsampling};

/// Score-CAM of a batch of images for `target`, for any [`FeatureClassifier`]: signed
/// maps `N x h x w` (or `N x num_classes x h x w` for [`Target::AllClasses`], at no
/// extra cost: one masked forward gives every class's probability), with the masked
/// forwards run `batch` at a time.
pub fn score_cam<M: FeatureClassifier + ?Sized>(
    model: &M,
    images: &Tensor,
    target: &Target,
    batch: usize,
) -> Result<ActivationMaps> {
    let images = images.detach();
    let (features, logits) = model.features_and_logits(&images)?;
    let features = features.detach();
    let classes = target.resolve(&logits)?;
    let weights = score_cam_weights(model, &images, &features, &classes, batch)?;
    ActivationMaps::from_channel_weights(&features, &weights, classes, logits)
}

/// Score-CAM's channel weights, `N x T x K` (T = 1, or the number of classes for
/// [`MapClasses::All`]), of `images` (`N x C x H x W`) whose features are `features`
/// (`N x K x h x w`): the probability of each map's class on the input masked by each
/// channel, 0 for a constant channel.
pub fn score_cam_weights<M: Classifier + ?Sized>(
    model: &M,
    images: &Tensor,
    features: &Tensor,
    classes: &MapClasses,
    batch: usize,
) -> Result<Tensor> {
    if batch == 0 {
        return Err(CamError::InvalidArgument(
            "Score-CAM needs a batch of at least one masked image".into(),
        ));
    }
    let (n, k, h, w) = feature_dims(features)?;
    let (ni, _, height, width) = images.dims4()?;
    if ni != n {
        return Err(CamError::Shape(format!("{ni} images but features of {n}")));
    }
    let dtype = features.dtype();
    // A constant channel (as computed, before any resize) has no mask: weight 0, and no
    // masked forward is run for it.
    let flat = features.reshape((n, 1, k, h * w))?;
    let varies = flat
        .max_keepdim(D::Minus1)?
        .gt(&flat.min_keepdim(D::Minus1)?)?
        .squeeze(D::Minus1)?; // N x 1 x K, u8
    let live: Vec<u32> = varies
        .flatten_all()?
        .to_vec1::<u8>()?
        .iter()
        .enumerate()
        .filter(|&(_, &v)| v != 0)
        .map(|(r, _)| r as u32)
        .collect();
    let channels = features.reshape((n * k, h, w))?;
    let mut probabilities = Vec::with_capacity(live.len().div_ceil(batch));
    for rows in live.chunks(batch) {
        let image_of: Vec<u32> = rows.iter().map(|&r| r / k as u32).collect();
        let image_of = Tensor::from_vec(image_of, rows.len(), images.device())?;
        let rows = Tensor::from_vec(rows.to_vec(), rows.len(), images.device())?;
        let inputs = images.index_select(&image_of, 0)?; // len x C x H x W
        let masks = min_max_masks(&channels.index_select(&rows, 0)?, (height, width))?;
        let masked = inputs.broadcast_mul(&masks.to_dtype(images.dtype())?.unsqueeze(1)?)?;
        probabilities.push(softmax_rows(&model.logits(&masked)?)?.to_dtype(dtype)?);
    }
    if let MapClasses::PerImage(cls) = classes {
        if cls.len() != n {
            return Err(CamError::Shape(format!(
                "{} classes for {n} images",
                cls.len()
            )));
        }
    }
    let Some(first) = probabilities.first() else {
        // Every channel constant: every weight 0.
        let maps = match classes {
            MapClasses::PerImage(_) => 1,
            MapClasses::All(c) => *c,
        };
        return Ok(Tensor::zeros((n, maps, k), dtype, features.device())?);
    };
    // Every channel's row, zero for the constant ones.
    let num_classes = first.dim(1)?;
    let rows = Tensor::from_vec(live.clone(), live.len(), features.device())?;
    let probabilities = Tensor::zeros((n * k, num_classes), dtype, features.device())?
        .index_add(&rows, &Tensor::cat(&probabilities, 0)?, 0)?
        .reshape((n, k, num_classes))?;
    let weights = match classes {
        MapClasses::PerImage(cls) => {
            let idx: Vec<u32> = cls
                .iter()
                .flat_map(|&c| std::iter::repeat_n(c as u32, k))
                .collect();
            let idx = Tensor::from_vec(idx, (n, k, 1), features.device())?;
            probabilities.gather(&idx, 2)?.transpose(1, 2)? // N x 1 x K
        }
        MapClasses::All(_) => probabilities.transpose(1, 2)?, // N x C x K
    };
    Ok(weights
        .broadcast_mul(&varies.to_dtype(dtype)?)?
        .contiguous()?)
}

/// Channels (`B x h x w`) upsampled to `size` and min-max scaled to [0, 1]; a constant
/// channel gives a zero mask.
fn min_max_masks(channels: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    let up = upsample(channels, size, Upsampling::Bilinear)?; // B x H x W
    let b = up.dim(0)?;
    let flat = up.reshape((b, size.0 * size.1))?;
    let min = flat.min_keepdim(1)?;
    let range = flat.max_keepdim(1)?.broadcast_sub(&min)?;
    let positive = range.gt(0.0)?;
    let range = positive.where_cond(&range, &range.ones_like()?)?;
    let masks = flat.broadcast_sub(&min)?.broadcast_div(&range)?;
    Ok(masks.reshape((b, size.0, size.1))?)
}

/// Softmax along the last axis of `B x C` logits, shifted by each row's maximum.
fn softmax_rows(logits: &Tensor) -> Result<Tensor> {
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?)?;
    let e = shifted.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Score-CAM (Wang et al., 2020) behind [`Explainer`]: [`score_cam`], for any
/// [`FeatureClassifier`], its masked forwards [`ScoreCam::batch`] at a time.
#[derive(Debug, Clone, Copy)]
pub struct ScoreCam<'a, M: ?Sized> {
    /// The explained model.
    pub model: &'a M,
    /// Masked images per forward pass ([`ScoreCam::DEFAULT_BATCH`] by default); the
    /// maps do not depend on it.
    pub batch: usize,
}

impl<'a, M: ?Sized> ScoreCam<'a, M> {
    /// 256 masked images per forward: 2 images' worth of GapCnn's 128 channels.
    pub const DEFAULT_BATCH: usize = 256;

    /// Score-CAM of `model` with [`ScoreCam::DEFAULT_BATCH`].
    pub fn new(model: &'a M) -> Self {
        Self {
            model,
            batch: Self::DEFAULT_BATCH,
        }
    }
}

impl<M: FeatureClassifier + ?Sized> Explainer for ScoreCam<'_, M> {
    fn name(&self) -> &'static str {
        "score-cam"
    }
    fn resolution(&self) -> Resolution {
        Resolution::Features
    }
    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps> {
        score_cam(self.model, images, target, self.batch)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::method_checks::{
        assert_batch_of_n_is_n_batches_of_one, assert_close,
        assert_per_image_target_picks_each_class, values,
    };
    use crate::test_helpers::Counting;
    use crate::test_model::{random_images, TinyCamModel};
    use crate::upsampling::resize_matrix;

    /// Score-CAM weights (`[image][class][channel]`) one image and one channel at a time,
    /// in f64 loops: resize by the 1-D matrices, min-max, mask, one forward, softmax.
    fn weights_one_channel_at_a_time(model: &TinyCamModel, images: &Tensor) -> Vec<Vec<Vec<f64>>> {
        let (n, _, size, _) = images.dims4().unwrap();
        let mut out = Vec::new();
        for img in 0..n {
            let image = images.narrow(0, img, 1).unwrap();
            let pixels = values(&image);
            let (features, _) = model.features_and_logits(&image).unwrap();
            let (_, k, h, w) = features.dims4().unwrap();
            let f = values(&features);
            let rows = resize_matrix(h, size, Upsampling::Bilinear).unwrap();
            let cols = resize_matrix(w, size, Upsampling::Bilinear).unwrap();
            let mut per_class = vec![vec![0f64; k]; model.num_classes()];
            for ch in 0..k {
                let fk = &f[ch * h * w..(ch + 1) * h * w];
                let (lo, hi) = fk
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                if lo == hi {
                    continue; // weight 0
                }
                let mut up = vec![0f64; size * size];
                for i in 0..size {
                    for j in 0..size {
                        for a in 0..h {
                            for b in 0..w {
                                up[i * size + j] +=
                                    rows[i * h + a] * fk[a * w + b] * cols[j * w + b];
                            }
                        }
                    }
                }
                let (ulo, uhi) = up
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let masked: Vec<f64> = pixels
                    .iter()
                    .zip(&up)
                    .map(|(x, u)| x * (u - ulo) / (uhi - ulo))
                    .collect();
                let masked = Tensor::from_vec(masked, (1, 1, size, size), &Device::Cpu).unwrap();
                let logits = values(&model.logits(&masked).unwrap());
                let top = logits.iter().cloned().fold(f64::MIN, f64::max);
                let total: f64 = logits.iter().map(|l| (l - top).exp()).sum();
                for (c, l) in logits.iter().enumerate() {
                    per_class[c][ch] = (l - top).exp() / total;
                }
            }
            out.push(per_class);
        }
        out
    }

    /// Four random images and one black one (every channel constant: all weights 0).
    fn images_with_a_black_one() -> Tensor {
        let x = random_images(31, 4, 8);
        let black = Tensor::zeros((1, 1, 8, 8), DType::F64, &Device::Cpu).unwrap();
        Tensor::cat(&[&x, &black], 0).unwrap()
    }

    #[test]
    fn score_cam_weights_are_the_softmax_of_masked_forwards_one_channel_at_a_time() {
        let model = TinyCamModel::random(30, 5, 4);
        let x = images_with_a_black_one();
        let expected = weights_one_channel_at_a_time(&model, &x);
        let (features, logits) = model.features_and_logits(&x).unwrap();
        for target in [
            Target::AllClasses,
            Target::Predicted,
            Target::PerImage(vec![3, 0, 2, 1, 1]),
        ] {
            let classes = target.resolve(&logits).unwrap();
            let got = score_cam_weights(&model, &x, &features, &classes, 7).unwrap();
            let got3: Vec<Vec<Vec<f64>>> = got.to_vec3().unwrap();
            for (img, per_map) in got3.iter().enumerate() {
                for (slot, &c) in classes.classes_of(img).iter().enumerate() {
                    assert_close(
                        &per_map[slot],
                        &expected[img][c],
                        1e-12,
                        &format!("{target:?} image {img} class {c}"),
                    );
                }
            }
            // The black image: every channel constant, every weight 0, a zero map.
            assert!(got3[4].iter().flatten().all(|&v| v == 0.0));
        }
        // And the maps are those weights times the features.
        let maps = score_cam(&model, &x, &Target::AllClasses, 3).unwrap();
        let f = values(&features);
        let (k, hw) = (5, 16);
        let mut loop_maps = Vec::new();
        for (img, per_class) in expected.iter().enumerate() {
            for weights in per_class {
                for p in 0..hw {
                    loop_maps.push(
                        (0..k)
                            .map(|ch| weights[ch] * f[(img * k + ch) * hw + p])
                            .sum(),
                    );
                }
            }
        }
        assert_close(&values(&maps.maps), &loop_maps, 1e-12, "maps");
    }

    #[test]
    fn score_cam_is_the_same_for_every_forward_batch_size() {
        let model = TinyCamModel::random(32, 6, 3);
        let x = random_images(33, 4, 8);
        let unbatched = score_cam(&model, &x, &Target::AllClasses, 1).unwrap();
        // 24 masked images: batches that divide it, that do not, and one for all.
        for batch in [2, 5, 24, 1000] {
            let batched = score_cam(&model, &x, &Target::AllClasses, batch).unwrap();
            assert_close(
                &values(&batched.maps),
                &values(&unbatched.maps),
                1e-12,
                &format!("batch {batch}"),
            );
        }
    }

    #[test]
    fn constant_channels_get_no_masked_forward() {
        // Four random images (some channels dead under the ReLU) and a black one
        // (every channel constant): one masked forward per varying channel, not 25;
        // the weights those of the one-channel-at-a-time loops.
        let model = Counting::new(TinyCamModel::random(30, 5, 4));
        let x = images_with_a_black_one();
        let (features, _) = model.features_and_logits(&x).unwrap();
        let f = values(&features);
        let varying = f
            .chunks(16)
            .filter(|c| c.iter().any(|&v| v != c[0]))
            .count();
        assert!(varying > 0 && varying < 20, "{varying} varying channels");
        let weights = score_cam_weights(&model, &x, &features, &MapClasses::All(4), 3).unwrap();
        assert_eq!(model.images(), varying);
        let expected: Vec<f64> = weights_one_channel_at_a_time(&model.model, &x)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        assert_close(&values(&weights), &expected, 1e-12, "weights");
        // Every channel constant: no forward at all, every weight 0.
        let black = x.narrow(0, 4, 1).unwrap();
        let (features, _) = model.features_and_logits(&black).unwrap();
        let before = model.images();
        for classes in [MapClasses::All(4), MapClasses::PerImage(vec![2])] {
            let weights = score_cam_weights(&model, &black, &features, &classes, 3).unwrap();
            let t = if matches!(classes, MapClasses::All(_)) {
                4
            } else {
                1
            };
            assert_eq!(weights.dims(), &[1, t, 5]);
            assert!(values(&weights).iter().all(|&v| v == 0.0));
        }
        assert_eq!(model.images(), before);
    }

    #[test]
    fn score_cam_batch_of_n_is_n_batches_of_one() {
        let model = TinyCamModel::random(34, 5, 4);
        let x = images_with_a_black_one();
        let method = ScoreCam {
            model: &model,
            batch: 3,
        };
        for target in [
            Target::Predicted,
            Target::AllClasses,
            Target::Class(1),
            Target::PerImage(vec![1, 3, 0, 2, 2]),
        ] {
            assert_batch_of_n_is_n_batches_of_one(&method, &x, &target, 1e-12);
        }
    }

    #[test]
    fn score_cam_per_image_target_picks_each_class() {
        let model = TinyCamModel::random(35, 4, 5);
        let x = random_images(36, 6, 8);
        let method = ScoreCam::new(&model);
        assert_per_image_target_picks_each_class(&method, &x, 1e-12);
        assert_eq!(method.name(), "score-cam");
        assert_eq!(method.resolution(), Resolution::Features);
    }

    #[test]
    fn score_cam_refuses_a_zero_batch() {
        let model = TinyCamModel::random(37, 2, 2);
        let x = random_images(38, 1, 4);
        assert!(matches!(
            score_cam(&model, &x, &Target::Predicted, 0),
            Err(CamError::InvalidArgument(_))
        ));
    }
}
