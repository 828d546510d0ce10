//! Measurements of a classifier under attack, in plain Rust over slices:
//!
//! - **classification**: binary and multi-class confusion matrices, TPR / FPR /
//!   precision / accuracy, operating points, [`roc_curve`] over all thresholds
//!   (scikit-learn's tie handling) and its AUC;
//! - **attack statistics**: success rate, robust accuracy, perturbation-norm summaries
//!   (numpy-style quantiles), overall and per true class;
//! - **map change**: how much a saliency map moved, by top-k intersection, Spearman and
//!   Pearson correlation, centre-of-mass shift and [`ssim`], and whether that change gives
//!   an attack away ([`detection_auroc`] against the noise control);
//! - **explanation quality**: [`max_sensitivity`] and the [`local_lipschitz_estimate`]
//!   under seeded [`linf_ball_noise`], and deletion / insertion curves
//!   ([`importance_order`], [`step_image`], [`curve_auc`]), as reductions over maps and
//!   probabilities a driver computed;
//! - **CLEVER**'s statistics: the reverse Weibull distribution, its maximum-likelihood
//!   fit with a Kolmogorov–Smirnov check, and the score from per-batch gradient-norm
//!   maxima ([`clever_score_from_maxima`]), and [`clever_score`] itself over any
//!   `models::Classifier` (seeded sampling in the p-ball, batched gradient norms).
//!
//! ```
//! use metrics::{clever_score_from_maxima, roc_curve, top_k_intersection, ReverseWeibull};
//! # fn main() -> Result<(), metrics::MetricsError> {
//! // scikit-learn: roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) has AUC 0.75.
//! let roc = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])?;
//! assert_eq!(roc.auc(), 0.75);
//!
//! // Two 2 x 2 maps whose two hottest pixels agree on one of them.
//! let overlap = top_k_intersection(&[0.9, 0.8, 0.1, 0.0], &[0.9, 0.0, 0.7, 0.1], 2)?;
//! assert_eq!(overlap, 0.5);
//!
//! // CLEVER: maxima of gradient norms with a true local Lipschitz constant of 2.
//! let maxima = ReverseWeibull::new(5.0, 2.0, 0.3)?.sample_seeded(0, 200);
//! let clever = clever_score_from_maxima(&maxima, 1.0, 5.0)?;
//! assert!((clever.lipschitz - 2.0).abs() < 0.1);
//! assert!(clever.score <= 0.5 + 0.05);
//! # Ok(()) }
//! ```
//!
//! Every function validates its input and returns [`MetricsError`] (empty or
//! mismatched slices, NaN, undefined rates such as a ROC without negatives); none
//! panics on user data, and none prints.

#![deny(missing_docs)]

mod attack_stats;
mod classification;
mod clever;
mod clever_model;
mod descriptive;
mod detection;
mod error;
mod explanation_robustness;
mod faithfulness;
mod kolmogorov_smirnov;
mod map_change;
mod nelder_mead;
mod ssim;
mod weibull;

pub use attack_stats::{
    per_class_attack_summary, robust_accuracy, success_rate, AttackOutcome, AttackSummary,
    ClassAttackSummary,
};
pub use classification::{
    auc, operating_point_at_threshold, operating_point_of_predictions, roc_curve, BinaryConfusion,
    ConfusionMatrix, OperatingPoint, RocCurve,
};
pub use clever::{
    clever_score_from_maxima, CleverConfig, CleverEstimate, Fallback, Norm, CLEVER_MIN_PVALUE,
};
pub use clever_model::{clever_score, CleverReport, CleverTarget};
pub use descriptive::{mean, median, quantile, quantiles, NormSummary};
pub use detection::detection_auroc;
pub use error::{MetricsError, Result};
pub use explanation_robustness::{linf_ball_noise, local_lipschitz_estimate, max_sensitivity};
pub use faithfulness::{curve_auc, importance_order, step_image, steps, PixelCurve};
pub use kolmogorov_smirnov::{kolmogorov_survival, ks_statistic, ks_test, KsTest};
pub use map_change::{
    centre_of_mass, centre_of_mass_shift, pearson_correlation, spearman_correlation,
    top_k_intersection, PixelPoint,
};
pub use ssim::{ssim, ssim_with_window, SsimWindow, SSIM_K1, SSIM_K2};
pub use weibull::{
    fit_reverse_weibull, fit_reverse_weibull_with_shapes, ReverseWeibull, WeibullFit,
    CLEVER_SHAPE_INITS, CLEVER_SHAPE_PENALTY,
};
