//! Statistics of an attack over a set of examples: success rate, robust accuracy,
//! perturbation norms, overall and per true class.
//!
//! Conventions (stated once, used everywhere here):
//! - An attack is only meaningful on an example the classifier gets right, so the
//!   **success rate** is successes among the correctly classified examples, over the
//!   number of correctly classified examples. `attack_succeeded` is ignored for an
//!   example that was already misclassified.
//! - **Robust accuracy** is over *all* examples: the fraction that were correctly
//!   classified *and* not successfully attacked. Hence
//!   `robust_accuracy = clean_accuracy * (1 - success_rate)`.
//! - **Norms** are summarised over the successful attacks only (a failed attack's
//!   perturbation says nothing about the distance to the decision boundary).

use serde::Serialize;

use crate::descriptive::NormSummary;
use crate::error::{ensure_non_empty, ensure_same_len, MetricsError, Result};

/// What happened to one example under an attack.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AttackOutcome {
    /// The example's true class.
    pub true_class: usize,
    /// Whether the classifier got the clean example right.
    pub clean_correct: bool,
    /// Whether the attack reached its goal (ignored when `clean_correct` is false).
    pub attack_succeeded: bool,
    /// Norm of the perturbation found (only read for successful attacks).
    pub perturbation_norm: f64,
}

/// Summary of an attack over a set of examples (see the module conventions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AttackSummary {
    /// Number of examples.
    pub n_examples: usize,
    /// Examples classified correctly before the attack (the attacked ones).
    pub n_clean_correct: usize,
    /// Successful attacks on correctly classified examples.
    pub n_succeeded: usize,
    /// `n_clean_correct / n_examples`.
    pub clean_accuracy: f64,
    /// `n_succeeded / n_clean_correct`; `None` when nothing was classified correctly.
    pub success_rate: Option<f64>,
    /// `(n_clean_correct - n_succeeded) / n_examples`.
    pub robust_accuracy: f64,
    /// Norms of the successful perturbations; `None` when no attack succeeded.
    pub norms: Option<NormSummary>,
}

/// An [`AttackSummary`] restricted to one true class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassAttackSummary {
    /// The true class.
    pub class: usize,
    /// Its summary; `None` when no example has this class.
    pub summary: Option<AttackSummary>,
}

impl AttackSummary {
    /// Summarises a non-empty set of outcomes; fails on a non-finite norm of a
    /// successful attack.
    pub fn from_outcomes(outcomes: &[AttackOutcome]) -> Result<Self> {
        ensure_non_empty("attack outcomes", outcomes)?;
        let n_examples = outcomes.len();
        let n_clean_correct = outcomes.iter().filter(|o| o.clean_correct).count();
        let mut norms = Vec::new();
        for (index, o) in outcomes.iter().enumerate() {
            if o.clean_correct && o.attack_succeeded {
                if !o.perturbation_norm.is_finite() {
                    return Err(MetricsError::NotFinite {
                        what: "perturbation norms",
                        index,
                        value: o.perturbation_norm,
                    });
                }
                norms.push(o.perturbation_norm);
            }
        }
        let n_succeeded = norms.len();
        Ok(Self {
            n_examples,
            n_clean_correct,
            n_succeeded,
            clean_accuracy: n_clean_correct as f64 / n_examples as f64,
            success_rate: (n_clean_correct > 0)
                .then(|| n_succeeded as f64 / n_clean_correct as f64),
            robust_accuracy: (n_clean_correct - n_succeeded) as f64 / n_examples as f64,
            norms: if norms.is_empty() {
                None
            } else {
                Some(NormSummary::from_values(&norms)?)
            },
        })
    }
}

/// One summary per true class `0..n_classes`; fails on a class out of range.
pub fn per_class_attack_summary(
    outcomes: &[AttackOutcome],
    n_classes: usize,
) -> Result<Vec<ClassAttackSummary>> {
    ensure_non_empty("attack outcomes", outcomes)?;
    let mut by_class: Vec<Vec<AttackOutcome>> = vec![Vec::new(); n_classes];
    for (index, o) in outcomes.iter().enumerate() {
        match by_class.get_mut(o.true_class) {
            Some(bucket) => bucket.push(*o),
            None => {
                return Err(MetricsError::ClassOutOfRange {
                    index,
                    class: o.true_class,
                    n_classes,
                })
            }
        }
    }
    by_class
        .iter()
        .enumerate()
        .map(|(class, bucket)| {
            let summary = if bucket.is_empty() {
                None
            } else {
                Some(AttackSummary::from_outcomes(bucket)?)
            };
            Ok(ClassAttackSummary { class, summary })
        })
        .collect()
}

/// Successes among correctly classified examples over their number (module
/// conventions); fails when no example is correctly classified.
pub fn success_rate(clean_correct: &[bool], attack_succeeded: &[bool]) -> Result<f64> {
    ensure_same_len(
        "clean_correct",
        clean_correct,
        "attack_succeeded",
        attack_succeeded,
    )?;
    let attacked = clean_correct.iter().filter(|&&c| c).count();
    if attacked == 0 {
        return Err(MetricsError::EmptyInput {
            what: "correctly classified examples",
        });
    }
    let succeeded = clean_correct
        .iter()
        .zip(attack_succeeded)
        .filter(|&(&c, &s)| c && s)
        .count();
    Ok(succeeded as f64 / attacked as f64)
}

/// Fraction of all examples that were correctly classified and not successfully
/// attacked (module conventions).
pub fn robust_accuracy(clean_correct: &[bool], attack_succeeded: &[bool]) -> Result<f64> {
    ensure_non_empty("clean_correct", clean_correct)?;
    ensure_same_len(
        "clean_correct",
        clean_correct,
        "attack_succeeded",
        attack_succeeded,
    )?;
    let robust = clean_correct
        .iter()
        .zip(attack_succeeded)
        .filter(|&(&c, &s)| c && !s)
        .count();
    Ok(robust as f64 / clean_correct.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(true_class: usize, clean: bool, success: bool, norm: f64) -> AttackOutcome {
        AttackOutcome {
            true_class,
            clean_correct: clean,
            attack_succeeded: success,
            perturbation_norm: norm,
        }
    }

    fn sample() -> Vec<AttackOutcome> {
        vec![
            outcome(0, true, true, 1.0),
            outcome(0, true, false, 9.0),
            outcome(1, true, true, 3.0),
            outcome(1, false, true, f64::NAN), // misclassified: ignored by the attack stats
            outcome(2, true, true, 2.0),
        ]
    }

    #[test]
    fn overall_summary_follows_the_conventions() {
        let s = AttackSummary::from_outcomes(&sample()).unwrap();
        assert_eq!((s.n_examples, s.n_clean_correct, s.n_succeeded), (5, 4, 3));
        assert_eq!(s.clean_accuracy, 0.8);
        assert_eq!(s.success_rate, Some(0.75));
        assert!((s.robust_accuracy - 0.2).abs() < 1e-12);
        assert!((s.robust_accuracy - s.clean_accuracy * (1.0 - 0.75)).abs() < 1e-12);
        let norms = s.norms.unwrap();
        assert_eq!((norms.count, norms.median, norms.mean), (3, 2.0, 2.0));

        let clean: Vec<bool> = sample().iter().map(|o| o.clean_correct).collect();
        let hit: Vec<bool> = sample().iter().map(|o| o.attack_succeeded).collect();
        assert_eq!(success_rate(&clean, &hit).unwrap(), 0.75);
        assert!((robust_accuracy(&clean, &hit).unwrap() - 0.2).abs() < 1e-12);
    }

    #[test]
    fn per_class_breakdown() {
        let per_class = per_class_attack_summary(&sample(), 4).unwrap();
        assert_eq!(per_class.len(), 4);
        let zero = per_class[0].summary.unwrap();
        assert_eq!((zero.success_rate, zero.robust_accuracy), (Some(0.5), 0.5));
        let one = per_class[1].summary.unwrap();
        assert_eq!((one.clean_accuracy, one.success_rate), (0.5, Some(1.0)));
        assert_eq!(per_class[3].summary, None);
        assert!(matches!(
            per_class_attack_summary(&sample(), 2),
            Err(MetricsError::ClassOutOfRange {
                index: 4,
                class: 2,
                ..
            })
        ));
    }

    #[test]
    fn degenerate_inputs() {
        let none_correct = [outcome(0, false, false, 0.0)];
        let s = AttackSummary::from_outcomes(&none_correct).unwrap();
        assert_eq!(
            (s.success_rate, s.norms, s.robust_accuracy),
            (None, None, 0.0)
        );
        assert!(success_rate(&[false], &[true]).is_err());
        assert!(AttackSummary::from_outcomes(&[]).is_err());
        assert!(matches!(
            AttackSummary::from_outcomes(&[outcome(0, true, true, f64::INFINITY)]),
            Err(MetricsError::NotFinite { .. })
        ));
    }
}
