//! What every attack returns: the adversarial batch, per-example success, the norms of
//! the perturbation, logits before and after, and the cost in gradients.

use candle_core::{DType, Tensor};
use models::Classifier;

use crate::batch::Batch;
use crate::error::Result;
use crate::ops::to_f64s;

/// A component counts towards L0 when it moved by more than this (a hundredth of one
/// 8-bit grey level): float round-off, such as CW's tanh change of variables leaves on
/// untouched pixels, is not a change.
pub const L0_TOLERANCE: f64 = 1e-4;

/// Mean norms of a set of perturbations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanNorms {
    /// Mean number of changed components (see [`L0_TOLERANCE`]).
    pub l0: f64,
    /// Mean L2 norm.
    pub l2: f64,
    /// Mean Linf norm.
    pub linf: f64,
}

/// The result of one attack on one batch. Every `Vec` has one entry per example.
#[derive(Debug, Clone)]
pub struct AttackOutcome {
    /// The adversarial images, the input's shape and dtype, every value in [0, 1].
    /// Examples the attack did not succeed on hold its last (or best) iterate.
    pub adversarial: Tensor,
    /// The true labels.
    pub labels: Vec<u32>,
    /// The targets of a targeted attack.
    pub targets: Option<Vec<u32>>,
    /// Untargeted: the clean image was classified right and the adversarial one is not.
    /// Targeted: the adversarial image is classified as the target and the clean one was
    /// not. Decided by evaluating the model on [`AttackOutcome::adversarial`] itself.
    pub success: Vec<bool>,
    /// Arg-max class of the clean images.
    pub clean_predictions: Vec<u32>,
    /// Arg-max class of the adversarial images.
    pub adversarial_predictions: Vec<u32>,
    /// Number of components of `adversarial - images` above [`L0_TOLERANCE`].
    pub l0: Vec<usize>,
    /// L2 norm of `adversarial - images`.
    pub l2: Vec<f64>,
    /// Linf norm of `adversarial - images`.
    pub linf: Vec<f64>,
    /// Logits of the clean images, `N x K`.
    pub logits_before: Tensor,
    /// Logits of the adversarial images, `N x K`.
    pub logits_after: Tensor,
    /// Per example, the number of input gradients of a scalar taken for it (one
    /// backward pass counts once for every example in its batch; DeepFool's gradients of
    /// all `K` logits count `K`).
    pub gradient_evaluations: Vec<usize>,
    /// Per example, whether some gradient the attack took for it was all zeros or not
    /// finite: the signature of gradient masking (or of a saturated softmax).
    pub degenerate_gradient: Vec<bool>,
}

impl AttackOutcome {
    /// Assembles the outcome, evaluating the model on the final adversarial batch.
    pub(crate) fn new(
        model: &dyn Classifier,
        batch: Batch,
        adversarial: Tensor,
        gradient_evaluations: Vec<usize>,
        degenerate_gradient: Vec<bool>,
    ) -> Result<Self> {
        let adversarial = adversarial.detach();
        let logits_after = model.logits(&adversarial)?.detach();
        let adversarial_predictions = logits_after.argmax(1)?.to_vec1::<u32>()?;
        let success = adversarial_predictions
            .iter()
            .enumerate()
            .map(|(i, &p)| batch.is_success(i, p))
            .collect();
        let delta = (&adversarial - &batch.images)?
            .flatten_from(1)?
            .to_dtype(DType::F64)?;
        let abs = delta.abs()?;
        let l2 = to_f64s(&delta.sqr()?.sum(1)?.sqrt()?)?;
        let linf = to_f64s(&abs.max(1)?)?;
        let l0 = to_f64s(&abs.gt(L0_TOLERANCE)?.to_dtype(DType::F64)?.sum(1)?)?
            .into_iter()
            .map(|c| c as usize)
            .collect();
        Ok(Self {
            adversarial,
            labels: batch.labels,
            targets: batch.targets,
            success,
            clean_predictions: batch.clean_predictions,
            adversarial_predictions,
            l0,
            l2,
            linf,
            logits_before: batch.logits,
            logits_after,
            gradient_evaluations,
            degenerate_gradient,
        })
    }

    /// Batch size.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch was empty (never, for an outcome an attack returned).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether example `i` was worth attacking: untargeted, the model classified it
    /// right; targeted, not already as the target.
    pub fn is_attackable(&self, i: usize) -> bool {
        match &self.targets {
            None => self.clean_predictions[i] == self.labels[i],
            Some(t) => self.clean_predictions[i] != t[i],
        }
    }

    /// Number of attackable examples (see [`AttackOutcome::is_attackable`]).
    pub fn attackable(&self) -> usize {
        (0..self.len()).filter(|&i| self.is_attackable(i)).count()
    }

    /// Number of successes.
    pub fn successes(&self) -> usize {
        self.success.iter().filter(|&&s| s).count()
    }

    /// Successes over attackable examples (0 when there are none), the usual "attack
    /// success rate".
    pub fn success_rate(&self) -> f64 {
        ratio(self.successes(), self.attackable())
    }

    /// Fraction of clean images classified right.
    pub fn clean_accuracy(&self) -> f64 {
        let right = (0..self.len())
            .filter(|&i| self.clean_predictions[i] == self.labels[i])
            .count();
        ratio(right, self.len())
    }

    /// Fraction of adversarial images still classified right.
    pub fn robust_accuracy(&self) -> f64 {
        let right = (0..self.len())
            .filter(|&i| self.adversarial_predictions[i] == self.labels[i])
            .count();
        ratio(right, self.len())
    }

    /// Mean norms over the successful examples, `None` when there is none.
    pub fn mean_norms_of_successes(&self) -> Option<MeanNorms> {
        let idx: Vec<usize> = (0..self.len()).filter(|&i| self.success[i]).collect();
        if idx.is_empty() {
            return None;
        }
        let n = idx.len() as f64;
        Some(MeanNorms {
            l0: idx.iter().map(|&i| self.l0[i] as f64).sum::<f64>() / n,
            l2: idx.iter().map(|&i| self.l2[i]).sum::<f64>() / n,
            linf: idx.iter().map(|&i| self.linf[i]).sum::<f64>() / n,
        })
    }

    /// Whether any example saw a zero or non-finite gradient.
    pub fn gradient_masking_suspected(&self) -> bool {
        self.degenerate_gradient.iter().any(|&d| d)
    }

    /// Total input gradients over the batch.
    pub fn total_gradient_evaluations(&self) -> usize {
        self.gradient_evaluations.iter().sum()
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
