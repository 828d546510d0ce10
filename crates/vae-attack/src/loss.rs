//! The latent objective, per (image, target) pair, as ALGORITHMS.md section 4 writes it.

use candle_core::{Result, Tensor, D};
use models::{Classifier, Svae};

use crate::config::LatentAttackConfig;

/// Every term of the objective for a batch of latent codes, one value per pair.
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// Sum of the weighted terms, `N`.
    pub total: Tensor,
    /// J2 = CE(f2(z), t), `N`.
    pub j2: Tensor,
    /// l_dis = BCE(D(z), 1), `N`.
    pub l_dis: Tensor,
    /// ||z||_2, `N`.
    pub z_norm: Tensor,
    /// J1 = CE(f1(G(z)), y), `N` (Type I attack only).
    pub j1: Option<Tensor>,
    /// f1's logits on G(z), `N x 10` (Type I attack only).
    pub f1_logits: Option<Tensor>,
    /// f2's logits, `N x 10`.
    pub f2_logits: Tensor,
    /// G(z), `N x 1 x 28 x 28`.
    pub images: Tensor,
}

/// Per-example cross-entropy `-log softmax(logits)[label]`, `N`.
pub fn per_example_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
}

/// The objective at `z` (`N x 32`): `J2 + dis_weight * l_dis + norm_weight * ||z|| + k * J1`,
/// the last term only when `f1` is given (then `keep`, the labels f1 must keep, and `k`,
/// one weight per pair, are used). `targets` are the classes the image must become.
pub fn latent_objective(
    svae: &Svae,
    f1: Option<&dyn Classifier>,
    z: &Tensor,
    targets: &Tensor,
    keep: &Tensor,
    k: &Tensor,
    config: &LatentAttackConfig,
) -> Result<LossTerms> {
    let f2_logits = svae.classify_latent(z)?;
    let j2 = per_example_cross_entropy(&f2_logits, targets)?;
    // BCE with logits against 1: softplus(-d).
    let l_dis = models::layers::softplus(&svae.discriminate(z)?.neg()?)?.squeeze(1)?;
    let z_norm = z.sqr()?.sum(D::Minus1)?.sqrt()?;
    let mut total = ((&j2 + (&l_dis * config.dis_weight)?)? + (&z_norm * config.norm_weight)?)?;
    let images = svae.decode(z)?;
    let (j1, f1_logits) = match f1 {
        Some(f1) => {
            let logits = f1.logits(&images)?;
            let j1 = per_example_cross_entropy(&logits, keep)?;
            total = (total + (&j1 * k)?)?;
            (Some(j1), Some(logits))
        }
        None => (None, None),
    };
    Ok(LossTerms {
        total,
        j2,
        l_dis,
        z_norm,
        j1,
        f1_logits,
        f2_logits,
        images,
    })
}

/// The adaptive k of the Type I attack, one step:
/// `clip(k + k_lr * (k_j1 * J1 - J2 + max(J1 - k_margin, 0)), 0, k_max)`.
pub fn next_k(k: f64, j1: f64, j2: f64, config: &LatentAttackConfig) -> f64 {
    let step = config.k_j1 * j1 - j2 + (j1 - config.k_margin).max(0.0);
    (k + config.k_lr * step).clamp(0.0, config.k_max)
}
