//! The one trait every attack implements, and the check of a configuration's radii and
//! steps.

use candle_core::Tensor;
use models::Classifier;

use crate::batch::Targeting;
use crate::error::{invalid, Result};
use crate::outcome::AttackOutcome;

/// A Type II attack: a batch in, the adversarial batch and per-example success out.
///
/// `images` are `N x C x H x W` (any rank >= 2 with the batch first) with every value in
/// [0, 1]; `labels` are the `N` true classes. Implementations never print and draw any
/// randomness from the seed in their configuration, so a call repeats exactly.
pub trait Attack {
    /// Short name, as used on the command line (`fgsm`, `pgd-linf`, ...).
    fn name(&self) -> &'static str;

    /// Attacks the batch.
    fn run(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
    ) -> Result<AttackOutcome>;
}

/// Checks a radius or step of a configuration: finite and not negative.
pub(crate) fn check_non_negative(name: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value < 0.0 {
        return Err(invalid(format!(
            "{name} must be finite and >= 0, got {value}"
        )));
    }
    Ok(())
}
