//! Occlusion (Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks",
//! ECCV 2014): slide a window over the image, set the pixels under it to a baseline, and
//! record how much the class logit drops. As Captum's `Occlusion`, a pixel's attribution
//! is the mean drop over the windows that cover it:
//!
//! `A_c(x)_p = mean_{windows W containing p} (logit_c(x) - logit_c(x with W set to b))`.
//!
//! Windows start at 0 and step by `stride` until the image is covered: along an axis of
//! size `D`, `ceil((D - window) / stride) + 1` windows, the last one cut at the border
//! when the stride does not divide `D - window` (Captum's rule). A stride larger than
//! the window would leave pixels uncovered and is an error, as in Captum.
//!
//! Defaults (ALGORITHMS.md section 11): a 4 x 4 window, stride 2, baseline 0 (black;
//! Captum's default baseline too; Zeiler and Fergus used a grey square on natural
//! images); 13 x 13 = 169 windows on a 28 x 28 image. Gradient-free: the `N x windows`
//! occluded copies go through the model `batch` at a time (forward passes only), and
//! every class's map comes from the same passes, so [`Target::AllClasses`] costs nothing
//! more. A window whose pixels all equal the baseline already (a digit's black border
//! under the black baseline) leaves the image as it is: its drop is exactly 0 and it is
//! not sent through the model (on MNIST about half the windows of a clean digit).
//! Drops are summed in f64 in window order, so an image's map does not depend on its
//! batch.

use candle_core::Tensor;
use models::Classifier;

use crate::activation_maps::ActivationMaps;
use crate::baseline::Baseline;
use crate::error::{CamError, Result};
use crate::explainer::{Explainer, Resolution};
use crate::input_gradient::{
    for_each_row, grey_batch, maps_from_values, select_images, values_f64, DEFAULT_BATCH,
};
use crate::target::Target;

/// Occlusion behind [`Explainer`], for any [`Classifier`]: signed maps at the input's
/// resolution (`N x 28 x 28`, or `N x num_classes x 28 x 28`); positive where hiding
/// the pixels lowers the logit.
#[derive(Debug, Clone)]
pub struct Occlusion<'a, M: ?Sized> {
    /// The explained model.
    pub model: &'a M,
    /// Window height and width (default 4 x 4).
    pub window: (usize, usize),
    /// Steps between window positions, down and across (default 2, 2).
    pub stride: (usize, usize),
    /// What occluded pixels are set to (default black, `Baseline::Value(0.0)`).
    pub baseline: Baseline,
    /// Occluded copies per forward pass (default 256).
    pub batch: usize,
}

impl<'a, M: ?Sized> Occlusion<'a, M> {
    /// Occlusion of `model`'s logits with the defaults above.
    pub fn new(model: &'a M) -> Self {
        Self {
            model,
            window: (4, 4),
            stride: (2, 2),
            baseline: Baseline::default(),
            batch: DEFAULT_BATCH,
        }
    }
}

/// The windows along one axis of `size` pixels, as `start..end` ranges.
fn windows(size: usize, window: usize, stride: usize) -> Result<Vec<std::ops::Range<usize>>> {
    if window == 0 || window > size || stride == 0 || (window < size && stride > window) {
        return Err(CamError::InvalidArgument(format!(
            "an occlusion window of {window} with stride {stride} over {size} pixels \
             (need 1 <= window <= size, 1 <= stride <= window)"
        )));
    }
    let count = (size - window).div_ceil(stride) + 1;
    Ok((0..count)
        .map(|k| k * stride..(k * stride + window).min(size))
        .collect())
}

impl<M: Classifier + ?Sized> Explainer for Occlusion<'_, M> {
    fn name(&self) -> &'static str {
        "occlusion"
    }

    fn resolution(&self) -> Resolution {
        Resolution::Input
    }

    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps> {
        let (n, h, w) = grey_batch(images)?;
        let down = windows(h, self.window.0, self.stride.0)?;
        let across = windows(w, self.window.1, self.stride.1)?;
        // Every window as the row-major pixel indices it hides.
        let hidden: Vec<Vec<usize>> = down
            .iter()
            .flat_map(|r| {
                across.iter().map(move |c| {
                    r.clone()
                        .flat_map(|i| c.clone().map(move |j| i * w + j))
                        .collect()
                })
            })
            .collect();
        let mut covering = vec![0usize; h * w];
        for &p in hidden.iter().flatten() {
            covering[p] += 1;
        }
        let positions = hidden.len();
        let logits = self.model.logits(images)?.detach();
        let classes = target.resolve(&logits)?;
        let clean = values_f64(&logits)?;
        let k = logits.dim(1)?;
        let base = self.baseline.for_batch(images)?;
        let t = classes.maps_per_image();
        let mut sums = vec![0.0; n * t * h * w];
        // The (image, window) rows that change their image: `i * positions + window`.
        let (pixels, baseline) = (values_f64(images)?, values_f64(&base)?);
        let live: Vec<usize> = (0..n * positions)
            .filter(|&r| {
                let at = (r / positions) * h * w;
                hidden[r % positions]
                    .iter()
                    .any(|&p| pixels[at + p] != baseline[at + p])
            })
            .collect();
        for_each_row(
            self.model,
            live.len(),
            self.batch,
            None,
            |rows| {
                let idx: Vec<usize> = rows.clone().map(|q| live[q] / positions).collect();
                let mut mask = vec![0u8; idx.len() * h * w];
                for (j, q) in rows.enumerate() {
                    for &p in &hidden[live[q] % positions] {
                        mask[j * h * w + p] = 1;
                    }
                }
                let mask = Tensor::from_vec(mask, (idx.len(), 1, h, w), images.device())?;
                let occluded =
                    mask.where_cond(&select_images(&base, &idx)?, &select_images(images, &idx)?)?;
                Ok(occluded)
            },
            |q, occluded_logits, _| {
                let row = live[q];
                let (i, window) = (row / positions, &hidden[row % positions]);
                for (slot, class) in classes.classes_of(i).into_iter().enumerate() {
                    let drop = clean[i * k + class] - occluded_logits[class];
                    let map = &mut sums[(i * t + slot) * h * w..(i * t + slot + 1) * h * w];
                    for &p in window {
                        map[p] += drop;
                    }
                }
            },
        )?;
        for map in sums.chunks_mut((h * w).max(1)) {
            for (v, &c) in map.iter_mut().zip(&covering) {
                *v /= c as f64;
            }
        }
        maps_from_values(sums, (n, h, w), images, classes, logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_helpers::{
        assert_batch_of_n_is_n_batches_of_one, values, Counting, LinearModel,
    };
    use crate::test_model::{random_images, TinyCamModel};

    #[test]
    fn single_pixel_occlusion_of_a_linear_model_is_the_weight_times_the_difference() {
        let model = LinearModel::random(4, 3, 6, 6);
        let x = random_images(1, 2, 6);
        let occlusion = Occlusion {
            window: (1, 1),
            stride: (1, 1),
            baseline: Baseline::Value(0.25),
            batch: 10,
            ..Occlusion::new(&model)
        };
        let maps = occlusion.explain(&x, &Target::AllClasses).unwrap();
        for i in 0..2 {
            let p = values(&x.get(i).unwrap());
            for (c, row) in model.weight_rows().iter().enumerate() {
                let got = values(&maps.maps.get(i).unwrap().get(c).unwrap());
                for (j, g) in got.iter().enumerate() {
                    let expected = row[j] * (p[j] - 0.25);
                    assert!((g - expected).abs() < 1e-14, "{g} vs {expected}");
                }
            }
        }
    }

    #[test]
    fn larger_windows_give_the_mean_drop_over_the_covering_windows() {
        // An 8 x 8 image, windows 3 high and 2 wide, strides 2 and 1: rows start at
        // 0, 2, 4, 6 (the last cut to 6..8), columns at 0..=6.
        let model = LinearModel::random(6, 2, 8, 8);
        let x = random_images(2, 1, 8);
        let p = values(&x);
        let occlusion = Occlusion {
            window: (3, 2),
            stride: (2, 1),
            ..Occlusion::new(&model)
        };
        let maps = occlusion.explain(&x, &Target::Class(1)).unwrap();
        let w = &model.weight_rows()[1];
        let mut sum = [0.0; 64];
        let mut count = [0.0; 64];
        for r0 in [0usize, 2, 4, 6] {
            for c0 in 0..=6usize {
                let cells: Vec<usize> = (r0..(r0 + 3).min(8))
                    .flat_map(|r| (c0..c0 + 2).map(move |c| r * 8 + c))
                    .collect();
                // Setting the window to 0 removes sum w x over it from the logit.
                let drop: f64 = cells.iter().map(|&q| w[q] * p[q]).sum();
                for &q in &cells {
                    sum[q] += drop;
                    count[q] += 1.0;
                }
            }
        }
        for (q, g) in values(&maps.maps).iter().enumerate() {
            let expected = sum[q] / count[q];
            assert!((g - expected).abs() < 1e-13, "pixel {q}: {g} vs {expected}");
        }
    }

    #[test]
    fn windows_already_at_the_baseline_are_skipped_and_drop_exactly_0() {
        // 8 x 8 images, 2 x 2 windows at stride 2 (16 windows): the first image black
        // but for pixel (5, 6), the second black on its top half only.
        let model = Counting::new(LinearModel::random(7, 3, 8, 8));
        let mut p = vec![0.0f64; 2 * 64];
        p[5 * 8 + 6] = 0.7;
        let noise = values(&random_images(1, 1, 8));
        p[64 + 32..].copy_from_slice(&noise[32..]);
        let x = Tensor::from_vec(p.clone(), (2, 1, 8, 8), &candle_core::Device::Cpu).unwrap();
        let occlusion = Occlusion {
            window: (2, 2),
            stride: (2, 2),
            ..Occlusion::new(&model)
        };
        let maps = occlusion.explain(&x, &Target::Class(2)).unwrap();
        // The clean pass (2 images), then one window of the first image and the 8 of
        // the second image's lower half.
        assert_eq!(model.images(), 2 + 1 + 8);
        // Each pixel's map is its window's drop, w . x over the window: 0 where the
        // window is black.
        let w = &model.model.weight_rows()[2];
        let got = values(&maps.maps);
        for i in 0..2 {
            for q in 0..64 {
                let (r0, c0) = (q / 8 / 2 * 2, q % 8 / 2 * 2);
                let drop: f64 = [0, 1, 8, 9]
                    .iter()
                    .map(|d| r0 * 8 + c0 + d)
                    .map(|j| w[j] * p[i * 64 + j])
                    .sum();
                let g = got[i * 64 + q];
                assert!(
                    (g - drop).abs() < 1e-13,
                    "image {i} pixel {q}: {g} vs {drop}"
                );
                if drop == 0.0 {
                    assert_eq!(g, 0.0, "image {i} pixel {q}");
                }
            }
        }
    }

    #[test]
    fn occlusion_of_a_batch_of_n_equals_n_batches_of_one() {
        let model = TinyCamModel::random(4, 3, 4);
        let x = random_images(6, 4, 8);
        let occlusion = Occlusion {
            batch: 11,
            ..Occlusion::new(&model)
        };
        assert_batch_of_n_is_n_batches_of_one(&occlusion, &x, &[2, 2, 0, 1]);
    }

    #[test]
    fn the_default_windows_cover_a_digit_in_169_positions() {
        let rows = windows(28, 4, 2).unwrap();
        assert_eq!(rows.len(), 13);
        assert_eq!(rows.last(), Some(&(24..28)));
        assert_eq!(windows(8, 3, 2).unwrap().last(), Some(&(6..8)));
        assert_eq!(windows(5, 5, 9).unwrap(), vec![0..5]);
    }

    #[test]
    fn a_window_too_large_or_a_stride_past_the_window_is_an_error() {
        for (size, window, stride) in [(8, 9, 1), (8, 3, 4), (8, 0, 1), (8, 2, 0)] {
            assert!(matches!(
                windows(size, window, stride),
                Err(CamError::InvalidArgument(_))
            ));
        }
    }
}
