//! What the gradient methods of the CAM family share (pytorch-grad-cam's base): the
//! features of a batch, its logits, the resolved classes and the gradient of each
//! explained logit with respect to the features. Grad-CAM, Grad-CAM++ and HiResCAM
//! differ only in what they make of these.

use candle_core::{Tensor, Var};
use models::FeatureClassifier;

use crate::error::{CamError, Result};
use crate::target::{MapClasses, Target};

/// Features, logits, classes and gradients of one batch.
#[derive(Debug, Clone)]
pub(crate) struct FeatureGradients {
    /// `N x K x h x w`, detached from any graph.
    pub features: Tensor,
    /// `N x num_classes`, on the clean batch.
    pub logits: Tensor,
    /// The explained class(es) of every image.
    pub classes: MapClasses,
    /// `N x T x K x h x w`: `d logit_{class of map t} / d F` for every image and map.
    pub grads: Tensor,
}

/// `features` as `N x K x h x w`, or a shape error naming what came.
pub(crate) fn feature_dims(features: &Tensor) -> Result<(usize, usize, usize, usize)> {
    features.dims4().map_err(|_| {
        CamError::Shape(format!(
            "features must be N x K x h x w, got {:?}",
            features.dims()
        ))
    })
}

/// Gradients of the explained logits with respect to the features.
///
/// The selected logits of the whole batch are summed before differentiating, so every
/// image gets its own gradient as long as the head treats images independently (no
/// batch statistics), which holds for every model of this workspace. One backward pass
/// per map slot: one for a class per image, `num_classes` for [`Target::AllClasses`].
pub(crate) fn feature_gradients<M: FeatureClassifier + ?Sized>(
    model: &M,
    images: &Tensor,
    target: &Target,
) -> Result<FeatureGradients> {
    let (features, logits) = model.features_and_logits(images)?;
    let features = features.detach();
    let (n, _, _, _) = feature_dims(&features)?;
    let classes = target.resolve(&logits)?;
    // The features become the leaf of a fresh graph: only the head is differentiated.
    let leaf = Var::from_tensor(&features)?;
    let head_logits = model.logits_from_features(leaf.as_tensor())?;
    let selected: Vec<Tensor> = match &classes {
        MapClasses::PerImage(cls) => {
            let idx: Vec<u32> = cls.iter().map(|&c| c as u32).collect();
            let idx = Tensor::from_vec(idx, (n, 1), features.device())?;
            vec![head_logits.gather(&idx, 1)?.sum_all()?]
        }
        MapClasses::All(c) => (0..*c)
            .map(|class| head_logits.narrow(1, class, 1)?.sum_all())
            .collect::<candle_core::Result<_>>()?,
    };
    let mut grads = Vec::with_capacity(selected.len());
    for objective in selected {
        let all = objective.backward()?;
        grads.push(match all.get(leaf.as_tensor()) {
            Some(g) => g.clone(),
            // The head ignores the features: the gradient is zero.
            None => features.zeros_like()?,
        });
    }
    Ok(FeatureGradients {
        grads: Tensor::stack(&grads, 1)?,
        features,
        classes,
        logits,
    })
}
