//! The ROC curve over all thresholds, as scikit-learn's `roc_curve` with
//! `drop_intermediate=False`, and the area under a curve by the trapezoid rule.

use serde::Serialize;

use crate::error::{ensure_non_empty, ensure_not_nan, ensure_same_len, MetricsError, Result};

/// A ROC curve: point `i` is the (FPR, TPR) of the rule "positive iff
/// `score >= thresholds[i]`".
///
/// Point 0 is (0, 0) with threshold `+inf`; then one point per distinct score, in
/// decreasing order of score, so `fpr` and `tpr` are non-decreasing and end at (1, 1).
/// (serde_json writes the infinite threshold as `null`.)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RocCurve {
    /// False positive rates.
    pub fpr: Vec<f64>,
    /// True positive rates.
    pub tpr: Vec<f64>,
    /// Decreasing thresholds, the first one `+inf`.
    pub thresholds: Vec<f64>,
}

impl RocCurve {
    /// Area under the curve by the trapezoid rule (ties between a positive and a
    /// negative count 1/2, as in the Mann–Whitney U statistic).
    pub fn auc(&self) -> f64 {
        trapezoid(&self.fpr, &self.tpr)
    }
}

/// The ROC curve of `scores` (higher = more positive) against `positives`.
///
/// Ties are handled as scikit-learn does: examples sharing a score enter the curve
/// together, as one point. Fails on empty or mismatched input, NaN scores, and on
/// labels without positives ([`MetricsError::NoPositives`]) or without negatives
/// ([`MetricsError::NoNegatives`]).
pub fn roc_curve(scores: &[f64], positives: &[bool]) -> Result<RocCurve> {
    ensure_non_empty("scores", scores)?;
    ensure_same_len("scores", scores, "labels", positives)?;
    ensure_not_nan("scores", scores)?;
    let n_pos = positives.iter().filter(|&&p| p).count();
    let n_neg = positives.len() - n_pos;
    if n_pos == 0 {
        return Err(MetricsError::NoPositives);
    }
    if n_neg == 0 {
        return Err(MetricsError::NoNegatives);
    }

    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));

    let mut fpr = vec![0.0];
    let mut tpr = vec![0.0];
    let mut thresholds = vec![f64::INFINITY];
    let (mut tp, mut fp) = (0usize, 0usize);
    for (rank, &i) in order.iter().enumerate() {
        if positives[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        // Emit a point at the last example of each run of equal scores.
        let last_of_run = order
            .get(rank + 1)
            .is_none_or(|&next| scores[next] != scores[i]);
        if last_of_run {
            fpr.push(fp as f64 / n_neg as f64);
            tpr.push(tp as f64 / n_pos as f64);
            thresholds.push(scores[i]);
        }
    }
    Ok(RocCurve {
        fpr,
        tpr,
        thresholds,
    })
}

/// Area under the piecewise-linear curve through `(x[i], y[i])` by the trapezoid rule,
/// as scikit-learn's `auc`: `x` must be monotonic (non-decreasing, or non-increasing,
/// in which case the sign is flipped so the area is positive for positive `y`).
pub fn auc(x: &[f64], y: &[f64]) -> Result<f64> {
    ensure_same_len("x", x, "y", y)?;
    if x.len() < 2 {
        return Err(MetricsError::TooFewSamples {
            what: "the trapezoid rule",
            needed: 2,
            got: x.len(),
        });
    }
    ensure_not_nan("x", x)?;
    ensure_not_nan("y", y)?;
    let increasing = x.windows(2).all(|w| w[0] <= w[1]);
    let decreasing = x.windows(2).all(|w| w[0] >= w[1]);
    if !increasing && !decreasing {
        let index = x.windows(2).position(|w| w[1] < w[0]).map_or(0, |i| i + 1);
        return Err(MetricsError::NotMonotonic { index });
    }
    let area = trapezoid(x, y);
    Ok(if increasing { area } else { -area })
}

/// Signed trapezoid sum over consecutive points.
fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) / 2.0)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_scikit_learn_on_a_fixed_example() {
        // from sklearn.metrics import roc_curve, auc
        // y = [0, 0, 1, 1]; s = [0.1, 0.4, 0.35, 0.8]
        // fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
        // fpr = [0, 0, 0.5, 0.5, 1], tpr = [0, 0.5, 0.5, 1, 1],
        // thr = [inf, 0.8, 0.4, 0.35, 0.1], auc(fpr, tpr) = 0.75
        // By hand: descending 0.8(+) 0.4(-) 0.35(+) 0.1(-) gives cumulative
        // (TP, FP) = (1,0) (1,1) (2,1) (2,2); divided by 2 and 2.
        let labels = [false, false, true, true];
        let scores = [0.1, 0.4, 0.35, 0.8];
        let roc = roc_curve(&scores, &labels).unwrap();
        assert_eq!(roc.fpr, [0.0, 0.0, 0.5, 0.5, 1.0]);
        assert_eq!(roc.tpr, [0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(roc.thresholds, [f64::INFINITY, 0.8, 0.4, 0.35, 0.1]);
        assert_eq!(roc.auc(), 0.75);
        assert_eq!(auc(&roc.fpr, &roc.tpr).unwrap(), 0.75);
    }

    #[test]
    fn ties_make_one_point() {
        // All four examples tie: the curve jumps straight from (0,0) to (1,1), AUC 1/2.
        let roc = roc_curve(&[0.5; 4], &[true, false, true, false]).unwrap();
        assert_eq!(roc.fpr, [0.0, 1.0]);
        assert_eq!(roc.tpr, [0.0, 1.0]);
        assert_eq!(roc.auc(), 0.5);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            roc_curve(&[0.1, 0.2], &[true, true]),
            Err(MetricsError::NoNegatives)
        );
        assert_eq!(
            roc_curve(&[0.1, 0.2], &[false, false]),
            Err(MetricsError::NoPositives)
        );
        assert!(matches!(
            roc_curve(&[], &[]),
            Err(MetricsError::EmptyInput { .. })
        ));
        assert!(matches!(
            roc_curve(&[0.1], &[true, false]),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            roc_curve(&[0.1, f64::NAN], &[true, false]),
            Err(MetricsError::NotFinite { index: 1, .. })
        ));
        assert_eq!(
            auc(&[0.0, 1.0, 0.5], &[0.0, 1.0, 1.0]),
            Err(MetricsError::NotMonotonic { index: 2 })
        );
        assert_eq!(auc(&[1.0, 0.0], &[1.0, 1.0]), Ok(1.0));
    }

    /// Scores from a small set of values, so that ties are frequent, with both classes present.
    fn scored_labels() -> impl Strategy<Value = (Vec<f64>, Vec<bool>)> {
        prop::collection::vec((0u8..6, any::<bool>()), 2..40)
            .prop_map(|pairs| {
                let scores = pairs.iter().map(|&(s, _)| f64::from(s) / 5.0).collect();
                let labels = pairs.iter().map(|&(_, l)| l).collect();
                (scores, labels)
            })
            .prop_filter("both classes", |(_, labels): &(Vec<f64>, Vec<bool>)| {
                labels.iter().any(|&l| l) && labels.iter().any(|&l| !l)
            })
    }

    proptest! {
        #![proptest_config(test_support::seeded(256))]
        #[test]
        fn roc_agrees_with_brute_force((scores, labels) in scored_labels()) {
            let roc = roc_curve(&scores, &labels).unwrap();
            let mut distinct = scores.clone();
            distinct.sort_by(|a, b| b.total_cmp(a));
            distinct.dedup();
            let n_pos = labels.iter().filter(|&&l| l).count() as f64;
            let n_neg = labels.len() as f64 - n_pos;
            prop_assert_eq!(roc.thresholds.len(), distinct.len() + 1);
            prop_assert_eq!((roc.fpr[0], roc.tpr[0]), (0.0, 0.0));
            for (k, &t) in distinct.iter().enumerate() {
                let above = |want: bool| {
                    scores.iter().zip(&labels).filter(|&(&s, &l)| s >= t && l == want).count()
                        as f64
                };
                prop_assert_eq!(roc.thresholds[k + 1], t);
                prop_assert!((roc.tpr[k + 1] - above(true) / n_pos).abs() < 1e-12);
                prop_assert!((roc.fpr[k + 1] - above(false) / n_neg).abs() < 1e-12);
            }
        }

        #[test]
        fn auc_is_the_mann_whitney_statistic((scores, labels) in scored_labels()) {
            let roc = roc_curve(&scores, &labels).unwrap();
            let mut u = 0.0;
            let (mut n_pos, mut n_neg) = (0.0, 0.0);
            for (&sp, &lp) in scores.iter().zip(&labels) {
                if !lp {
                    n_neg += 1.0;
                    continue;
                }
                n_pos += 1.0;
                for (&sn, _) in scores.iter().zip(&labels).filter(|&(_, &l)| !l) {
                    u += if sp > sn { 1.0 } else if sp == sn { 0.5 } else { 0.0 };
                }
            }
            prop_assert!((roc.auc() - u / (n_pos * n_neg)).abs() < 1e-12);
        }
    }
}
