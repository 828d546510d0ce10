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
/// randomness from the seed in their configuration and each example's identity
/// ([`Attack::run_examples`]; [`Attack::run`] identifies examples by their position), so
/// a call repeats exactly, and an example's draws do not depend on its batch.
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
    ) -> Result<AttackOutcome> {
        let examples: Vec<u64> = (0..labels.len() as u64).collect();
        self.run_examples(model, images, labels, targeting, &examples)
    }

    /// Attacks the batch whose examples are `examples` (their identities, such as test
    /// indices; one per image): an attack that draws at random seeds each example's draws
    /// from its configuration's seed and the example's identity, so a run split into other
    /// batches (or shards) draws the same numbers for every example.
    fn run_examples(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
        examples: &[u64],
    ) -> Result<AttackOutcome>;

    /// [`Attack::run_examples`], calling `observe` with the fraction (0 to 1) of the
    /// batch's work done as it goes, for progress lines during a long batch. Attacks
    /// whose batches are short call it never (the default).
    fn run_examples_observed(
        &self,
        model: &dyn Classifier,
        images: &Tensor,
        labels: &[u32],
        targeting: &Targeting,
        examples: &[u64],
        observe: &mut dyn FnMut(f64),
    ) -> Result<AttackOutcome> {
        let _ = observe;
        self.run_examples(model, images, labels, targeting, examples)
    }
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

/// Checks that a batch names one identity per example.
pub(crate) fn check_examples(examples: &[u64], labels: &[u32]) -> Result<()> {
    if examples.len() != labels.len() {
        return Err(invalid(format!(
            "{} example identities for {} labels",
            examples.len(),
            labels.len()
        )));
    }
    Ok(())
}
