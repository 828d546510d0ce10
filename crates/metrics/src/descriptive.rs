//! Descriptive statistics of a sample: mean, quantiles with numpy's default (linear)
//! interpolation, and a summary of perturbation norms.

use serde::Serialize;

use crate::error::{ensure_finite, ensure_non_empty, MetricsError, Result};

/// Arithmetic mean of a non-empty, finite sample.
pub fn mean(values: &[f64]) -> Result<f64> {
    ensure_non_empty("sample", values)?;
    ensure_finite("sample", values.iter().copied())?;
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

/// The `q`-quantile (`q` in [0, 1]) of a non-empty, finite sample, interpolated
/// linearly between order statistics as `numpy.quantile(values, q)` does by default
/// (`method="linear"`): with the sample sorted, position `h = (n - 1) q`, result
/// `x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])`.
pub fn quantile(values: &[f64], q: f64) -> Result<f64> {
    Ok(quantiles(values, &[q])?[0])
}

/// Several quantiles of one sample (sorted once); see [`quantile`].
pub fn quantiles(values: &[f64], qs: &[f64]) -> Result<Vec<f64>> {
    ensure_non_empty("sample", values)?;
    ensure_finite("sample", values.iter().copied())?;
    if let Some(&q) = qs.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return Err(MetricsError::InvalidParameter {
            name: "quantile",
            value: q,
            reason: "must lie in [0, 1]",
        });
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(qs.iter().map(|&q| sorted_quantile(&sorted, q)).collect())
}

/// Median (the 0.5 quantile, the mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> Result<f64> {
    quantile(values, 0.5)
}

/// Linear-interpolation quantile of an already sorted, non-empty sample.
fn sorted_quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = h - lo as f64;
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

/// Summary of a sample of perturbation norms (or any non-negative sizes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NormSummary {
    /// Sample size.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// 5% quantile.
    pub q05: f64,
    /// 25% quantile.
    pub q25: f64,
    /// Median.
    pub median: f64,
    /// 75% quantile.
    pub q75: f64,
    /// 95% quantile.
    pub q95: f64,
    /// Largest value.
    pub max: f64,
}

impl NormSummary {
    /// Summarises a non-empty, finite sample; quantiles as [`quantile`].
    pub fn from_values(values: &[f64]) -> Result<Self> {
        let q = quantiles(values, &[0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])?;
        Ok(Self {
            count: values.len(),
            mean: mean(values)?,
            min: q[0],
            q05: q[1],
            q25: q[2],
            median: q[3],
            q75: q[4],
            q95: q[5],
            max: q[6],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        // import numpy as np
        // np.quantile([1, 2, 3, 4, 10], [0.1, 0.25, 0.5, 0.9]) -> [1.4, 2.0, 3.0, 7.6]
        // np.quantile([3, 1, 4, 1, 5, 9, 2, 6], [0.3, 0.5, 1.0]) -> [2.1, 3.5, 9.0]
        let q = quantiles(&[1.0, 2.0, 3.0, 4.0, 10.0], &[0.1, 0.25, 0.5, 0.9]).unwrap();
        for (got, want) in q.iter().zip([1.4, 2.0, 3.0, 7.6]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        let q = quantiles(&[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], &[0.3, 0.5, 1.0]).unwrap();
        for (got, want) in q.iter().zip([2.1, 3.5, 9.0]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert_eq!(median(&[7.0]).unwrap(), 7.0);
    }

    #[test]
    fn summary_and_errors() {
        let s = NormSummary::from_values(&[1.0, 2.0, 3.0, 4.0, 10.0]).unwrap();
        assert_eq!(
            (s.count, s.mean, s.min, s.median, s.max),
            (5, 4.0, 1.0, 3.0, 10.0)
        );
        assert!(matches!(mean(&[]), Err(MetricsError::EmptyInput { .. })));
        assert!(matches!(
            quantile(&[1.0], 1.5),
            Err(MetricsError::InvalidParameter { .. })
        ));
        assert!(matches!(
            quantile(&[1.0, f64::NAN], 0.5),
            Err(MetricsError::NotFinite { index: 1, .. })
        ));
    }

    proptest! {
        #![proptest_config(test_support::seeded(256))]
        #[test]
        fn quantiles_are_monotone_and_bounded(
            values in prop::collection::vec(-1e6f64..1e6, 1..50),
            a in 0.0f64..=1.0,
            b in 0.0f64..=1.0,
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let q = quantiles(&values, &[lo, hi, 0.0, 1.0]).unwrap();
            // One ulp of slack: x[k-1] + 1 * (x[k] - x[k-1]) may round above x[k].
            let slack = 1e-9;
            prop_assert!(q[0] <= q[1] + slack);
            prop_assert!(q[2] <= q[0] + slack && q[1] <= q[3] + slack);
        }
    }
}
