//! How much a saliency map (CAM) changed between two inputs: top-k intersection,
//! Spearman and Pearson correlation, centre-of-mass shift (Ghorbani et al. 2019).
//! SSIM lives in [`crate::ssim`].
//!
//! Maps are `&[f32]` (as they come out of a tensor), row-major `height x width`
//! where a shape matters; all arithmetic is in f64. NaN or infinite values are
//! rejected with [`MetricsError::NotFinite`].

use serde::Serialize;

use crate::error::{
    check_shape, ensure_finite, ensure_non_empty, ensure_same_len, MetricsError, Result,
};

/// Checks that two maps are non-empty, of equal length and finite.
fn check_pair(a: &[f32], b: &[f32]) -> Result<()> {
    ensure_non_empty("first map", a)?;
    ensure_same_len("first map", a, "second map", b)?;
    ensure_finite("first map", a.iter().map(|&v| f64::from(v)))?;
    ensure_finite("second map", b.iter().map(|&v| f64::from(v)))
}

/// Indices of the `k` largest values, ties broken by the smaller index first.
fn top_k_indices(map: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..map.len()).collect();
    // partial_cmp, not total_cmp: -0.0 and 0.0 tie (maps are NaN-free here).
    order.sort_by(|&i, &j| {
        map[j]
            .partial_cmp(&map[i])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(i.cmp(&j))
    });
    order.truncate(k);
    order
}

/// `|topk(a) ∩ topk(b)| / k`: the share of the `k` most salient pixels the two maps
/// have in common. Ties are broken by pixel index (lower index first), so the result
/// is deterministic. `k` must lie in `1..=len`; about 10% of the pixels is usual.
pub fn top_k_intersection(a: &[f32], b: &[f32], k: usize) -> Result<f64> {
    check_pair(a, b)?;
    if k == 0 || k > a.len() {
        return Err(MetricsError::InvalidParameter {
            name: "k",
            value: k as f64,
            reason: "must lie in 1..=map length",
        });
    }
    let mut in_a = vec![false; a.len()];
    for i in top_k_indices(a, k) {
        in_a[i] = true;
    }
    let common = top_k_indices(b, k).into_iter().filter(|&i| in_a[i]).count();
    Ok(common as f64 / k as f64)
}

/// Pearson correlation of two maps.
///
/// A constant map has no defined correlation: this returns
/// [`MetricsError::ConstantMap`] naming it (never NaN).
pub fn pearson_correlation(a: &[f32], b: &[f32]) -> Result<f64> {
    check_pair(a, b)?;
    let x: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    let y: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
    pearson_f64(&x, &y, "first map", "second map")
}

/// Spearman rank correlation: Pearson correlation of the ranks, tied values sharing
/// their average rank (as `scipy.stats.spearmanr`). A constant map returns
/// [`MetricsError::ConstantMap`].
pub fn spearman_correlation(a: &[f32], b: &[f32]) -> Result<f64> {
    check_pair(a, b)?;
    pearson_f64(
        &average_ranks(a),
        &average_ranks(b),
        "first map",
        "second map",
    )
}

/// Ranks `1..=n` of the values, ties given the mean of the ranks they span.
fn average_ranks(values: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold equal values: ranks start+1 ..= end, mean below.
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Pearson correlation of two finite f64 vectors of equal, non-zero length.
fn pearson_f64(x: &[f64], y: &[f64], x_name: &'static str, y_name: &'static str) -> Result<f64> {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&xi, &yi) in x.iter().zip(y) {
        let (dx, dy) = (xi - mx, yi - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return Err(MetricsError::ConstantMap { which: x_name });
    }
    if syy == 0.0 {
        return Err(MetricsError::ConstantMap { which: y_name });
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// A position on the pixel grid, in pixel units (row 0, column 0 is the first pixel's centre).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PixelPoint {
    /// Row coordinate (down).
    pub row: f64,
    /// Column coordinate (right).
    pub col: f64,
}

/// Centre of mass of a row-major `height x width` map, the map's values being the
/// masses. Negative values are clipped to 0 first (a signed map's negative evidence
/// is not "where the map looks"); a map with no positive mass returns
/// [`MetricsError::ZeroMass`].
pub fn centre_of_mass(map: &[f32], height: usize, width: usize) -> Result<PixelPoint> {
    centre_of_mass_named(map, height, width, "map")
}

fn centre_of_mass_named(
    map: &[f32],
    height: usize,
    width: usize,
    which: &'static str,
) -> Result<PixelPoint> {
    check_shape(map, height, width, which)?;
    ensure_finite(which, map.iter().map(|&v| f64::from(v)))?;
    let (mut mass, mut row, mut col) = (0.0, 0.0, 0.0);
    for (i, &v) in map.iter().enumerate() {
        let m = f64::from(v).max(0.0);
        mass += m;
        row += m * (i / width) as f64;
        col += m * (i % width) as f64;
    }
    if mass <= 0.0 {
        return Err(MetricsError::ZeroMass { which });
    }
    Ok(PixelPoint {
        row: row / mass,
        col: col / mass,
    })
}

/// Euclidean distance, in pixels, between the centres of mass of two `height x width`
/// maps (see [`centre_of_mass`] for the clipping convention).
pub fn centre_of_mass_shift(a: &[f32], b: &[f32], height: usize, width: usize) -> Result<f64> {
    let pa = centre_of_mass_named(a, height, width, "first map")?;
    let pb = centre_of_mass_named(b, height, width, "second map")?;
    Ok((pa.row - pb.row).hypot(pa.col - pb.col))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_examples() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [4.0, 3.0, 2.0, 1.0];
        assert_eq!(top_k_intersection(&a, &b, 2).unwrap(), 0.0);
        assert_eq!(top_k_intersection(&a, &b, 4).unwrap(), 1.0);
        // Ties: all equal, so the top 2 are pixels 0 and 1 in both maps.
        assert_eq!(
            top_k_intersection(&[0.0; 4], &[1.0, 1.0, 0.0, 0.0], 2).unwrap(),
            1.0
        );
        assert!((spearman_correlation(&a, &b).unwrap() + 1.0).abs() < 1e-12);
        assert!((pearson_correlation(&a, &b).unwrap() + 1.0).abs() < 1e-12);
        // scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]) -> 0.9486832980505138
        let rho = spearman_correlation(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!((rho - 0.948_683_298_050_513_8).abs() < 1e-12);
        assert_eq!(average_ranks(&[5.0, 1.0, 5.0, 3.0]), [3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn centre_of_mass_clips_negatives() {
        // 2 x 3 map: all mass in the right column, the negative value ignored.
        let map = [0.0, -5.0, 1.0, 0.0, 0.0, 1.0];
        let c = centre_of_mass(&map, 2, 3).unwrap();
        assert_eq!((c.row, c.col), (0.5, 2.0));
        let left = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        assert_eq!(centre_of_mass_shift(&map, &left, 2, 3).unwrap(), 2.0);
    }

    #[test]
    fn errors() {
        assert_eq!(
            pearson_correlation(&[1.0, 2.0], &[3.0, 3.0]),
            Err(MetricsError::ConstantMap {
                which: "second map"
            })
        );
        assert!(matches!(
            spearman_correlation(&[1.0, 1.0], &[1.0, 2.0]),
            Err(MetricsError::ConstantMap { which: "first map" })
        ));
        assert_eq!(
            centre_of_mass(&[-1.0, 0.0], 1, 2),
            Err(MetricsError::ZeroMass { which: "map" })
        );
        assert!(matches!(
            centre_of_mass(&[1.0, 0.0], 2, 2),
            Err(MetricsError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            top_k_intersection(&[1.0], &[1.0], 2),
            Err(MetricsError::InvalidParameter { .. })
        ));
        assert!(matches!(
            pearson_correlation(&[1.0, f32::NAN], &[1.0, 2.0]),
            Err(MetricsError::NotFinite { index: 1, .. })
        ));
        assert!(matches!(
            top_k_intersection(&[1.0], &[1.0, 2.0], 1),
            Err(MetricsError::LengthMismatch { .. })
        ));
    }

    /// Pearson's r from exact integer sums,
    /// `(n Sxy - Sx Sy) / sqrt((n Sxx - Sx^2) (n Syy - Sy^2))` (one pass, no centring: a
    /// different route from the two-pass code); `None` for a constant vector.
    fn exact_pearson(x: &[i64], y: &[i64]) -> Option<f64> {
        let n = x.len() as i128;
        let (sx, sy): (i128, i128) = (
            x.iter().map(|&v| i128::from(v)).sum(),
            y.iter().map(|&v| i128::from(v)).sum(),
        );
        let dot = |u: &[i64], v: &[i64]| -> i128 {
            u.iter()
                .zip(v)
                .map(|(&a, &b)| i128::from(a) * i128::from(b))
                .sum()
        };
        let cov = n * dot(x, y) - sx * sy;
        let vx = n * dot(x, x) - sx * sx;
        let vy = n * dot(y, y) - sy * sy;
        if vx == 0 || vy == 0 {
            return None;
        }
        // Both variances are exact integers; one square root of their exact product.
        Some(cov as f64 / ((vx as f64) * (vy as f64)).sqrt())
    }

    fn map() -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(-50i32..50, 2..100)
            .prop_map(|v| v.into_iter().map(|x| x as f32).collect())
    }

    proptest! {
        #![proptest_config(test_support::seeded(256))]
        #[test]
        fn a_map_against_itself(m in map(), k in 1usize..100) {
            let k = k.min(m.len());
            prop_assert_eq!(top_k_intersection(&m, &m, k).unwrap(), 1.0);
            if m.iter().any(|&v| v > 0.0) {
                prop_assert_eq!(centre_of_mass_shift(&m, &m, 1, m.len()).unwrap(), 0.0);
            }
        }

        #[test]
        fn spearman_is_one_under_increasing_transforms(m in map()) {
            prop_assume!(m.iter().any(|&v| v != m[0]));
            // Exact in f32 for these integers, and strictly increasing.
            let cubed: Vec<f32> = m.iter().map(|&x| x * x * x + 3.0 * x).collect();
            prop_assert!((spearman_correlation(&m, &cubed).unwrap() - 1.0).abs() < 1e-12);
        }

        #[test]
        fn pearson_is_one_under_positive_affine_maps(
            m in prop::collection::vec(-1.0f32..1.0, 2..100),
            scale in 0.1f32..10.0,
            shift in -5.0f32..5.0,
        ) {
            // A spread well above f32 rounding of the shifted values.
            let lo = m.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            prop_assume!(hi - lo > 0.5);
            let t: Vec<f32> = m.iter().map(|&x| scale * x + shift).collect();
            prop_assert!((pearson_correlation(&m, &t).unwrap() - 1.0).abs() < 1e-5);
        }

        #[test]
        fn correlations_match_an_exact_integer_computation(a in map(), b in map()) {
            let n = a.len().min(b.len());
            let (a, b) = (&a[..n], &b[..n]);
            let ints = |m: &[f32]| m.iter().map(|&v| v as i64).collect::<Vec<i64>>();
            let (x, y) = (ints(a), ints(b));
            let r = pearson_correlation(a, b);
            match exact_pearson(&x, &y) {
                // Exact up to the final division and square roots: the clamp to
                // [-1, 1] can hide nothing here.
                Some(expected) => {
                    let r = r.unwrap();
                    prop_assert!((r - expected).abs() < 1e-12, "{} vs {}", r, expected);
                    prop_assert!(expected.abs() <= 1.0 + 1e-15);
                    // Symmetric, and odd under negation of one map.
                    prop_assert_eq!(pearson_correlation(b, a).unwrap(), r);
                    let neg: Vec<f32> = b.iter().map(|&v| -v).collect();
                    prop_assert!((pearson_correlation(a, &neg).unwrap() + r).abs() < 1e-12);
                }
                None => prop_assert!(
                    matches!(r, Err(MetricsError::ConstantMap { .. })),
                    "a constant map gave {:?}",
                    r
                ),
            }
            // Spearman: Pearson of ranks computed independently, by counting (twice the
            // average rank is an integer: 2 * #smaller + #equal + 1).
            let doubled_ranks = |v: &[i64]| {
                v.iter()
                    .map(|&vi| {
                        let smaller = v.iter().filter(|&&w| w < vi).count() as i64;
                        let equal = v.iter().filter(|&&w| w == vi).count() as i64;
                        2 * smaller + equal + 1
                    })
                    .collect::<Vec<i64>>()
            };
            let rho = spearman_correlation(a, b);
            match exact_pearson(&doubled_ranks(&x), &doubled_ranks(&y)) {
                Some(expected) => {
                    let rho = rho.unwrap();
                    prop_assert!((rho - expected).abs() < 1e-12, "{} vs {}", rho, expected);
                }
                None => prop_assert!(
                    matches!(rho, Err(MetricsError::ConstantMap { .. })),
                    "a constant map gave {:?}",
                    rho
                ),
            }
        }

        #[test]
        fn pearson_is_plus_or_minus_one_on_exact_lines(
            m in map(),
            scale in prop_oneof![-7i32..0, 1i32..8],
            shift in -20i32..20,
        ) {
            prop_assume!(m.iter().any(|&v| v != m[0]));
            // Integer arithmetic: the line is exact in f32.
            let t: Vec<f32> = m.iter().map(|&x| scale as f32 * x + shift as f32).collect();
            let r = pearson_correlation(&m, &t).unwrap();
            prop_assert!((r - f64::from(scale.signum())).abs() < 1e-12, "{}", r);
        }

        #[test]
        fn pearson_is_invariant_under_affine_maps_of_either_map(
            a in map(),
            b in map(),
            scale in prop_oneof![-5i32..0, 1i32..6],
            shift in -30i32..30,
        ) {
            let n = a.len().min(b.len());
            let (a, b) = (&a[..n], &b[..n]);
            let r = pearson_correlation(a, b);
            prop_assume!(r.is_ok());
            let r = r.unwrap();
            let t: Vec<f32> = b.iter().map(|&x| scale as f32 * x + shift as f32).collect();
            let expected = f64::from(scale.signum()) * r;
            prop_assert!((pearson_correlation(a, &t).unwrap() - expected).abs() < 1e-12);
        }
    }
}
