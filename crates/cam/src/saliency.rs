//! Saliency (Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional Networks",
//! ICLR workshop 2014): the magnitude of the gradient of the class logit (the score
//! before softmax, as the paper) with respect to each input pixel,
//! `|d logit_c / d x|`, one backward pass (one per class for [`Target::AllClasses`]).
//! Captum's `Saliency` with its default `abs=True`. For the single grey channel the
//! paper's maximum over colour channels is the value itself.

use candle_core::Tensor;
use models::Classifier;

use crate::activation_maps::ActivationMaps;
use crate::error::Result;
use crate::explainer::{Explainer, Resolution};
use crate::input_gradient::{grey_batch, target_gradients, RowClasses};
use crate::target::Target;

/// Saliency behind [`Explainer`], for any [`Classifier`]: non-negative maps at the
/// input's resolution (`N x 28 x 28`, or `N x num_classes x 28 x 28`).
#[derive(Debug, Clone, Copy)]
pub struct Saliency<'a, M: ?Sized> {
    /// The explained model.
    pub model: &'a M,
}

impl<'a, M: ?Sized> Saliency<'a, M> {
    /// Saliency of `model`'s logits.
    pub fn new(model: &'a M) -> Self {
        Self { model }
    }
}

/// The gradient of each image's target logits (`N x T x h x w`), with the logits and the
/// resolved classes: what saliency and gradient x input both start from.
pub(crate) fn logit_gradient<M: Classifier + ?Sized>(
    model: &M,
    images: &Tensor,
    target: &Target,
) -> Result<(Tensor, crate::target::MapClasses, Tensor)> {
    let (n, _, _) = grey_batch(images)?;
    let logits = model.logits(images)?.detach();
    let classes = target.resolve(&logits)?;
    let rows = RowClasses::of_rows(&classes, 0..n, |r| r);
    let (_, gradient) = target_gradients(model, images, &rows)?;
    Ok((gradient, classes, logits))
}

impl<M: Classifier + ?Sized> Explainer for Saliency<'_, M> {
    fn name(&self) -> &'static str {
        "saliency"
    }

    fn resolution(&self) -> Resolution {
        Resolution::Input
    }

    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps> {
        let (gradient, classes, logits) = logit_gradient(self.model, images, target)?;
        ActivationMaps::from_4d(gradient.abs()?, classes, logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CamError;
    use crate::test_helpers::{
        assert_batch_of_n_is_n_batches_of_one, finite_difference_gradient, values,
    };
    use crate::test_model::{random_images, TinyCamModel};

    #[test]
    fn saliency_is_the_magnitude_of_central_finite_differences_of_the_target_logit() {
        let model = TinyCamModel::random(11, 4, 5);
        let x = random_images(3, 3, 8);
        let saliency = Saliency::new(&model);
        let per_image = saliency
            .explain(&x, &Target::PerImage(vec![0, 4, 2]))
            .unwrap();
        let all = saliency.explain(&x, &Target::AllClasses).unwrap();
        assert_eq!(per_image.maps.dims(), &[3, 8, 8]);
        assert_eq!(all.maps.dims(), &[3, 5, 8, 8]);
        for (i, class) in [(0usize, 0usize), (1, 4), (2, 2)] {
            let fd = finite_difference_gradient(&model, &x.get(i).unwrap(), class);
            let got = values(&per_image.maps.get(i).unwrap());
            let got_all = values(&all.maps.get(i).unwrap().get(class).unwrap());
            assert_eq!(got, got_all);
            for (g, f) in got.iter().zip(&fd) {
                assert!((g - f.abs()).abs() < 1e-7, "{g} vs |{f}|");
            }
            assert!(got.iter().any(|&v| v > 0.0));
        }
    }

    #[test]
    fn saliency_of_a_batch_of_n_equals_n_batches_of_one() {
        let model = TinyCamModel::random(2, 3, 4);
        let x = random_images(9, 5, 8);
        assert_batch_of_n_is_n_batches_of_one(&Saliency::new(&model), &x, &[0, 1, 2, 3, 1]);
    }

    #[test]
    fn saliency_of_the_predicted_class_and_a_bad_class() {
        let model = TinyCamModel::random(5, 3, 4);
        let x = random_images(1, 2, 6);
        let s = Saliency::new(&model);
        let predicted = s.explain(&x, &Target::Predicted).unwrap();
        assert_eq!(
            predicted.classes.classes_of(0),
            vec![model.predict(&x).unwrap()[0] as usize]
        );
        assert_eq!(s.resolution(), Resolution::Input);
        assert!(matches!(
            s.explain(&x, &Target::Class(4)),
            Err(CamError::ClassOutOfRange { .. })
        ));
    }
}
