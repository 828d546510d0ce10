//! Explanation methods for any model of the `models` crate, behind one [`Explainer`]
//! trait: the CAM family at the feature grid, gradient and perturbation methods at the
//! input's, with named conventions, upsampling and PNG overlays.
//!
//! The shape follows pytorch-grad-cam: one base ([`weighted_feature_sum`]) computes a
//! map as a weighted sum of feature channels, and each method only chooses the weights:
//!
//! - [`class_activation_map`] (any [`models::CamModel`]): the head's row,
//!   `CAM_c(i, j) = sum_k W[c, k] F_k(i, j)`;
//! - [`grad_cam`] (any [`models::FeatureClassifier`]): spatial means of the gradient of
//!   the class logit with respect to the features (candle autograd);
//! - [`grad_cam_plus_plus`] (any [`models::FeatureClassifier`]): Grad-CAM++, sums of
//!   the positive gradients weighted by pytorch-grad-cam's closed-form `alpha`;
//! - [`hires_cam`] (any [`models::FeatureClassifier`]): HiResCAM, the gradient times
//!   the features element by element (no pooling); CAM / (h w) for a GAP head;
//! - [`score_cam`] (any [`models::FeatureClassifier`]): Score-CAM, gradient-free, the
//!   class probability on the input masked by each upsampled channel, batched;
//! - [`single_channel_ablation_map`]: the study's defective map (the last channel
//!   alone, for class 7), kept as a named ablation.
//!
//! Every method takes a batch and a [`Target`] (a class, the prediction, a class per
//! image, or all classes at once) and returns signed [`ActivationMaps`]. Conventions
//! are applied afterwards and by name: [`Upsampling`] (bilinear as OpenCV, or nearest
//! by integer factors) and [`MapScaling`] (raw, ReLU, min-max as the official CAM code,
//! ReLU + min-max as pytorch-grad-cam). Degenerate maps (constant, or nothing positive
//! under ReLU) are reported per map as a [`MapStatus`], never silently zeroed.
//! [`overlay`] and [`frame_strip`] render maps over the grey digit in viridis, with
//! captions in a built-in bitmap font; [`write_png`] writes them atomically.
//!
//! Gradient and perturbation methods explain any [`models::Classifier`] at the input's
//! resolution (28 x 28, the grey channel), behind the same [`Explainer`] trait:
//!
//! - [`Saliency`]: `|d logit_c / d x|` (Simonyan et al., 2014);
//! - [`GradientTimesInput`]: `x ⊙ d logit_c / d x`, signed;
//! - [`IntegratedGradients`]: the gradient integrated along the path from a
//!   [`Baseline`] (Sundararajan et al., 2017), by a [`Quadrature`] rule, with its
//!   completeness gap;
//! - [`SmoothGrad`]: saliency averaged over seeded noisy copies (Smilkov et al., 2017),
//!   the noise of an image drawn from its own pixels' hash and a seed;
//! - [`Occlusion`]: the mean drop of the logit over the windows hiding a pixel (Zeiler
//!   and Fergus, 2014).
//!
//! Their derived inputs (path points, noisy or occluded copies) go through the model in
//! chunks of a `batch` setting; an image's map does not depend on its batch (its
//! position, the batch size, the chunking), given a model without batch statistics, as
//! every model of this workspace.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use cam::{class_activation_map, grad_cam, MapScaling, Target, Upsampling};
//! use models::{init_model, random::uniform, GapCnn};
//! use rand::{rngs::StdRng, SeedableRng};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dev = Device::Cpu;
//! let (model, _) = init_model::<GapCnn>(0, DType::F32, &dev)?;
//! let mut rng = StdRng::seed_from_u64(0);
//! let images = uniform(&mut rng, (2, 1, 28, 28), 0.0, 1.0, DType::F32, &dev)?;
//!
//! // CAM of each image's predicted class, 7 x 7, then 28 x 28 in [0, 1].
//! let cam = class_activation_map(&model, &images, &Target::Predicted)?;
//! assert_eq!(cam.maps.dims(), &[2, 7, 7]);
//! let shown = cam
//!     .upsampled((28, 28), Upsampling::Bilinear)?
//!     .scaled(MapScaling::ReluMinMax)?;
//! assert_eq!(shown.maps.dims(), &[2, 28, 28]);
//! assert_eq!(shown.statuses.len(), 2);
//!
//! // For a GAP + linear head, Grad-CAM = ReLU(CAM) / (h w).
//! let grad = grad_cam(&model, &images, &Target::Predicted)?.scaled(MapScaling::Relu)?;
//! let expected = (cam.scaled(MapScaling::Relu)?.maps / 49.0)?;
//! let gap = (grad.maps - expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
//! assert!(gap < 1e-5);
//! # Ok(()) }
//! ```
//!
//! The library never prints; errors are [`CamError`] values.

#![deny(missing_docs)]

mod activation_maps;
mod baseline;
mod class_activation_map;
mod colormap;
mod error;
mod explainer;
mod feature_gradients;
mod font;
mod grad_cam;
mod grad_cam_plus_plus;
mod gradient_x_input;
mod hires_cam;
mod input_gradient;
mod integrated_gradients;
mod map_status;
mod methods;
mod occlusion;
mod overlay;
mod quadrature;
mod saliency;
mod scaling;
mod score_cam;
mod single_channel_ablation;
mod smoothgrad;
mod target;
mod upsampling;

#[cfg(test)]
mod method_checks;
#[cfg(test)]
mod test_helpers;
#[cfg(test)]
mod test_model;

pub use activation_maps::{weighted_feature_sum, ActivationMaps};
pub use baseline::Baseline;
pub use class_activation_map::class_activation_map;
pub use colormap::Colormap;
pub use error::{CamError, Result};
pub use explainer::{Cam, Explainer, GradCam, Resolution};
pub use font::{draw_text, text_width, GLYPH_HEIGHT, GLYPH_WIDTH};
pub use grad_cam::grad_cam;
pub use grad_cam_plus_plus::{grad_cam_plus_plus, GradCamPlusPlus};
pub use gradient_x_input::GradientTimesInput;
pub use hires_cam::{hires_cam, HiResCam};
pub use integrated_gradients::IntegratedGradients;
pub use map_status::MapStatus;
pub use methods::{
    cam_model_methods, classifier_methods, feature_classifier_methods, METHOD_NAMES,
};
pub use occlusion::Occlusion;
pub use overlay::{encode_png, frame_strip, overlay, write_png, Frame, OverlayStyle};
pub use quadrature::Quadrature;
pub use saliency::Saliency;
pub use scaling::{scale_maps, MapScaling, ScaledMaps};
pub use score_cam::{score_cam, score_cam_weights, ScoreCam};
pub use single_channel_ablation::{single_channel_ablation_map, SingleChannelAblation};
pub use smoothgrad::SmoothGrad;
pub use target::{MapClasses, Target};
pub use upsampling::{resize_matrix, upsample, Upsampling};
