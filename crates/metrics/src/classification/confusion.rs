//! Confusion matrices: binary (from scores and a threshold, or from hard predictions)
//! and multi-class, with the rates derived from them.

use serde::Serialize;

use crate::error::{ensure_non_empty, ensure_not_nan, ensure_same_len, MetricsError, Result};

/// Counts of a binary classifier's decisions against the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct BinaryConfusion {
    /// Positives predicted positive.
    pub true_positives: u64,
    /// Negatives predicted positive.
    pub false_positives: u64,
    /// Negatives predicted negative.
    pub true_negatives: u64,
    /// Positives predicted negative.
    pub false_negatives: u64,
}

/// A point of ROC space: the rates of one decision rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    /// True positive rate, TP / (TP + FN).
    pub tpr: f64,
    /// False positive rate, FP / (FP + TN).
    pub fpr: f64,
}

impl BinaryConfusion {
    /// Counts hard predictions (`true` = predicted positive) against the truth
    /// (`true` = positive).
    pub fn from_predictions(predicted: &[bool], positives: &[bool]) -> Result<Self> {
        ensure_non_empty("predictions", predicted)?;
        ensure_same_len("predictions", predicted, "labels", positives)?;
        let mut counts = Self::default();
        for (&p, &t) in predicted.iter().zip(positives) {
            match (p, t) {
                (true, true) => counts.true_positives += 1,
                (true, false) => counts.false_positives += 1,
                (false, false) => counts.true_negatives += 1,
                (false, true) => counts.false_negatives += 1,
            }
        }
        Ok(counts)
    }

    /// Counts the decisions "positive iff `score >= threshold`" (scikit-learn's
    /// convention for ROC thresholds) against the truth.
    pub fn from_scores(scores: &[f64], positives: &[bool], threshold: f64) -> Result<Self> {
        ensure_non_empty("scores", scores)?;
        ensure_not_nan("scores", scores)?;
        if threshold.is_nan() {
            return Err(MetricsError::InvalidParameter {
                name: "threshold",
                value: threshold,
                reason: "must not be NaN",
            });
        }
        let predicted: Vec<bool> = scores.iter().map(|&s| s >= threshold).collect();
        Self::from_predictions(&predicted, positives)
    }

    /// Number of positive examples, TP + FN.
    pub fn positives(&self) -> u64 {
        self.true_positives + self.false_negatives
    }

    /// Number of negative examples, FP + TN.
    pub fn negatives(&self) -> u64 {
        self.false_positives + self.true_negatives
    }

    /// Number of examples.
    pub fn total(&self) -> u64 {
        self.positives() + self.negatives()
    }

    /// True positive rate (recall), TP / (TP + FN); fails without positives.
    pub fn tpr(&self) -> Result<f64> {
        ratio(self.true_positives, self.positives()).ok_or(MetricsError::NoPositives)
    }

    /// False positive rate, FP / (FP + TN); fails without negatives.
    pub fn fpr(&self) -> Result<f64> {
        ratio(self.false_positives, self.negatives()).ok_or(MetricsError::NoNegatives)
    }

    /// Precision, TP / (TP + FP); fails when nothing is predicted positive.
    pub fn precision(&self) -> Result<f64> {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
        .ok_or(MetricsError::NoPredictedPositives)
    }

    /// Accuracy, (TP + TN) / total; fails on zero examples.
    pub fn accuracy(&self) -> Result<f64> {
        ratio(self.true_positives + self.true_negatives, self.total()).ok_or(
            MetricsError::EmptyInput {
                what: "confusion matrix",
            },
        )
    }

    /// The (TPR, FPR) pair; fails without positives or without negatives.
    pub fn operating_point(&self) -> Result<OperatingPoint> {
        Ok(OperatingPoint {
            tpr: self.tpr()?,
            fpr: self.fpr()?,
        })
    }
}

/// TPR and FPR of the rule "positive iff `score >= threshold`".
pub fn operating_point_at_threshold(
    scores: &[f64],
    positives: &[bool],
    threshold: f64,
) -> Result<OperatingPoint> {
    BinaryConfusion::from_scores(scores, positives, threshold)?.operating_point()
}

/// TPR and FPR of hard predictions (for instance "arg-max is the positive class").
pub fn operating_point_of_predictions(
    predicted: &[bool],
    positives: &[bool],
) -> Result<OperatingPoint> {
    BinaryConfusion::from_predictions(predicted, positives)?.operating_point()
}

/// A multi-class confusion matrix: `count(t, p)` examples of true class `t` were
/// predicted as class `p`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfusionMatrix {
    n_classes: usize,
    /// Row-major `n_classes x n_classes`, rows = true class, columns = predicted class.
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// Counts `(truth[i], predicted[i])` pairs over `n_classes` classes (10 for MNIST).
    pub fn from_labels(truth: &[usize], predicted: &[usize], n_classes: usize) -> Result<Self> {
        if n_classes == 0 {
            return Err(MetricsError::InvalidParameter {
                name: "n_classes",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        ensure_non_empty("true labels", truth)?;
        ensure_same_len("true labels", truth, "predicted labels", predicted)?;
        let cells = n_classes
            .checked_mul(n_classes)
            .ok_or(MetricsError::InvalidParameter {
                name: "n_classes",
                value: n_classes as f64,
                reason: "its square overflows usize",
            })?;
        let mut counts = vec![0u64; cells];
        for (index, (&t, &p)) in truth.iter().zip(predicted).enumerate() {
            for class in [t, p] {
                if class >= n_classes {
                    return Err(MetricsError::ClassOutOfRange {
                        index,
                        class,
                        n_classes,
                    });
                }
            }
            counts[t * n_classes + p] += 1;
        }
        Ok(Self { n_classes, counts })
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Examples of true class `truth` predicted as `predicted`; `None` out of range.
    pub fn count(&self, truth: usize, predicted: usize) -> Option<u64> {
        if truth >= self.n_classes || predicted >= self.n_classes {
            return None;
        }
        self.counts.get(truth * self.n_classes + predicted).copied()
    }

    /// The row of true class `truth` (counts per predicted class); `None` out of range.
    pub fn row(&self, truth: usize) -> Option<&[u64]> {
        let start = truth.checked_mul(self.n_classes)?;
        self.counts.get(start..start.checked_add(self.n_classes)?)
    }

    /// Number of examples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Fraction of examples on the diagonal.
    pub fn accuracy(&self) -> Result<f64> {
        let correct = (0..self.n_classes)
            .map(|c| self.counts[c * self.n_classes + c])
            .sum();
        ratio(correct, self.total()).ok_or(MetricsError::EmptyInput {
            what: "confusion matrix",
        })
    }

    /// Recall of each class (diagonal over row sum); `None` for a class with no examples.
    pub fn recall_per_class(&self) -> Vec<Option<f64>> {
        (0..self.n_classes)
            .map(|c| {
                let row = &self.counts[c * self.n_classes..(c + 1) * self.n_classes];
                ratio(row[c], row.iter().sum())
            })
            .collect()
    }
}

/// `numerator / denominator` as f64, `None` when the denominator is zero.
fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rates_on_a_small_example() {
        let scores = [0.9, 0.8, 0.3, 0.6, 0.1];
        let labels = [true, true, true, false, false];
        let c = BinaryConfusion::from_scores(&scores, &labels, 0.5).unwrap();
        assert_eq!(
            c,
            BinaryConfusion {
                true_positives: 2,
                false_positives: 1,
                true_negatives: 1,
                false_negatives: 1
            }
        );
        assert!((c.tpr().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.fpr().unwrap(), 0.5);
        assert!((c.precision().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.accuracy().unwrap(), 0.6);
        // A score equal to the threshold is predicted positive.
        let at = operating_point_at_threshold(&scores, &labels, 0.6).unwrap();
        assert_eq!(at.fpr, 0.5);
    }

    #[test]
    fn binary_errors_name_what_is_missing() {
        let only_pos = [true, true];
        assert_eq!(
            operating_point_of_predictions(&[true, false], &only_pos),
            Err(MetricsError::NoNegatives)
        );
        assert_eq!(
            operating_point_of_predictions(&[true, false], &[false, false]),
            Err(MetricsError::NoPositives)
        );
        let none_predicted = BinaryConfusion::from_predictions(&[false], &[true]).unwrap();
        assert_eq!(
            none_predicted.precision(),
            Err(MetricsError::NoPredictedPositives)
        );
        assert!(matches!(
            BinaryConfusion::from_predictions(&[true], &[true, false]),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            BinaryConfusion::from_scores(&[f64::NAN], &[true], 0.5),
            Err(MetricsError::NotFinite { .. })
        ));
        assert!(matches!(
            BinaryConfusion::from_predictions(&[], &[]),
            Err(MetricsError::EmptyInput { .. })
        ));
    }

    #[test]
    fn multiclass_counts_and_accuracy() {
        let truth = [0, 1, 2, 2, 9];
        let predicted = [0, 2, 2, 1, 9];
        let m = ConfusionMatrix::from_labels(&truth, &predicted, 10).unwrap();
        assert_eq!(m.count(1, 2), Some(1));
        assert_eq!(m.count(2, 2), Some(1));
        assert_eq!(m.count(10, 0), None);
        assert_eq!(m.row(2).unwrap()[..3], [0, 1, 1]);
        assert_eq!(m.total(), 5);
        assert_eq!(m.accuracy().unwrap(), 0.6);
        let recall = m.recall_per_class();
        assert_eq!(recall[1], Some(0.0));
        assert_eq!(recall[2], Some(0.5));
        assert_eq!(recall[3], None);
        assert!(matches!(
            ConfusionMatrix::from_labels(&[0, 10], &[0, 1], 10),
            Err(MetricsError::ClassOutOfRange {
                index: 1,
                class: 10,
                ..
            })
        ));
    }
}
