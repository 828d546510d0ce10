//! The explanation methods by name, each with its published defaults, for what a model
//! offers: every method needs a [`Classifier`] (gradient and perturbation methods), the
//! Grad-CAM family a [`FeatureClassifier`] (a last feature map), CAM a [`CamModel`] (a
//! GAP + linear head).

use models::{CamModel, Classifier, FeatureClassifier};

use crate::explainer::{Cam, Explainer, GradCam};
use crate::{
    GradCamPlusPlus, GradientTimesInput, HiResCam, IntegratedGradients, Occlusion, Saliency,
    ScoreCam, SmoothGrad,
};

/// Every method's name, in the order tables list them: the CAM family, then the
/// gradient and perturbation methods.
pub const METHOD_NAMES: [&str; 10] = [
    "cam",
    "grad-cam",
    "grad-cam++",
    "hires-cam",
    "score-cam",
    "saliency",
    "gradient-x-input",
    "integrated-gradients",
    "smoothgrad",
    "occlusion",
];

/// The methods any classifier supports (input resolution), with default settings.
pub fn classifier_methods<M: Classifier + ?Sized>(model: &M) -> Vec<Box<dyn Explainer + '_>> {
    vec![
        Box::new(Saliency::new(model)),
        Box::new(GradientTimesInput::new(model)),
        Box::new(IntegratedGradients::new(model)),
        Box::new(SmoothGrad::new(model)),
        Box::new(Occlusion::new(model)),
    ]
}

/// The Grad-CAM family, then [`classifier_methods`]: everything but CAM.
pub fn feature_classifier_methods<M: FeatureClassifier + ?Sized>(
    model: &M,
) -> Vec<Box<dyn Explainer + '_>> {
    let mut out: Vec<Box<dyn Explainer + '_>> = vec![
        Box::new(GradCam { model }),
        Box::new(GradCamPlusPlus { model }),
        Box::new(HiResCam { model }),
        Box::new(ScoreCam::new(model)),
    ];
    out.extend(classifier_methods(model));
    out
}

/// All ten methods, in the order of [`METHOD_NAMES`].
pub fn cam_model_methods<M: CamModel + ?Sized>(model: &M) -> Vec<Box<dyn Explainer + '_>> {
    let mut out: Vec<Box<dyn Explainer + '_>> = vec![Box::new(Cam { model })];
    out.extend(feature_classifier_methods(model));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_model::TinyCamModel;

    #[test]
    fn the_lists_name_every_method_once_in_table_order() {
        let model = TinyCamModel::random(0, 3, 4);
        let names =
            |v: Vec<Box<dyn Explainer + '_>>| v.iter().map(|m| m.name()).collect::<Vec<_>>();
        assert_eq!(names(cam_model_methods(&model)), METHOD_NAMES);
        assert_eq!(names(feature_classifier_methods(&model)), METHOD_NAMES[1..]);
        assert_eq!(names(classifier_methods(&model)), METHOD_NAMES[5..]);
    }
}
