//! The ROC comparison of the seed's Fig. 1: f1's probability of a positive class P as
//! the score; Type II examples of the positives lower the TPR, Type I examples (made
//! from positives, "not P" for the oracle while f1 keeps P) raise the FPR.

use metrics::{operating_point_of_predictions, roc_curve, RocCurve};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One scored example: f1's probability of P, whether f1's arg-max is P, and whether
/// the oracle (for clean test images: the dataset label) says it is P.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// f1's softmax probability of the positive class.
    pub score: f64,
    /// f1's arg-max is the positive class.
    pub predicted_positive: bool,
    /// The oracle calls it the positive class.
    pub positive: bool,
}

/// A curve with its AUC and f1's own operating point (arg-max decision).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveSummary {
    /// The full ROC curve.
    pub curve: RocCurve,
    /// Its area (trapezoid rule).
    pub auc: f64,
    /// TPR of the arg-max decision.
    pub tpr: f64,
    /// FPR of the arg-max decision.
    pub fpr: f64,
    /// Positives and negatives counted.
    pub positives: usize,
    /// See `positives`.
    pub negatives: usize,
}

/// The three curves of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RocComparison {
    /// The positive class P.
    pub positive_class: u32,
    /// Clean test images.
    pub clean: CurveSummary,
    /// Every positive replaced by its Type II example.
    pub type2: CurveSummary,
    /// Clean images plus the Type I examples as negatives.
    pub type1: CurveSummary,
    /// Type I examples added as negatives (the size of the Type I set).
    pub type1_examples: usize,
    /// FPR of f1's arg-max decision on the Type I set by itself (NaN when it is empty).
    pub type1_set_fpr: f64,
}

fn summarise(examples: &[Scored]) -> Result<CurveSummary> {
    let scores: Vec<f64> = examples.iter().map(|e| e.score).collect();
    let labels: Vec<bool> = examples.iter().map(|e| e.positive).collect();
    let predicted: Vec<bool> = examples.iter().map(|e| e.predicted_positive).collect();
    let curve = roc_curve(&scores, &labels)?;
    let point = operating_point_of_predictions(&predicted, &labels)?;
    Ok(CurveSummary {
        auc: curve.auc(),
        curve,
        tpr: point.tpr,
        fpr: point.fpr,
        positives: labels.iter().filter(|&&p| p).count(),
        negatives: labels.iter().filter(|&&p| !p).count(),
    })
}

/// Builds the comparison. `type2_of_positives[i]` is the Type II example of the i-th
/// positive of `clean` (in order; still a positive for the oracle); `type1` are the
/// successful Type I examples, added as negatives.
pub fn roc_comparison(
    positive_class: u32,
    clean: &[Scored],
    type2_of_positives: &[Scored],
    type1: &[Scored],
) -> Result<RocComparison> {
    let mut swapped = Vec::with_capacity(clean.len());
    let mut adversarial = type2_of_positives.iter();
    for e in clean {
        if e.positive {
            let a = adversarial.next().ok_or_else(|| {
                crate::error::HarnessError::Other("fewer Type II examples than positives".into())
            })?;
            swapped.push(Scored {
                positive: true,
                ..*a
            });
        } else {
            swapped.push(*e);
        }
    }
    let mut with_type1 = clean.to_vec();
    with_type1.extend(type1.iter().map(|e| Scored {
        positive: false,
        ..*e
    }));
    let type1_set_fpr = if type1.is_empty() {
        f64::NAN
    } else {
        type1.iter().filter(|e| e.predicted_positive).count() as f64 / type1.len() as f64
    };
    Ok(RocComparison {
        type1_examples: type1.len(),
        type1_set_fpr,
        positive_class,
        clean: summarise(clean)?,
        type2: summarise(&swapped)?,
        type1: summarise(&with_type1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(score: f64, positive: bool) -> Scored {
        Scored {
            score,
            predicted_positive: score > 0.5,
            positive,
        }
    }

    #[test]
    fn type2_lowers_tpr_and_type1_raises_fpr() {
        let clean = vec![s(0.9, true), s(0.8, true), s(0.1, false), s(0.2, false)];
        let type2 = vec![s(0.1, true), s(0.9, true)];
        let type1 = vec![s(0.95, false)];
        let c = roc_comparison(3, &clean, &type2, &type1).unwrap();
        assert_eq!((c.clean.tpr, c.clean.fpr, c.clean.auc), (1.0, 0.0, 1.0));
        assert_eq!(c.type2.tpr, 0.5);
        assert!(c.type2.auc < 1.0);
        assert!((c.type1.fpr - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.type1.negatives, 3);
        assert_eq!((c.type1_examples, c.type1_set_fpr), (1, 1.0));
        let none = roc_comparison(3, &clean, &type2, &[]).unwrap();
        assert!(none.type1_set_fpr.is_nan() && none.type1_examples == 0);
        assert!(roc_comparison(3, &clean, &type2[..1], &type1).is_err());
    }
}
