//! The batched drivers of the explanation metrics: each runs one explainer (and f1) over
//! a population, a batch at a time, and reduces per example with the `metrics` crate's
//! plain-slice functions (ALGORITHMS.md section 12).

use std::collections::HashMap;

use cam::{scale_maps, Explainer, MapScaling, Resolution, Target, Upsampling};
use candle_core::{DType, Tensor};
use metrics::{
    curve_auc, importance_order, linf_ball_noise, local_lipschitz_estimate, max_sensitivity,
    step_image, steps, PixelCurve,
};
use models::Classifier;

use crate::cam_change::{pair_figures, rows, PairFigures};
use crate::error::Result;
use crate::stages::softmax_rows;

/// Two figures per example (`None`: undefined for that example).
pub type TwoPerExample = (Vec<Option<f64>>, Vec<Option<f64>>);

/// Signed maps of `images` (`N x 1 x 28 x 28`) for `classes[i]`, at 28 x 28 (a map on
/// the feature grid upsampled bilinearly, CAM's convention), `N x 28 x 28`, explained
/// `batch` images at a time (an image's map does not depend on the other images of its
/// batch).
///
/// A row that repeats an earlier one (the same pixels, bit for bit, and the same class)
/// takes that row's map instead of being explained again: a Type I population holds
/// each clean image and its reconstruction once per target class reached.
pub fn maps_28(
    method: &dyn Explainer,
    images: &Tensor,
    classes: &[usize],
    batch: usize,
) -> Result<Tensor> {
    let n = images.dim(0)?;
    if n == 0 {
        return Ok(Tensor::zeros((0, 28, 28), DType::F32, images.device())?);
    }
    // Only the distinct rows are explained; `place` spreads their maps back.
    let (distinct, place) = distinct_rows(&rows(images)?, classes);
    let select = |picked: &[usize]| -> Result<Tensor> {
        let idx: Vec<u32> = picked.iter().map(|&r| r as u32).collect();
        Ok(Tensor::from_vec(idx, picked.len(), images.device())?)
    };
    let repeats = distinct.len() < n;
    let (images, classes) = if repeats {
        let classes: Vec<usize> = distinct.iter().map(|&r| classes[r]).collect();
        (images.index_select(&select(&distinct)?, 0)?, classes)
    } else {
        (images.clone(), classes.to_vec())
    };
    let m = images.dim(0)?;
    let mut parts = Vec::new();
    for start in (0..m).step_by(batch.max(1)) {
        let len = batch.max(1).min(m - start);
        let chunk = images.narrow(0, start, len)?;
        let target = Target::PerImage(classes[start..start + len].to_vec());
        let maps = method.explain(&chunk, &target)?;
        let maps = match method.resolution() {
            Resolution::Features => maps.upsampled((28, 28), Upsampling::Bilinear)?,
            Resolution::Input => maps,
        };
        parts.push(maps.maps.to_dtype(DType::F32)?.reshape((len, 28, 28))?);
    }
    let maps = Tensor::cat(&parts, 0)?;
    if repeats {
        return Ok(maps.index_select(&select(&place)?, 0)?);
    }
    Ok(maps)
}

/// Maps already computed, by the bits of the image and the class explained: the clean
/// test images recur from one league unit to the next (each attack's successes start
/// from the same first test images, and the clean unit explains them again). A map does
/// not depend on the batch it was computed in, so taking it from here changes no bit;
/// only clean test images go in, so the cache stays within the league's populations
/// (`league_successes`, `league_images`), whatever the dataset.
#[derive(Debug, Default)]
pub struct MapCache {
    maps: HashMap<RowKey, Vec<f32>>,
}

/// An image's pixels, by their bits, and the class explained.
type RowKey = (Vec<u32>, usize);

fn row_key(pixels: &[f32], class: usize) -> RowKey {
    (pixels.iter().map(|v| v.to_bits()).collect(), class)
}

/// [`maps_28`] through `cache`: rows whose (pixels, class) it holds take that map, the
/// others are explained (together, `batch` at a time) and added to it.
pub fn maps_28_cached(
    method: &dyn Explainer,
    images: &Tensor,
    classes: &[usize],
    batch: usize,
    cache: &mut MapCache,
) -> Result<Tensor> {
    let n = images.dim(0)?;
    let keys: Vec<RowKey> = rows(images)?
        .iter()
        .zip(classes)
        .map(|(p, &c)| row_key(p, c))
        .collect();
    let missing: Vec<usize> = (0..n)
        .filter(|&r| !cache.maps.contains_key(&keys[r]))
        .collect();
    if !missing.is_empty() {
        let idx: Vec<u32> = missing.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_vec(idx, missing.len(), images.device())?;
        let picked: Vec<usize> = missing.iter().map(|&r| classes[r]).collect();
        let computed = rows(&maps_28(
            method,
            &images.index_select(&idx, 0)?,
            &picked,
            batch,
        )?)?;
        for (&r, map) in missing.iter().zip(computed) {
            cache.maps.insert(keys[r].clone(), map);
        }
    }
    let maps: Vec<f32> = keys
        .iter()
        .flat_map(|k| cache.maps[k].iter().copied())
        .collect();
    Ok(Tensor::from_vec(maps, (n, 28, 28), images.device())?)
}

/// The first row of each distinct (pixels, class) pair, in row order, and each row's
/// place among them. Pixels compare by their bits.
fn distinct_rows(pixels: &[Vec<f32>], classes: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut seen: HashMap<RowKey, usize> = HashMap::new();
    let mut distinct = Vec::new();
    let place = pixels
        .iter()
        .zip(classes)
        .enumerate()
        .map(|(r, (p, &c))| {
            *seen.entry(row_key(p, c)).or_insert_with(|| {
                distinct.push(r);
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, place)
}

/// The section-7 figures of each pair (`a[i]`, `b[i]`) of 28 x 28 signed maps, both
/// min-max scaled first (the study's CAM convention); `None` where a map is constant.
pub fn change_figures(a: &Tensor, b: &Tensor) -> Result<Vec<PairFigures>> {
    if a.dim(0)? == 0 {
        return Ok(Vec::new());
    }
    pair_figures(
        &scale_maps(a, MapScaling::MinMax)?,
        &scale_maps(b, MapScaling::MinMax)?,
    )
}

/// A pair's change score for detection: 1 - Spearman (0: the same ranking), `None`
/// without figures.
pub fn change_scores(figures: &[PairFigures]) -> Vec<f64> {
    figures.iter().flatten().map(|f| 1.0 - f[1]).collect()
}

/// Max-Sensitivity and the Local Lipschitz Estimate of each image (`base[i]` its map from
/// [`maps_28`]), from `samples` noisy
/// copies uniform in the Linf ball of `radius` (clipped to [0, 1], drawn from `seed` and
/// the image's id `ids[i]`); a copy counts only where f1's class stays `classes[i]`.
/// Max-Sensitivity is taken on the raw maps (relative to the map's own norm, so a method's
/// units cancel); the Lipschitz estimate on maps divided by their largest magnitude
/// (Quantus' `normalise_by_max`), so methods of different units compare. `None`: no copy
/// kept its label, or the map is zero.
#[allow(clippy::too_many_arguments)]
pub fn noise_robustness(
    method: &dyn Explainer,
    f1: &dyn Classifier,
    images: &Tensor,
    base: &[Vec<f32>],
    ids: &[usize],
    classes: &[usize],
    radius: f64,
    samples: usize,
    seed: u64,
    batch: usize,
) -> Result<TwoPerExample> {
    let n = images.dim(0)?;
    let pixels = rows(images)?;
    let mut kept: Vec<Vec<(Vec<f32>, Vec<f32>)>> = vec![Vec::new(); n];
    for s in 0..samples {
        let noisy: Vec<f32> = pixels
            .iter()
            .zip(ids)
            .map(|(p, &id)| linf_ball_noise(p, radius, seed, id as u64, s as u64))
            .collect::<std::result::Result<Vec<_>, _>>()?
            .concat();
        let noisy = Tensor::from_vec(noisy, images.dims(), images.device())?;
        let decided = predict_in_batches(f1, &noisy, batch)?;
        let maps = rows(&maps_28(method, &noisy, classes, batch)?)?;
        let inputs = rows(&noisy)?;
        for (i, (map, input)) in maps.into_iter().zip(inputs).enumerate() {
            if decided[i] as usize == classes[i] {
                kept[i].push((map, input));
            }
        }
    }
    let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let by_max = |v: &[f32]| -> Option<Vec<f64>> {
        let m = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        (m > 0.0).then(|| v.iter().map(|&x| f64::from(x / m)).collect())
    };
    let mut sensitivity = Vec::with_capacity(n);
    let mut lipschitz = Vec::with_capacity(n);
    for i in 0..n {
        if kept[i].is_empty() {
            sensitivity.push(None);
            lipschitz.push(None);
            continue;
        }
        let perturbed: Vec<Vec<f64>> = kept[i].iter().map(|(m, _)| f64s(m)).collect();
        sensitivity.push(max_sensitivity(&f64s(&base[i]), &perturbed).ok());
        let normalised: Option<Vec<Vec<f64>>> = kept[i].iter().map(|(m, _)| by_max(m)).collect();
        let moved: Vec<Vec<f64>> = kept[i].iter().map(|(_, x)| f64s(x)).collect();
        lipschitz.push(match (by_max(&base[i]), normalised) {
            (Some(e), Some(p)) => local_lipschitz_estimate(&e, &f64s(&pixels[i]), &p, &moved).ok(),
            _ => None,
        });
    }
    Ok((sensitivity, lipschitz))
}

/// f1's class of each image, `batch` at a time.
pub fn predict_in_batches(f1: &dyn Classifier, images: &Tensor, batch: usize) -> Result<Vec<u32>> {
    let n = images.dim(0)?;
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(batch.max(1)) {
        let len = batch.max(1).min(n - start);
        out.extend(f1.predict(&images.narrow(0, start, len)?)?);
    }
    Ok(out)
}

/// The deletion and insertion AUC of each image (RISE, black baseline): its pixels
/// removed from (added to) the image in the order of its map `maps[i]`, `per_step` at a
/// time, f1's probability of `classes[i]` after each step. At most about `batch` step
/// images go through f1 at once. `None` where the map is constant (no order).
pub fn pixel_curve_aucs(
    f1: &dyn Classifier,
    maps: &[Vec<f32>],
    pixels: &[Vec<f32>],
    classes: &[usize],
    per_step: usize,
    batch: usize,
    device: &candle_core::Device,
) -> Result<TwoPerExample> {
    let n_steps = steps(28 * 28, per_step);
    let per_forward = (batch / (2 * n_steps)).max(1);
    let baseline = vec![0.0f32; 28 * 28];
    let (mut deletion, mut insertion) = (Vec::new(), Vec::new());
    let mut step = Vec::new();
    for start in (0..maps.len()).step_by(per_forward) {
        let group: Vec<usize> = (start..(start + per_forward).min(maps.len()))
            .filter(|&i| {
                let (lo, hi) = maps[i]
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                        (l.min(v), h.max(v))
                    });
                lo < hi
            })
            .collect();
        let mut buffer = Vec::with_capacity(group.len() * 2 * n_steps * 784);
        for &i in &group {
            let order = importance_order(&maps[i])?;
            for curve in [PixelCurve::Deletion, PixelCurve::Insertion] {
                for s in 0..n_steps {
                    step_image(curve, &pixels[i], &baseline, &order, per_step, s, &mut step)?;
                    buffer.extend_from_slice(&step);
                }
            }
        }
        let mut aucs = HashMap::new();
        if !group.is_empty() {
            let t = Tensor::from_vec(buffer, (group.len() * 2 * n_steps, 1, 28, 28), device)?;
            let probs = softmax_rows(&f1.logits(&t)?)?;
            for (g, &i) in group.iter().enumerate() {
                let curve = |c: usize| -> Result<f64> {
                    let first = (2 * g + c) * n_steps;
                    let p: Vec<f64> = (first..first + n_steps)
                        .map(|r| f64::from(probs[r][classes[i]]))
                        .collect();
                    Ok(curve_auc(&p)?)
                };
                aucs.insert(i, (curve(0)?, curve(1)?));
            }
        }
        for i in start..(start + per_forward).min(maps.len()) {
            let a = aucs.get(&i);
            deletion.push(a.map(|a| a.0));
            insertion.push(a.map(|a| a.1));
        }
    }
    Ok((deletion, insertion))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cam::{GradientTimesInput, Saliency};
    use candle_core::Device;

    /// Class 0's logit is `w . x + bias` and class 1's is 0 (with a bias of 40, the
    /// label 0 survives any noise in the pixel box).
    struct Linear {
        w: Tensor,
        bias: f64,
    }

    impl Classifier for Linear {
        fn logits(&self, images: &Tensor) -> candle_core::Result<Tensor> {
            let n = images.dim(0)?;
            let s = images
                .reshape((n, 784))?
                .broadcast_mul(&self.w.unsqueeze(0)?)?
                .sum_keepdim(1)?;
            Tensor::cat(&[(&s + self.bias)?, s.zeros_like()?], 1)
        }
        fn num_classes(&self) -> usize {
            2
        }
    }

    fn weights() -> Vec<f32> {
        (0..784)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0)
            .collect()
    }

    fn images(n: usize) -> Vec<f32> {
        (0..n * 784)
            .map(|i| ((i * 13 % 97) as f32) / 96.0)
            .collect()
    }

    fn l2(v: impl Iterator<Item = f64>) -> f64 {
        v.map(|x| x * x).sum::<f64>().sqrt()
    }

    #[test]
    fn noise_robustness_matches_the_closed_form_of_a_linear_model() {
        let dev = Device::Cpu;
        let w = weights();
        let model = Linear {
            w: Tensor::new(w.as_slice(), &dev).unwrap(),
            bias: 40.0,
        };
        let n = 3;
        let pixels = images(n);
        let x = Tensor::from_vec(pixels.clone(), (n, 1, 28, 28), &dev).unwrap();
        let (ids, classes) = (vec![5, 9, 11], vec![0usize; n]);
        let (radius, samples, seed) = (0.05, 4, 7);
        let run = |m: &dyn Explainer| {
            let base = rows(&maps_28(m, &x, &classes, 2).unwrap()).unwrap();
            noise_robustness(
                m, &model, &x, &base, &ids, &classes, radius, samples, seed, 2,
            )
            .unwrap()
        };
        // Saliency of a linear model is |w| everywhere: nothing moves.
        let (s, l) = run(&Saliency::new(&model));
        assert!(
            s.iter().chain(&l).all(|v| v.unwrap().abs() < 1e-9),
            "{s:?} {l:?}"
        );
        // Gradient x input is w * x: the change is w * delta, over ||w * x||.
        let (s, _) = run(&GradientTimesInput::new(&model));
        for i in 0..n {
            let xi = &pixels[i * 784..(i + 1) * 784];
            let norm = l2(xi.iter().zip(&w).map(|(p, w)| f64::from(p * w)));
            let expected = (0..samples as u64)
                .map(|k| {
                    let moved = linf_ball_noise(xi, radius, seed, ids[i] as u64, k).unwrap();
                    l2(moved
                        .iter()
                        .zip(xi)
                        .zip(&w)
                        .map(|((a, b), w)| f64::from((a - b) * w)))
                        / norm
                })
                .fold(0.0, f64::max);
            let got = s[i].unwrap();
            assert!(
                (got - expected).abs() < 1e-5 * expected,
                "{got} vs {expected}"
            );
        }
    }

    /// Gradient x input that counts the images it is asked to explain.
    struct Counted<'a> {
        inner: GradientTimesInput<'a, Linear>,
        explained: std::cell::Cell<usize>,
    }

    impl Explainer for Counted<'_> {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn resolution(&self) -> Resolution {
            self.inner.resolution()
        }
        fn explain(&self, images: &Tensor, target: &Target) -> cam::Result<cam::ActivationMaps> {
            self.explained
                .set(self.explained.get() + images.dim(0).unwrap());
            self.inner.explain(images, target)
        }
    }

    #[test]
    fn a_repeated_row_is_explained_once_and_takes_its_first_rows_map() {
        let dev = Device::Cpu;
        let model = Linear {
            w: Tensor::new(weights().as_slice(), &dev).unwrap(),
            bias: 0.0,
        };
        let pixels = images(2);
        let (a, b) = (&pixels[..784], &pixels[784..]);
        // a, b, a again, a for the other class, b again: three (image, class) pairs.
        let rows_in = [a, b, a, a, b].concat();
        let classes = [0usize, 0, 0, 1, 0];
        let x = Tensor::from_vec(rows_in.clone(), (5, 1, 28, 28), &dev).unwrap();
        let counted = Counted {
            inner: GradientTimesInput::new(&model),
            explained: std::cell::Cell::new(0),
        };
        let got = rows(&maps_28(&counted, &x, &classes, 2).unwrap()).unwrap();
        assert_eq!(counted.explained.get(), 3);
        // Each row's map is the one it gets explained alone.
        for (i, row) in rows_in.chunks(784).enumerate() {
            let alone = Tensor::from_vec(row.to_vec(), (1, 1, 28, 28), &dev).unwrap();
            let expected = rows(&maps_28(&counted, &alone, &classes[i..=i], 2).unwrap()).unwrap();
            assert_eq!(got[i], expected[0], "row {i}");
        }
        // Gradient x input of class 0 is w * x: the two images' maps differ, and class
        // 1 (a zero logit) maps a to zero.
        assert_ne!(got[0], got[1]);
        assert!(got[3].iter().all(|&v| v == 0.0) && got[0].iter().any(|&v| v != 0.0));
        // Rows all distinct: every one explained.
        counted.explained.set(0);
        let distinct = Tensor::from_vec([a, b].concat(), (2, 1, 28, 28), &dev).unwrap();
        maps_28(&counted, &distinct, &[0, 0], 2).unwrap();
        assert_eq!(counted.explained.get(), 2);
    }

    #[test]
    fn a_cached_map_is_the_map_and_is_not_explained_again() {
        let dev = Device::Cpu;
        let model = Linear {
            w: Tensor::new(weights().as_slice(), &dev).unwrap(),
            bias: 0.0,
        };
        let pixels = images(3);
        let (a, b, c) = (&pixels[..784], &pixels[784..1568], &pixels[1568..]);
        let counted = Counted {
            inner: GradientTimesInput::new(&model),
            explained: std::cell::Cell::new(0),
        };
        let mut cache = MapCache::default();
        let first = Tensor::from_vec([a, b].concat(), (2, 1, 28, 28), &dev).unwrap();
        let got = rows(&maps_28_cached(&counted, &first, &[0, 0], 2, &mut cache).unwrap()).unwrap();
        assert_eq!((counted.explained.get(), cache.maps.len()), (2, 2));
        assert_eq!(
            got,
            rows(&maps_28(&counted, &first, &[0, 0], 2).unwrap()).unwrap()
        );
        // A later unit: b and a again (taken from the cache), c and a for another class
        // (explained).
        counted.explained.set(0);
        let later = Tensor::from_vec([b, c, a, a].concat(), (4, 1, 28, 28), &dev).unwrap();
        let classes = [0usize, 0, 0, 1];
        let got =
            rows(&maps_28_cached(&counted, &later, &classes, 2, &mut cache).unwrap()).unwrap();
        assert_eq!((counted.explained.get(), cache.maps.len()), (2, 4));
        let want = rows(&maps_28(&counted, &later, &classes, 2).unwrap()).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn a_faithful_order_beats_its_reverse_on_both_curves() {
        let dev = Device::Cpu;
        // Class 0's logit grows with every pixel (from p = 0.02 on black to 0.98 on
        // these images): the image itself orders the pixels best.
        let model = Linear {
            w: Tensor::new(&[0.02f32; 784], &dev).unwrap(),
            bias: -4.0,
        };
        let pixels = images(2);
        let x: Vec<Vec<f32>> = pixels.chunks(784).map(|c| c.to_vec()).collect();
        let reversed: Vec<Vec<f32>> = x.iter().map(|m| m.iter().map(|v| -v).collect()).collect();
        let classes = [0usize, 0];
        let (del, ins) = pixel_curve_aucs(&model, &x, &x, &classes, 28, 16, &dev).unwrap();
        let (del_r, ins_r) =
            pixel_curve_aucs(&model, &reversed, &x, &classes, 28, 16, &dev).unwrap();
        for i in 0..2 {
            assert!(del[i].unwrap() < del_r[i].unwrap(), "deletion {i}");
            assert!(ins[i].unwrap() > ins_r[i].unwrap(), "insertion {i}");
        }
        // A constant map gives no order: no value, counted apart.
        let flat = vec![vec![0.5f32; 784]; 2];
        let (d, i) = pixel_curve_aucs(&model, &flat, &x, &classes, 28, 16, &dev).unwrap();
        assert!(d.iter().chain(&i).all(Option::is_none));
    }
}
