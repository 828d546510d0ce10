//! FGSM (Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial
//! Examples", ICLR 2015): one signed gradient step of size `eps`, Linf.

use candle_core::Tensor;
use models::Classifier;

use crate::attack::{check_examples, check_non_negative, Attack};
use crate::batch::{Batch, Targeting};
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

    fn run_examples(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
        examples: &[u64],
    ) -> Result<AttackOutcome> {
        check_examples(examples, labels)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Two pixels, two classes: `z = W x + b`.
    struct Linear {
        weight: Tensor,
        bias: Tensor,
    }

    impl Classifier for Linear {
        fn logits(&self, images: &Tensor) -> candle_core::Result<Tensor> {
            images.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
        }

        fn num_classes(&self) -> usize {
            2
        }
    }

    /// f1 is sure of the label (1 - p_y = e^-20, under float32's 6e-8 resolution
    /// near 1), so d CE / d z_y = p_y - 1 rounds to 0 if computed as written. The step
    /// must still follow the exact gradient, p_1 (w_1 - w_0) = p_1 (1, -1), and not
    /// p_1 w_1 = p_1 (2, 2), which is what is left once the label's term is lost
    /// (PyTorch's float32 `cross_entropy` backward does this; see
    /// bench/fgsm_reference.py).
    #[test]
    fn a_saturated_softmax_still_steps_along_the_exact_gradient() {
        let dev = Device::Cpu;
        let model = Linear {
            weight: Tensor::new(&[[1f32, 3.0], [2.0, 2.0]], &dev).unwrap(),
            bias: Tensor::new(&[20f32, 0.0], &dev).unwrap(),
        };
        let x = Tensor::new(&[[0.5f32, 0.5]], &dev).unwrap();
        let out = Fgsm { eps: 0.1 }
            .run(&model, &x, &[0], &Targeting::Untargeted)
            .unwrap();
        let adv: Vec<Vec<f32>> = out.adversarial.to_vec2().unwrap();
        assert!(
            (adv[0][0] - 0.6).abs() < 1e-6 && (adv[0][1] - 0.4).abs() < 1e-6,
            "{adv:?}, expected [0.6, 0.4]"
        );
        assert_eq!(out.degenerate_gradient, vec![false]);
    }
}
