//! The latent objective, per (image, target) pair, as ALGORITHMS.md section 4 writes it.

use candle_core::{DType, Result, Tensor, D};
use models::{Classifier, Svae};

use crate::config::{AdaptiveK, LatentAttackConfig, Objective};

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
    /// f1's logit margin `Z_y - max_{j != y} Z_j` on G(z), `N` (Type I attack only).
    pub margin: Option<Tensor>,
    /// f1's logits on G(z), `N x 10` (Type I attack only).
    pub f1_logits: Option<Tensor>,
    /// f2's logits, `N x 10`.
    pub f2_logits: Tensor,
    /// f2's logits on the re-encoded image, f2(mu(G(z))), `N x 10` (when the constrained
    /// objective weighs the image's reading).
    pub f2_image_logits: Option<Tensor>,
    /// G(z), `N x 1 x 28 x 28`.
    pub images: Tensor,
}

/// Per-example cross-entropy `-log softmax(logits)[label]`, `N`.
pub fn per_example_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
}

/// The logit margin of `labels` per row: `Z_y - max_{j != y} Z_j`, `N`.
pub fn logit_margin(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let classes = logits.dim(D::Minus1)?;
    let own = logits.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    let one_hot = labels
        .unsqueeze(1)?
        .broadcast_eq(&Tensor::arange(0u32, classes as u32, logits.device())?.unsqueeze(0)?)?
        .to_dtype(logits.dtype())?;
    // The own class pushed far below every other before the max.
    let others = (logits - (one_hot * 1e9)?)?.max(D::Minus1)?;
    own - others
}

/// The latent part of the objective at `z`, which needs neither G nor f1.
pub(crate) struct LatentTerms {
    /// `J2 + dis_weight * l_dis + norm_weight * ||z||`.
    pub total: Tensor,
    pub j2: Tensor,
    pub l_dis: Tensor,
    pub z_norm: Tensor,
    pub f2_logits: Tensor,
}

/// `J2 + dis_weight * l_dis + norm_weight * ||z||` at `z` (`N x 32`).
pub(crate) fn latent_terms(
    svae: &Svae,
    z: &Tensor,
    targets: &Tensor,
    config: &LatentAttackConfig,
) -> Result<LatentTerms> {
    let f2_logits = svae.classify_latent(z)?;
    let j2 = per_example_cross_entropy(&f2_logits, targets)?;
    // BCE with logits against 1: softplus(-d).
    let l_dis = models::layers::softplus(&svae.discriminate(z)?.neg()?)?.squeeze(1)?;
    let z_norm = z.sqr()?.sum(D::Minus1)?.sqrt()?;
    let total = ((&j2 + (&l_dis * config.dis_weight)?)? + (&z_norm * config.norm_weight)?)?;
    Ok(LatentTerms {
        total,
        j2,
        l_dis,
        z_norm,
        f2_logits,
    })
}

/// f1 on `images`: J1 = CE(f1(images), keep), the logit margin of `keep`, the logits.
pub(crate) fn f1_terms(
    f1: &dyn Classifier,
    images: &Tensor,
    keep: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let logits = f1.logits(images)?;
    let j1 = per_example_cross_entropy(&logits, keep)?;
    let margin = logit_margin(&logits, keep)?;
    Ok((j1, margin, logits))
}

/// The objective at `z` (`N x 32`): `J2 + dis_weight * l_dis + norm_weight * ||z||` plus,
/// when `f1` is given, its term: `weight * J1` for [`Objective::Paper`] (weight = k) or
/// `weight * relu(kappa - margin)` for [`Objective::Constrained`] (weight = lambda), with
/// `keep` the labels f1 must keep and one weight per pair. `targets` are the classes the
/// image must become.
pub fn latent_objective(
    svae: &Svae,
    f1: Option<&dyn Classifier>,
    z: &Tensor,
    targets: &Tensor,
    keep: &Tensor,
    weight: &Tensor,
    config: &LatentAttackConfig,
) -> Result<LossTerms> {
    let LatentTerms {
        mut total,
        j2,
        l_dis,
        z_norm,
        f2_logits,
    } = latent_terms(svae, z, targets, config)?;
    let images = svae.decode(z)?;
    let mut f2_image_logits = None;
    if let Objective::Constrained(c) = &config.objective {
        if c.image_weight > 0.0 {
            let (mu, _) = svae.encode(&images)?;
            let logits = svae.classify_latent(&mu)?;
            let j_image = per_example_cross_entropy(&logits, targets)?;
            total = (total + (j_image * c.image_weight)?)?;
            f2_image_logits = Some(logits);
        }
    }
    let (j1, margin, f1_logits) = match (f1, &config.objective) {
        (Some(f1), Objective::Paper(_)) => {
            let (j1, margin, logits) = f1_terms(f1, &images, keep)?;
            total = (total + (&j1 * weight)?)?;
            (Some(j1), Some(margin), Some(logits))
        }
        (Some(f1), Objective::Constrained(c)) => {
            let (j1, margin, logits) = f1_terms(f1, &images.detach(), keep)?;
            total = hinge_term(f1, &images, keep, weight, &margin, c.kappa, total)?;
            (Some(j1), Some(margin), Some(logits))
        }
        (None, _) => (None, None, None),
    };
    Ok(LossTerms {
        total,
        j2,
        l_dis,
        z_norm,
        j1,
        margin,
        f1_logits,
        f2_logits,
        f2_image_logits,
        images,
    })
}

/// `total + weight * relu(kappa - margin)`, the margin that of f1 on `images` (given,
/// computed without a graph). Where `kappa - margin` is negative the hinge is 0 and so
/// is its gradient (candle's ReLU passes the gradient at 0, so a margin of exactly
/// kappa is kept in), so only the other rows go through f1 again, with a graph: f1's
/// backward (most of its cost) runs for them alone. The constrained attack's multiplier
/// keeps the margin above kappa most of the time (on the harness's batch of 90 pairs
/// over 1,000 iterations, the hinge is active in 11 % of the pair-iterations). Every
/// operation is row-wise, so the values and gradients are the plain formula's.
fn hinge_term(
    f1: &dyn Classifier,
    images: &Tensor,
    keep: &Tensor,
    weight: &Tensor,
    margin: &Tensor,
    kappa: f64,
    total: Tensor,
) -> Result<Tensor> {
    // The hinge's argument in the arithmetic the term itself uses.
    let slack: Vec<f64> = margin
        .affine(-1.0, kappa)?
        .to_dtype(DType::F64)?
        .to_vec1()?;
    // A NaN stays in, as it would in the plain formula.
    let active: Vec<u32> = (0..slack.len() as u32)
        .filter(|&i| slack[i as usize] >= 0.0 || slack[i as usize].is_nan())
        .collect();
    if active.is_empty() {
        return Ok(total);
    }
    let count = active.len();
    let rows = Tensor::from_vec(active, count, images.device())?;
    let (_, margin, _) = f1_terms(
        f1,
        &images.index_select(&rows, 0)?,
        &keep.index_select(&rows, 0)?,
    )?;
    let term = (margin.affine(-1.0, kappa)?.relu()? * weight.index_select(&rows, 0)?)?;
    total.index_add(&rows, &term, 0)
}

/// The adaptive k of the Type I attack, one step:
/// `clip(k + k_lr * (k_j1 * J1 - J2 + max(J1 - k_margin, 0)), 0, k_max)`.
pub fn next_k(k: f64, j1: f64, j2: f64, config: &AdaptiveK) -> f64 {
    let step = config.k_j1 * j1 - j2 + (j1 - config.k_margin).max(0.0);
    (k + config.k_lr * step).clamp(0.0, config.k_max)
}
