//! How much CAM moved between two sets of images, summarised over pairs, and the noise
//! control that gives every comparison its floor.

use cam::{class_activation_map, MapScaling, MapStatus, ScaledMaps, Target, Upsampling};
use candle_core::Tensor;
use metrics::{
    centre_of_mass_shift, pearson_correlation, spearman_correlation, ssim, top_k_intersection,
};
use models::CamModel;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};

/// Mean map-change figures over the pairs whose maps were both informative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CamChange {
    /// Pairs measured.
    pub pairs: usize,
    /// Pairs skipped because a map was constant (no ranking, no centre of mass).
    pub skipped: usize,
    /// Mean top-10% intersection (1: the same hottest pixels).
    #[serde(with = "crate::nan::float")]
    pub topk: f64,
    /// Mean Spearman rank correlation.
    #[serde(with = "crate::nan::float")]
    pub spearman: f64,
    /// Mean Pearson correlation.
    #[serde(with = "crate::nan::float")]
    pub pearson: f64,
    /// Mean centre-of-mass shift, in input pixels.
    #[serde(with = "crate::nan::float")]
    pub com_shift: f64,
    /// Mean SSIM (data range 1).
    #[serde(with = "crate::nan::float")]
    pub ssim: f64,
}

/// One pair's figures: top-k intersection, Spearman, Pearson, centre-of-mass shift,
/// SSIM; `None` where a map was constant or a figure undefined.
pub type PairFigures = Option<[f64; 5]>;

impl CamChange {
    /// No pair measured: every mean is NaN (`null` in JSON), not a misleading 0.
    pub fn none() -> Self {
        Self {
            pairs: 0,
            skipped: 0,
            topk: f64::NAN,
            spearman: f64::NAN,
            pearson: f64::NAN,
            com_shift: f64::NAN,
            ssim: f64::NAN,
        }
    }

    /// The means over the pairs `i` with `keep(i)`; pairs without figures are counted
    /// as skipped.
    pub fn over(figures: &[PairFigures], keep: impl Fn(usize) -> bool) -> Self {
        let mut sums = [0.0f64; 5];
        let (mut pairs, mut skipped) = (0usize, 0usize);
        for (_, f) in figures.iter().enumerate().filter(|(i, _)| keep(*i)) {
            match f {
                Some(f) => {
                    pairs += 1;
                    for (s, v) in sums.iter_mut().zip(f) {
                        *s += v;
                    }
                }
                None => skipped += 1,
            }
        }
        if pairs == 0 {
            return Self {
                skipped,
                ..Self::none()
            };
        }
        let n = pairs as f64;
        Self {
            pairs,
            skipped,
            topk: sums[0] / n,
            spearman: sums[1] / n,
            pearson: sums[2] / n,
            com_shift: sums[3] / n,
            ssim: sums[4] / n,
        }
    }

    /// Examples in the population (measured and skipped): the denominator to state.
    pub fn n(&self) -> usize {
        self.pairs + self.skipped
    }
}

/// A Type II attack's map change, like with like: the headline figure over the
/// examples where the attack succeeded, the all-examples figure beside it, and the noise
/// control (the successes' clean images with random noise of each perturbation's L2
/// norm), whose change is the floor any attack's change is read against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapChange {
    /// Over the measured examples where the attack succeeded (at the top level of the
    /// JSON: the figure the report reads first).
    #[serde(flatten)]
    pub successes: CamChange,
    /// Over every measured example, successful or not.
    pub all: CamChange,
    /// The noise control over the same successes.
    pub noise: CamChange,
    /// Mean L2 of the successful perturbations measured.
    #[serde(with = "crate::nan::float")]
    pub attack_l2: f64,
    /// Mean L2 of their noise (equal unless the box allowed less).
    #[serde(with = "crate::nan::float")]
    pub noise_l2: f64,
}

impl MapChange {
    /// Nothing measured.
    pub fn none() -> Self {
        Self {
            successes: CamChange::none(),
            all: CamChange::none(),
            noise: CamChange::none(),
            attack_l2: f64::NAN,
            noise_l2: f64::NAN,
        }
    }
}

/// CAM for the given class per image, upsampled bilinearly to 28 x 28, min-max scaled
/// (the official CAM convention, signed map).
pub fn cam_28<M: CamModel + ?Sized>(
    model: &M,
    images: &Tensor,
    classes: &[usize],
) -> Result<ScaledMaps> {
    let maps = class_activation_map(model, images, &Target::PerImage(classes.to_vec()))?;
    Ok(maps
        .upsampled((28, 28), Upsampling::Bilinear)?
        .scaled(MapScaling::MinMax)?)
}

/// The rows of an `N x 28 x 28` tensor as vectors.
pub fn rows(maps: &Tensor) -> Result<Vec<Vec<f32>>> {
    let n = maps.dim(0).map_err(cam::CamError::from)?;
    let flat = maps
        .reshape((n, ()))
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec2())
        .map_err(cam::CamError::from)?;
    Ok(flat)
}

/// The L2 distance of each image of `a` to the same image of `b` (`N x ...` each).
pub fn l2_distances(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    Ok(rows(&(a - b).map_err(cam::CamError::from)?)?
        .iter()
        .map(|r| r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt())
        .collect())
}

/// The figures of each pair `a[i]`, `b[i]` (both 28 x 28 in [0, 1]).
pub fn pair_figures(a: &ScaledMaps, b: &ScaledMaps) -> Result<Vec<PairFigures>> {
    let (ra, rb) = (rows(&a.maps)?, rows(&b.maps)?);
    if ra.len() != rb.len() {
        return Err(HarnessError::Other("map sets of different sizes".into()));
    }
    let k = 78; // 10 % of 784 pixels
    Ok((0..ra.len())
        .map(|i| {
            if a.statuses[i] != MapStatus::Informative || b.statuses[i] != MapStatus::Informative {
                return None;
            }
            let (x, y) = (&ra[i], &rb[i]);
            (|| -> Result<[f64; 5]> {
                Ok([
                    top_k_intersection(x, y, k)?,
                    spearman_correlation(x, y)?,
                    pearson_correlation(x, y)?,
                    centre_of_mass_shift(x, y, 28, 28)?,
                    ssim(x, y, 28, 28, 1.0)?,
                ])
            })()
            .ok()
        })
        .collect())
}

/// The seed of one example's noise: a hash of the run's seed, the population's name
/// and the example's identity, so the draw does not depend on batch order or threads.
pub fn noise_seed(seed: u64, stream: &str, example: usize) -> u64 {
    // FNV-1a over the three parts, then a SplitMix64 finaliser.
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(stream.bytes())
        .chain((example as u64).to_le_bytes());
    common::seed::finalize(common::seed::fnv1a(bytes))
}

/// `x` plus Gaussian noise (direction drawn from `seed`) scaled so that, after clipping
/// to [0, 1], the change has L2 norm `norm`; where the box does not allow that much,
/// the largest change along the drawn direction. Returns the noised image and the L2
/// norm of the change it carries.
pub fn noise_of_norm(x: &[f32], norm: f64, seed: u64) -> (Vec<f32>, f64) {
    let mut rng = StdRng::seed_from_u64(seed);
    // Box-Muller: independent standard normals.
    let direction: Vec<f64> = (0..x.len())
        .map(|_| {
            let u: f64 = 1.0 - rng.random::<f64>();
            let v: f64 = rng.random::<f64>();
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect();
    let apply = |s: f64| -> Vec<f32> {
        x.iter()
            .zip(&direction)
            .map(|(&p, &d)| (f64::from(p) + s * d).clamp(0.0, 1.0) as f32)
            .collect()
    };
    let change = |y: &[f32]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(&a, &b)| (f64::from(b) - f64::from(a)).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    if norm.is_nan() || norm <= 0.0 {
        return (x.to_vec(), 0.0);
    }
    // The clipped change grows with the scale: bracket `norm`, then bisect.
    let d_norm = direction
        .iter()
        .map(|d| d * d)
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    let (mut lo, mut hi) = (0.0, norm / d_norm);
    let mut doublings = 0;
    while change(&apply(hi)) < norm && doublings < 60 {
        lo = hi;
        hi *= 2.0;
        doublings += 1;
    }
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if change(&apply(mid)) < norm {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let y = apply(hi);
    let achieved = change(&y);
    (y, achieved)
}

/// [`noise_of_norm`] for a batch `N x 1 x 28 x 28`: image `i` gets `norms[i]` and the
/// seed of `examples[i]` in `stream`. Returns the noised batch and the norms achieved.
pub fn noised_batch(
    images: &Tensor,
    norms: &[f64],
    seed: u64,
    stream: &str,
    examples: &[usize],
) -> Result<(Tensor, Vec<f64>)> {
    let pixels = rows(images)?;
    if pixels.len() != norms.len() || pixels.len() != examples.len() {
        return Err(HarnessError::Other(format!(
            "noise control: {} images, {} norms, {} example ids",
            pixels.len(),
            norms.len(),
            examples.len()
        )));
    }
    let mut out = Vec::with_capacity(pixels.len() * 784);
    let mut achieved = Vec::with_capacity(pixels.len());
    for ((p, &norm), &e) in pixels.iter().zip(norms).zip(examples) {
        let (y, a) = noise_of_norm(p, norm, noise_seed(seed, stream, e));
        out.extend(y);
        achieved.push(a);
    }
    Ok((
        Tensor::from_vec(out, images.dims(), images.device())?,
        achieved,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digit() -> Vec<f32> {
        // A bar of ink on a black background: most pixels sit at the box's lower edge.
        (0..784)
            .map(|i| if (300..480).contains(&i) { 0.9 } else { 0.0 })
            .collect()
    }

    fn l2(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn noise_has_the_asked_norm_inside_the_box() {
        let x = digit();
        for (norm, seed) in [(0.5, 1u64), (2.0, 2), (6.3, 3)] {
            let (y, achieved) = noise_of_norm(&x, norm, seed);
            assert!(y.iter().all(|&v| (0.0..=1.0).contains(&v)));
            assert!((l2(&x, &y) - norm).abs() < 1e-4, "{norm}: {}", l2(&x, &y));
            assert!((achieved - norm).abs() < 1e-4);
        }
        // More than the box allows: the largest change along the direction, reported.
        let (y, achieved) = noise_of_norm(&x, 1e3, 4);
        assert!(achieved < 28.0 && (l2(&x, &y) - achieved).abs() < 1e-9);
        assert_eq!(noise_of_norm(&x, 0.0, 5).0, x);
    }

    #[test]
    fn noise_depends_on_the_example_not_the_batch() {
        let x = digit();
        let a = noise_of_norm(&x, 1.0, noise_seed(7, "fgsm", 12)).0;
        let b = noise_of_norm(&x, 1.0, noise_seed(7, "fgsm", 12)).0;
        let c = noise_of_norm(&x, 1.0, noise_seed(7, "fgsm", 13)).0;
        let d = noise_of_norm(&x, 1.0, noise_seed(7, "pgd-l2", 12)).0;
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        let batch = Tensor::from_vec(
            [x.clone(), x.clone()].concat(),
            (2, 1, 28, 28),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        // Example 12 gets the same noise whether it comes first or second.
        let (one, _) = noised_batch(&batch, &[1.0, 1.0], 7, "fgsm", &[12, 40]).unwrap();
        let (two, _) = noised_batch(&batch, &[1.0, 1.0], 7, "fgsm", &[40, 12]).unwrap();
        let (one, two) = (rows(&one).unwrap(), rows(&two).unwrap());
        assert_eq!(one[0], a);
        assert_eq!(two[1], a);
        assert!(noised_batch(&batch, &[1.0], 7, "fgsm", &[1, 2]).is_err());
    }

    #[test]
    fn means_over_a_subset_count_skipped_pairs() {
        let f = vec![
            Some([1.0, 0.5, 0.5, 2.0, 0.4]),
            None,
            Some([0.0, -0.5, 0.1, 4.0, 0.2]),
            Some([0.5, 0.0, 0.0, 0.0, 0.0]),
        ];
        let all = CamChange::over(&f, |_| true);
        assert_eq!((all.pairs, all.skipped, all.n()), (3, 1, 4));
        assert!((all.topk - 0.5).abs() < 1e-12 && (all.com_shift - 2.0).abs() < 1e-12);
        let some = CamChange::over(&f, |i| i == 0 || i == 2);
        assert_eq!((some.pairs, some.skipped), (2, 0));
        assert!((some.spearman - 0.0).abs() < 1e-12 && (some.pearson - 0.3).abs() < 1e-12);
        let none = CamChange::over(&f, |i| i == 1);
        assert_eq!((none.pairs, none.skipped), (0, 1));
        assert!(none.spearman.is_nan());
    }
}
