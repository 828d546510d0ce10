//! FGSM (Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial
//! Examples", ICLR 2015): one signed gradient step of size `eps`, Linf.

use candle_core::Tensor;
use models::Classifier;

use crate::attack::{check_non_negative, Attack, Batch, Targeting};
use crate::error::Result;
use crate::gradient::{cross_entropy_per_example, degenerate_rows, input_gradient, zero_rows};
use crate::ops::{clamp_unit, class_tensor};
use crate::outcome::AttackOutcome;

/// `x' = clip(x + eps * sign(grad_x CE(x, y)))`, or for a target `t`,
/// `x' = clip(x - eps * sign(grad_x CE(x, t)))`. One gradient per example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fgsm {
    /// Linf radius (MNIST: 0.3).
    pub eps: f64,
}

impl Default for Fgsm {
    /// The MNIST radius, eps = 0.3.
    fn default() -> Self {
        Self { eps: 0.3 }
    }
}

impl Attack for Fgsm {
    fn name(&self) -> &'static str {
        "fgsm"
    }

    fn run(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
    ) -> Result<AttackOutcome> {
        check_non_negative("eps", self.eps)?;
        let batch = Batch::new(model, images, labels, targeting)?;
        let classes = class_tensor(batch.goal_classes(), images.device())?;
        let g = input_gradient(model, &batch.images, |z| {
            cross_entropy_per_example(z, &classes)
        })?;
        let degenerate = degenerate_rows(&g.gradient)?;
        let direction = zero_rows(&g.gradient, &degenerate)?.sign()?;
        let step = if batch.targets.is_some() {
            -self.eps
        } else {
            self.eps
        };
        let adversarial = clamp_unit(&(&batch.images + (direction * step)?)?)?;
        let n = batch.len();
        AttackOutcome::new(model, batch, adversarial, vec![1; n], degenerate)
    }
}
