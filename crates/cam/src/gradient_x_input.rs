//! Gradient x input (Shrikumar et al., "Not Just a Black Box", 2016; listed beside
//! saliency in ALGORITHMS.md section 11): `x ⊙ d logit_c / d x`, signed, one backward
//! pass (one per class for [`Target::AllClasses`]). Captum's `InputXGradient`. For a
//! linear model it is each pixel's exact contribution `w_p x_p` to the logit; it is
//! Integrated Gradients with a black baseline when the logit is linear along the path.

use candle_core::Tensor;
use models::Classifier;

use crate::activation_maps::ActivationMaps;
use crate::error::Result;
use crate::explainer::{Explainer, Resolution};
use crate::saliency::logit_gradient;
use crate::target::Target;

/// Gradient x input behind [`Explainer`], for any [`Classifier`]: signed maps at the
/// input's resolution (`N x 28 x 28`, or `N x num_classes x 28 x 28`).
#[derive(Debug, Clone, Copy)]
pub struct GradientTimesInput<'a, M: ?Sized> {
    /// The explained model.
    pub model: &'a M,
}

impl<'a, M: ?Sized> GradientTimesInput<'a, M> {
    /// Gradient x input of `model`'s logits.
    pub fn new(model: &'a M) -> Self {
        Self { model }
    }
}

impl<M: Classifier + ?Sized> Explainer for GradientTimesInput<'_, M> {
    fn name(&self) -> &'static str {
        "gradient-x-input"
    }

    fn resolution(&self) -> Resolution {
        Resolution::Input
    }

    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps> {
        let (gradient, classes, logits) = logit_gradient(self.model, images, target)?;
        // N x T x h x w times the images N x 1 x h x w.
        let maps = gradient.broadcast_mul(&images.to_dtype(gradient.dtype())?)?;
        ActivationMaps::from_4d(maps, classes, logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_helpers::{
        assert_batch_of_n_is_n_batches_of_one, finite_difference_gradient, values, LinearModel,
    };
    use crate::test_model::{random_images, TinyCamModel};

    #[test]
    fn gradient_x_input_is_the_input_times_the_finite_difference_gradient() {
        let model = TinyCamModel::random(8, 4, 3);
        let x = random_images(4, 2, 8);
        let maps = GradientTimesInput::new(&model)
            .explain(&x, &Target::PerImage(vec![2, 1]))
            .unwrap();
        for (i, class) in [(0usize, 2usize), (1, 1)] {
            let image = x.get(i).unwrap();
            let fd = finite_difference_gradient(&model, &image, class);
            let got = values(&maps.maps.get(i).unwrap());
            let mut signs = (false, false);
            for ((g, f), p) in got.iter().zip(&fd).zip(values(&image)) {
                assert!((g - p * f).abs() < 1e-7, "{g} vs {p} * {f}");
                signs = (signs.0 || *g < 0.0, signs.1 || *g > 0.0);
            }
            assert_eq!(signs, (true, true), "signed, not a magnitude");
        }
    }

    #[test]
    fn gradient_x_input_of_a_linear_model_is_each_pixels_contribution() {
        let model = LinearModel::random(3, 4, 5, 5);
        let x = random_images(2, 2, 5);
        let maps = GradientTimesInput::new(&model)
            .explain(&x, &Target::AllClasses)
            .unwrap();
        let w = model.weight_rows();
        for i in 0..2 {
            let p = values(&x.get(i).unwrap());
            for (c, row) in w.iter().enumerate() {
                let expected: Vec<f64> = row.iter().zip(&p).map(|(w, p)| w * p).collect();
                assert_eq!(values(&maps.maps.get(i).unwrap().get(c).unwrap()), expected);
            }
        }
    }

    #[test]
    fn gradient_x_input_of_a_batch_of_n_equals_n_batches_of_one() {
        let model = TinyCamModel::random(6, 3, 4);
        let x = random_images(10, 4, 8);
        assert_batch_of_n_is_n_batches_of_one(&GradientTimesInput::new(&model), &x, &[3, 0, 2, 2]);
    }
}
