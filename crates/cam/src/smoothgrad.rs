//! SmoothGrad (Smilkov, Thorat, Kim, Viégas and Wattenberg, "SmoothGrad: removing noise
//! by adding noise", 2017): the mean of a gradient map over `n` copies of the image with
//! Gaussian noise `N(0, sigma^2)` added,
//!
//! `M_c(x) = 1/n sum_i |d logit_c(x + eps_i) / d x|`, `eps_i ~ N(0, sigma^2 I)`.
//!
//! Defaults (ALGORITHMS.md section 11): `n = 50` (the paper sees little change beyond
//! 50 samples) and a noise level `sigma / (x_max - x_min) = 0.15` (the paper finds
//! 10-20 % best; PAIR's `saliency` library defaults to 0.15 of each image's own
//! `max - min`), taken of the models' nominal [0, 1] input range, so `sigma = 0.15`
//! whatever an image's contrast. Noisy copies are not clipped to [0, 1] (neither the paper
//! nor Captum clips). What is averaged is saliency, the magnitude of the gradient, as
//! Captum's `NoiseTunnel(Saliency(model))` does with its defaults (`nt_type="smoothgrad"`,
//! `abs=True`); `absolute: false` averages the signed gradient instead (the paper's
//! equation 3 over the raw gradient). Captum's own defaults, 5 samples of standard
//! deviation 1, are not the paper's and are not used.
//!
//! Seeding: the noise of sample `i` of an image is drawn from a `StdRng` seeded with a
//! mix (splitmix64) of the `seed` setting, `i`, and a hash (64-bit FNV-1a) of the image's
//! own pixel values as f64 little-endian bytes. An image therefore gets the same noise
//! alone, anywhere in a batch of any size and in any chunking, and f32 and f64 copies of
//! the same image get the same noise; identical images get identical noise. The mean is
//! a running mean in f64 in sample order, so with `sigma = 0` SmoothGrad is saliency
//! exactly.

use candle_core::{DType, Tensor};
use common::seed::{fnv1a, splitmix64};
use models::{random::normal, Classifier};
use rand::{rngs::StdRng, SeedableRng};

use crate::activation_maps::ActivationMaps;
use crate::error::{CamError, Result};
use crate::explainer::{Explainer, Resolution};
use crate::input_gradient::{
    for_each_row, grey_batch, maps_from_values, positive, select_images, values_f64, DEFAULT_BATCH,
};
use crate::target::Target;

/// The width of the input range the noise level is a fraction of: [0, 1].
const INPUT_RANGE: f64 = 1.0;

/// SmoothGrad behind [`Explainer`], for any [`Classifier`]: maps at the input's
/// resolution (`N x 28 x 28`, or `N x num_classes x 28 x 28`), non-negative with
/// `absolute` (the default), signed without.
#[derive(Debug, Clone, Copy)]
pub struct SmoothGrad<'a, M: ?Sized> {
    /// The explained model.
    pub model: &'a M,
    /// Noisy copies per image (default 50).
    pub samples: usize,
    /// The noise's standard deviation as a fraction of the [0, 1] input range
    /// (default 0.15).
    pub noise_level: f64,
    /// Average `|gradient|` (saliency; default) rather than the signed gradient.
    pub absolute: bool,
    /// Mixed with each image's pixel hash into the seed of its noise (default 0).
    pub seed: u64,
    /// Noisy copies per forward and backward pass (default 256).
    pub batch: usize,
}

impl<'a, M: ?Sized> SmoothGrad<'a, M> {
    /// SmoothGrad of `model`'s logits with the defaults above.
    pub fn new(model: &'a M) -> Self {
        Self {
            model,
            samples: 50,
            noise_level: 0.15,
            absolute: true,
            seed: 0,
            batch: DEFAULT_BATCH,
        }
    }
}

/// 64-bit FNV-1a of the pixel values as f64 little-endian bytes.
fn image_hash(pixels: &[f64]) -> u64 {
    fnv1a(pixels.iter().flat_map(|p| p.to_le_bytes()))
}

/// The seed of the noise of sample `sample` of an image whose pixels hash to `hash`.
fn noise_seed(seed: u64, hash: u64, sample: usize) -> u64 {
    splitmix64(splitmix64(seed ^ splitmix64(hash)).wrapping_add(sample as u64))
}

impl<M: Classifier + ?Sized> Explainer for SmoothGrad<'_, M> {
    fn name(&self) -> &'static str {
        "smoothgrad"
    }

    fn resolution(&self) -> Resolution {
        Resolution::Input
    }

    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps> {
        let (n, h, w) = grey_batch(images)?;
        let samples = positive("samples", self.samples)?;
        if !(self.noise_level.is_finite() && self.noise_level >= 0.0) {
            return Err(CamError::InvalidArgument(format!(
                "the noise level must be finite and non-negative, got {}",
                self.noise_level
            )));
        }
        let sigma = self.noise_level * INPUT_RANGE;
        let logits = self.model.logits(images)?.detach();
        let classes = target.resolve(&logits)?;
        let hw = h * w;
        let hashes: Vec<u64> = values_f64(images)?
            .chunks(hw.max(1))
            .map(image_hash)
            .collect();
        let per_image = classes.maps_per_image() * hw;
        let mut means = vec![0.0; n * per_image];
        let image_of = |row: usize| row / samples;
        for_each_row(
            self.model,
            n * samples,
            self.batch,
            Some((&classes, &image_of)),
            |rows| {
                let idx: Vec<usize> = rows.clone().map(image_of).collect();
                let noise = rows
                    .map(|r| {
                        let seed = noise_seed(self.seed, hashes[r / samples], r % samples);
                        let mut rng = StdRng::seed_from_u64(seed);
                        normal(&mut rng, (1, 1, h, w), DType::F64, images.device())
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let noise = (Tensor::cat(&noise, 0)? * sigma)?.to_dtype(images.dtype())?;
                Ok((select_images(images, &idx)? + noise)?)
            },
            |row, _, gradient| {
                let (i, k) = (row / samples, (row % samples) as f64);
                let mean = &mut means[i * per_image..(i + 1) * per_image];
                for (m, g) in mean.iter_mut().zip(gradient) {
                    let v = if self.absolute { g.abs() } else { *g };
                    *m += (v - *m) / (k + 1.0);
                }
            },
        )?;
        maps_from_values(means, (n, h, w), images, classes, logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saliency::Saliency;
    use crate::test_helpers::{assert_batch_of_n_is_n_batches_of_one, values};
    use crate::test_model::{random_images, TinyCamModel};

    #[test]
    fn smoothgrad_with_no_noise_is_saliency_exactly() {
        let model = TinyCamModel::random(7, 4, 5);
        let x = random_images(2, 3, 8);
        let smooth = SmoothGrad {
            noise_level: 0.0,
            samples: 7,
            batch: 5,
            ..SmoothGrad::new(&model)
        };
        for target in [Target::Predicted, Target::AllClasses] {
            let s = smooth.explain(&x, &target).unwrap();
            let expected = Saliency::new(&model).explain(&x, &target).unwrap();
            assert_eq!(values(&s.maps), values(&expected.maps));
        }
    }

    #[test]
    fn smoothgrad_of_an_image_is_the_same_alone_and_inside_a_shuffled_batch() {
        let model = TinyCamModel::random(1, 3, 4);
        let x = random_images(4, 5, 8);
        let smooth = SmoothGrad {
            samples: 6,
            batch: 4,
            ..SmoothGrad::new(&model)
        };
        let order = [3usize, 0, 4, 1, 2];
        let shuffled = Tensor::cat(
            &order
                .iter()
                .map(|&i| x.narrow(0, i, 1).unwrap())
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let in_batch = smooth.explain(&shuffled, &Target::Class(2)).unwrap();
        for (position, &i) in order.iter().enumerate() {
            let alone = smooth
                .explain(&x.narrow(0, i, 1).unwrap(), &Target::Class(2))
                .unwrap();
            assert_eq!(
                values(&alone.maps),
                values(&in_batch.maps.get(position).unwrap())
            );
        }
        // The noise is there: not saliency, and another seed gives another map.
        let saliency = Saliency::new(&model)
            .explain(&shuffled, &Target::Class(2))
            .unwrap();
        assert_ne!(values(&in_batch.maps), values(&saliency.maps));
        let reseeded = SmoothGrad { seed: 1, ..smooth }
            .explain(&shuffled, &Target::Class(2))
            .unwrap();
        assert_ne!(values(&in_batch.maps), values(&reseeded.maps));
    }

    #[test]
    fn smoothgrad_of_a_batch_of_n_equals_n_batches_of_one() {
        let model = TinyCamModel::random(9, 3, 4);
        let x = random_images(3, 4, 8);
        for absolute in [true, false] {
            let smooth = SmoothGrad {
                samples: 5,
                batch: 3,
                absolute,
                ..SmoothGrad::new(&model)
            };
            assert_batch_of_n_is_n_batches_of_one(&smooth, &x, &[0, 3, 1, 1]);
        }
    }

    #[test]
    fn the_noise_seed_depends_on_the_pixels_not_on_their_precision() {
        let a = [0.25, 0.5, 1.0];
        let f32_copy: Vec<f64> = a.iter().map(|&v| f64::from(v as f32)).collect();
        assert_eq!(image_hash(&a), image_hash(&f32_copy));
        assert_ne!(image_hash(&a), image_hash(&[0.25, 0.5, 0.75]));
        assert_ne!(noise_seed(0, 1, 0), noise_seed(0, 1, 1));
        assert_ne!(noise_seed(0, 1, 0), noise_seed(1, 1, 0));
    }

    #[test]
    fn a_negative_noise_level_or_no_samples_is_an_error() {
        let model = TinyCamModel::random(9, 3, 4);
        let x = random_images(3, 1, 8);
        for smooth in [
            SmoothGrad {
                noise_level: -0.1,
                ..SmoothGrad::new(&model)
            },
            SmoothGrad {
                samples: 0,
                ..SmoothGrad::new(&model)
            },
        ] {
            assert!(matches!(
                smooth.explain(&x, &Target::Predicted),
                Err(CamError::InvalidArgument(_))
            ));
        }
    }
}
