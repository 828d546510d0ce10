//! Which explanation is the most robust in the study's sense, from the league's numbers:
//! it notices the digit change under Type I (its change separates the Type I examples
//! from their noise controls: the Type I detection AUROC, high), it follows the decision
//! under Type II (the mean detection AUROC over the Type II attacks, high), and it stays
//! put under label-preserving noise (Max-Sensitivity, low). Each criterion ranks the
//! methods (1 = best; values equal to the 3 decimals the report prints tie and share the
//! better rank, so float noise between methods that coincide, CAM, Grad-CAM and HiResCAM
//! on a GAP-linear head, orders nothing; an undefined value ranks last); the verdict is
//! the lowest mean rank. Faithfulness (deletion / insertion) is reported
//! beside it, not folded in: a faithful map and a robust one are different claims.

use serde::{Deserialize, Serialize};

/// One method's criteria and its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    /// The method.
    pub method: String,
    /// Mean of its three ranks (1 = best on every criterion).
    pub mean_rank: f64,
    /// Type I detection AUROC (higher: notices the digit change).
    #[serde(with = "crate::nan::float")]
    pub type1_auroc: f64,
    /// Mean Type II detection AUROC over the league's attacks (higher: follows the
    /// decision).
    #[serde(with = "crate::nan::float")]
    pub type2_auroc: f64,
    /// Mean Max-Sensitivity over the clean images (lower: stays put under noise).
    #[serde(with = "crate::nan::float")]
    pub max_sensitivity: f64,
}

/// The ranking, best first, and the winner (none without methods).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The best method by mean rank (the first of `ranking`).
    pub most_robust: Option<String>,
    /// Every method, best first (ties: the order given).
    pub ranking: Vec<Ranked>,
    /// The criteria, in words.
    pub criteria: String,
}

/// Competition ranks of `values` rounded to 3 decimals (1 = best; `higher` says which way
/// is better; NaN last).
fn ranks(values: &[f64], higher: bool) -> Vec<f64> {
    let values: Vec<f64> = values.iter().map(|v| (v * 1e3).round() / 1e3).collect();
    values
        .iter()
        .map(|&v| {
            if v.is_nan() {
                return (values.iter().filter(|w| !w.is_nan()).count() + 1) as f64;
            }
            let better = values
                .iter()
                .filter(|&&w| !w.is_nan() && if higher { w > v } else { w < v })
                .count();
            (better + 1) as f64
        })
        .collect()
}

/// The verdict over `(method, type1_auroc, type2_auroc, max_sensitivity)` rows.
pub fn verdict(rows: &[(String, f64, f64, f64)]) -> Verdict {
    let r1 = ranks(&rows.iter().map(|r| r.1).collect::<Vec<_>>(), true);
    let r2 = ranks(&rows.iter().map(|r| r.2).collect::<Vec<_>>(), true);
    let r3 = ranks(&rows.iter().map(|r| r.3).collect::<Vec<_>>(), false);
    let mut ranking: Vec<Ranked> = rows
        .iter()
        .enumerate()
        .map(|(i, (method, a, b, c))| Ranked {
            method: method.clone(),
            mean_rank: (r1[i] + r2[i] + r3[i]) / 3.0,
            type1_auroc: *a,
            type2_auroc: *b,
            max_sensitivity: *c,
        })
        .collect();
    // A stable sort: equal mean ranks keep the order given.
    ranking.sort_by(|a, b| a.mean_rank.total_cmp(&b.mean_rank));
    Verdict {
        most_robust: ranking.first().map(|r| r.method.clone()),
        ranking,
        criteria: "mean of three ranks: Type I detection AUROC (high), mean Type II detection \
                   AUROC (high), Max-Sensitivity under label-preserving noise (low)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties_and_put_undefined_last() {
        assert_eq!(
            ranks(&[0.5, 0.9, 0.5, f64::NAN], true),
            [2.0, 1.0, 2.0, 4.0]
        );
        assert_eq!(ranks(&[0.5, 0.9, 0.1], false), [2.0, 3.0, 1.0]);
        // Equal to the printed precision: a tie, whatever the float noise.
        assert_eq!(ranks(&[0.8821, 0.88209999, 0.9], true), [2.0, 2.0, 1.0]);
    }

    #[test]
    fn the_verdict_is_the_lowest_mean_rank() {
        let rows = vec![
            // Best at noticing Type I, worst under noise.
            ("a".to_string(), 0.95, 0.70, 0.9),
            // Second on every criterion.
            ("b".to_string(), 0.90, 0.80, 0.2),
            // Worst at noticing Type I, best at the other two.
            ("c".to_string(), 0.60, 0.90, 0.1),
        ];
        let v = verdict(&rows);
        // a: ranks 1, 3, 3 -> 7/3; b: 2, 2, 2 -> 2; c: 3, 1, 1 -> 5/3.
        let order: Vec<&str> = v.ranking.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(order, ["c", "b", "a"]);
        assert_eq!(v.most_robust.as_deref(), Some("c"));
        assert!((v.ranking[0].mean_rank - 5.0 / 3.0).abs() < 1e-12);
        assert!(verdict(&[]).most_robust.is_none());
    }
}
