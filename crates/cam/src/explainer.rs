//! One interface for every explanation method: a batch and a [`Target`] in, signed
//! [`ActivationMaps`] out, at the method's native resolution ([`Resolution`]): the last
//! feature map's `h x w` for the CAM family, the input's `28 x 28` for gradient and
//! perturbation methods. The conventions stay the caller's, by name, as for CAM:
//! [`ActivationMaps::upsampled`] to the input size and [`ActivationMaps::scaled`]
//! (ReLU, min-max) afterwards; a method never rescales its own output.
//!
//! An explainer holds its model (and its settings: steps, noise, window), so a list of
//! methods over one model is a `Vec<Box<dyn Explainer + '_>>`.

use candle_core::Tensor;

use crate::activation_maps::ActivationMaps;
use crate::class_activation_map::class_activation_map;
use crate::error::Result;
use crate::grad_cam::grad_cam;
use crate::target::Target;

/// Where a method's maps live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The last feature map's grid (`h x w`, 7 x 7 for GapCnn): upsample to compare with
    /// the input.
    Features,
    /// The input's grid (28 x 28).
    Input,
}

/// An explanation method over one model.
pub trait Explainer {
    /// The method's name as the report, the CLI and `summary.json` spell it
    /// (`cam`, `grad-cam`, `integrated-gradients`, ...).
    fn name(&self) -> &'static str;

    /// Where its maps live.
    fn resolution(&self) -> Resolution;

    /// Signed maps of `images` (`N x 1 x 28 x 28`) for `target`: `N x h x w`, or
    /// `N x num_classes x h x w` for [`Target::AllClasses`], with the classes explained
    /// and the model's logits on the clean batch.
    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps>;
}

/// CAM (Zhou et al., 2016) behind [`Explainer`]: [`class_activation_map`].
#[derive(Debug, Clone, Copy)]
pub struct Cam<'a, M: ?Sized> {
    /// The explained model (GAP + linear head).
    pub model: &'a M,
}

impl<M: models::CamModel + ?Sized> Explainer for Cam<'_, M> {
    fn name(&self) -> &'static str {
        "cam"
    }
    fn resolution(&self) -> Resolution {
        Resolution::Features
    }
    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps> {
        class_activation_map(self.model, images, target)
    }
}

/// Grad-CAM (Selvaraju et al., 2017) behind [`Explainer`]: [`grad_cam`], for any
/// [`models::FeatureClassifier`].
#[derive(Debug, Clone, Copy)]
pub struct GradCam<'a, M: ?Sized> {
    /// The explained model.
    pub model: &'a M,
}

impl<M: models::FeatureClassifier + ?Sized> Explainer for GradCam<'_, M> {
    fn name(&self) -> &'static str {
        "grad-cam"
    }
    fn resolution(&self) -> Resolution {
        Resolution::Features
    }
    fn explain(&self, images: &Tensor, target: &Target) -> Result<ActivationMaps> {
        grad_cam(self.model, images, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_model::{random_images, TinyCamModel};

    #[test]
    fn cam_and_grad_cam_behind_the_trait_are_the_functions() {
        let model = TinyCamModel::random(3, 4, 5);
        let images = random_images(4, 2, 8);
        let methods: Vec<Box<dyn Explainer + '_>> = vec![
            Box::new(Cam { model: &model }),
            Box::new(GradCam { model: &model }),
        ];
        let direct = [
            class_activation_map(&model, &images, &Target::Predicted).unwrap(),
            grad_cam(&model, &images, &Target::Predicted).unwrap(),
        ];
        for (m, d) in methods.iter().zip(&direct) {
            let e = m.explain(&images, &Target::Predicted).unwrap();
            assert_eq!(m.resolution(), Resolution::Features);
            let gap = (e.maps - &d.maps)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(gap, 0.0, "{}", m.name());
        }
        assert_eq!(methods[0].name(), "cam");
        assert_eq!(methods[1].name(), "grad-cam");
    }
}
