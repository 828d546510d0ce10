//! Whether a map's change gives an attack away: the AUROC of a change score (for instance
//! 1 - Spearman of the clean and the changed map) separating attacked examples from their
//! noise controls (ALGORITHMS.md section 7). It is the Mann-Whitney statistic: the
//! probability that an attacked example scores above a control, ties counted half.

use crate::classification::roc_curve;
use crate::error::{ensure_non_empty, ensure_not_nan, Result};

/// The AUROC of `attacked` (positives) against `control` (negatives).
pub fn detection_auroc(attacked: &[f64], control: &[f64]) -> Result<f64> {
    ensure_non_empty("attacked scores", attacked)?;
    ensure_non_empty("control scores", control)?;
    ensure_not_nan("attacked scores", attacked)?;
    ensure_not_nan("control scores", control)?;
    let scores: Vec<f64> = attacked.iter().chain(control).copied().collect();
    let positives: Vec<bool> = (0..scores.len()).map(|i| i < attacked.len()).collect();
    Ok(roc_curve(&scores, &positives)?.auc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_force(a: &[f64], c: &[f64]) -> f64 {
        let mut wins = 0.0;
        for x in a {
            for y in c {
                wins += if x > y {
                    1.0
                } else if x == y {
                    0.5
                } else {
                    0.0
                };
            }
        }
        wins / (a.len() * c.len()) as f64
    }

    #[test]
    fn identical_sets_give_a_half_and_separated_sets_one_or_zero() {
        let s = [0.1, 0.5, 0.5, 0.9];
        assert!((detection_auroc(&s, &s).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(detection_auroc(&[2.0, 3.0], &[0.0, 1.0]).unwrap(), 1.0);
        assert_eq!(detection_auroc(&[0.0, 1.0], &[2.0, 3.0]).unwrap(), 0.0);
        assert!(detection_auroc(&[], &[1.0]).is_err());
        assert!(detection_auroc(&[f64::NAN], &[1.0]).is_err());
    }

    proptest! {
        #![proptest_config(test_support::seeded(256))]
        #[test]
        fn the_auroc_is_the_pair_count_with_ties_half(
            a in prop::collection::vec(0u8..6, 1..20),
            c in prop::collection::vec(0u8..6, 1..20),
        ) {
            let a: Vec<f64> = a.into_iter().map(f64::from).collect();
            let c: Vec<f64> = c.into_iter().map(f64::from).collect();
            let got = detection_auroc(&a, &c).unwrap();
            prop_assert!((got - brute_force(&a, &c)).abs() < 1e-12, "{} vs {}", got, brute_force(&a, &c));
        }
    }
}
