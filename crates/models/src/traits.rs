//! What attacks, maps and metrics see of a model: nothing architecture-specific.

use candle_core::{Result, Tensor};

/// A classifier of `N x 1 x 28 x 28` images in [0, 1] into [`Classifier::num_classes`]
/// classes, differentiable with respect to its input (make the input a `Var`, or the
/// result of ops on one, and call `backward` on anything computed from the logits).
pub trait Classifier {
    /// Logits, `N x num_classes`.
    fn logits(&self, images: &Tensor) -> Result<Tensor>;

    /// Number of classes (10 for MNIST).
    fn num_classes(&self) -> usize {
        10
    }

    /// Arg-max class per image.
    fn predict(&self, images: &Tensor) -> Result<Vec<u32>> {
        self.logits(images)?.argmax(1)?.to_vec1()
    }
}

/// A classifier whose logits are computed from a last map of features, so Grad-CAM can
/// differentiate the logits with respect to those features.
pub trait FeatureClassifier: Classifier {
    /// The features (`N x K x h x w`) and the logits computed from them.
    fn features_and_logits(&self, images: &Tensor) -> Result<(Tensor, Tensor)>;

    /// The logits as a function of given features (the head alone).
    fn logits_from_features(&self, features: &Tensor) -> Result<Tensor>;
}

/// A classifier ending in global average pooling and one linear layer:
/// `logit_c = sum_k W[c,k] * mean(F_k) + b_c`. CAM needs exactly this, and no hooks.
pub trait CamModel: FeatureClassifier {
    /// The linear head: weight `num_classes x K` and bias `num_classes`.
    fn head(&self) -> (&Tensor, &Tensor);
}
