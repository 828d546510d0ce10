//! What counts as a success ([`Targeting`]), and the checked batch every attack starts
//! from: the input checks that every attack does once before it starts, and the clean
//! logits.

use candle_core::{DType, Tensor};
use models::Classifier;

use crate::error::{invalid, Result};

/// What counts as a success.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Targeting {
    /// Any class but the true label (for examples the model got right to begin with).
    #[default]
    Untargeted,
    /// The given class, one per example; a target may not equal the example's label.
    Targeted(Vec<u32>),
}

/// A checked batch: images in the box, labels and targets that fit, and the clean logits.
#[derive(Debug)]
pub(crate) struct Batch {
    pub images: Tensor,
    pub labels: Vec<u32>,
    pub targets: Option<Vec<u32>>,
    pub logits: Tensor,
    pub clean_predictions: Vec<u32>,
}

impl Batch {
    /// Checks everything an attack relies on and evaluates the clean logits.
    pub fn new(
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
    ) -> Result<Self> {
        if images.rank() < 2 {
            return Err(invalid(format!(
                "images must be a batch (rank >= 2), got shape {:?}",
                images.dims()
            )));
        }
        if !images.dtype().is_float() {
            return Err(invalid(format!(
                "images must be floating point, got {:?}",
                images.dtype()
            )));
        }
        let n = images.dim(0)?;
        if n == 0 {
            return Err(invalid("empty batch"));
        }
        if labels.len() != n {
            return Err(invalid(format!(
                "{} labels for a batch of {n} images",
                labels.len()
            )));
        }
        let values = images
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        if let Some(v) = values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(invalid(format!(
                "pixel value {v} outside [0, 1] (attacks work in the unit box)"
            )));
        }
        let k = model.num_classes();
        let logits = model.logits(images)?.detach();
        if logits.dims() != [n, k] {
            return Err(invalid(format!(
                "the model returned logits of shape {:?}, expected [{n}, {k}]",
                logits.dims()
            )));
        }
        if k < 2 {
            return Err(invalid("a classifier needs at least two classes"));
        }
        if let Some(l) = labels.iter().find(|&&l| l as usize >= k) {
            return Err(invalid(format!("label {l} is not one of the {k} classes")));
        }
        let targets = match targeting {
            Targeting::Untargeted => None,
            Targeting::Targeted(t) => {
                if t.len() != n {
                    return Err(invalid(format!(
                        "{} targets for a batch of {n} images",
                        t.len()
                    )));
                }
                if let Some(c) = t.iter().find(|&&c| c as usize >= k) {
                    return Err(invalid(format!("target {c} is not one of the {k} classes")));
                }
                if let Some(i) = (0..n).find(|&i| t[i] == labels[i]) {
                    return Err(invalid(format!(
                        "example {i}: the target equals the label ({})",
                        t[i]
                    )));
                }
                Some(t.clone())
            }
        };
        let clean_predictions = logits.argmax(1)?.to_vec1::<u32>()?;
        Ok(Self {
            images: images.detach(),
            labels: labels.to_vec(),
            targets,
            logits,
            clean_predictions,
        })
    }

    /// Batch size.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// The class each example's objective is about: its target, or else its label.
    pub fn goal_classes(&self) -> &[u32] {
        self.targets.as_deref().unwrap_or(&self.labels)
    }

    /// Whether a prediction `adversarial` for example `i` is a success. Untargeted: the
    /// clean image was classified right and the adversarial one is not. Targeted: the
    /// adversarial image is classified as the target and the clean one was not.
    pub fn is_success(&self, i: usize, adversarial: u32) -> bool {
        let clean = self.clean_predictions[i];
        match &self.targets {
            None => clean == self.labels[i] && adversarial != self.labels[i],
            Some(t) => clean != t[i] && adversarial == t[i],
        }
    }

    /// Whether there is anything to attack: untargeted, the clean image is classified
    /// right; targeted, it is not already classified as the target.
    pub fn is_attackable(&self, i: usize) -> bool {
        let clean = self.clean_predictions[i];
        match &self.targets {
            None => clean == self.labels[i],
            Some(t) => clean != t[i],
        }
    }
}
