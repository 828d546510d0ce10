//! Checks every [`Explainer`] must pass, shared by the methods' tests, and a test model
//! whose head is not linear in the pooled features (so gradients vary over the map).

use candle_core::{Result as CandleResult, Tensor};
use models::{Classifier, FeatureClassifier};

use crate::activation_maps::ActivationMaps;
use crate::explainer::Explainer;
use crate::target::{MapClasses, Target};
use crate::test_model::TinyCamModel;

/// Row-major values of a tensor as f64.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// One map (image `image`, slot `slot` of the class axis) as f64 values.
pub fn map_of(maps: &ActivationMaps, image: usize, slot: usize) -> Vec<f64> {
    values(
        &maps
            .maps_4d()
            .unwrap()
            .get(image)
            .unwrap()
            .get(slot)
            .unwrap(),
    )
}

/// Panics unless `a` and `b` agree within `tol` relative to `1 + |b|`.
pub fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: value {i}: {x} vs {y}"
        );
    }
}

/// TinyCamModel's features with the head `logit_c = sum_k W[c, k] mean_ij F_k(i, j)^2 + b_c`:
/// `d logit_c / d F_k(i, j) = 2 W[c, k] F_k(i, j) / (h w)`, which varies over the map and
/// is zero wherever a feature is (after the ReLU).
#[derive(Debug, Clone)]
pub struct QuadraticHeadModel(pub TinyCamModel);

impl Classifier for QuadraticHeadModel {
    fn logits(&self, images: &Tensor) -> CandleResult<Tensor> {
        Ok(self.features_and_logits(images)?.1)
    }
    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }
}

impl FeatureClassifier for QuadraticHeadModel {
    fn features_and_logits(&self, images: &Tensor) -> CandleResult<(Tensor, Tensor)> {
        let (f, _) = self.0.features_and_logits(images)?;
        let logits = self.logits_from_features(&f)?;
        Ok((f, logits))
    }
    fn logits_from_features(&self, features: &Tensor) -> CandleResult<Tensor> {
        let (w, b) = self.0.head_tensors();
        features
            .sqr()?
            .mean((2, 3))?
            .matmul(&w.t()?)?
            .broadcast_add(&b)
    }
}

/// The per-image slice of a target (the same target, or one class of a list).
fn target_of(target: &Target, image: usize) -> Target {
    match target {
        Target::PerImage(c) => Target::PerImage(vec![c[image]]),
        other => other.clone(),
    }
}

/// Explaining a batch of N gives the maps, classes and logits of N batches of one.
pub fn assert_batch_of_n_is_n_batches_of_one(
    method: &dyn Explainer,
    images: &Tensor,
    target: &Target,
    tol: f64,
) {
    let whole = method.explain(images, target).unwrap();
    let n = images.dim(0).unwrap();
    assert_eq!(whole.num_images(), n);
    for i in 0..n {
        let one = method
            .explain(&images.narrow(0, i, 1).unwrap(), &target_of(target, i))
            .unwrap();
        let what = format!("{} image {i} of {n}, {target:?}", method.name());
        assert_eq!(
            one.classes.classes_of(0),
            whole.classes.classes_of(i),
            "{what}"
        );
        let batched = whole.maps.narrow(0, i, 1).unwrap();
        assert_eq!(batched.dims(), one.maps.dims(), "{what}");
        assert_close(&values(&one.maps), &values(&batched), tol, &what);
        let logits = whole.logits.narrow(0, i, 1).unwrap();
        assert_close(&values(&one.logits), &values(&logits), tol, &what);
    }
}

/// `Target::PerImage` explains each image's own class: each of its maps is that class's
/// map under [`Target::AllClasses`] and under [`Target::Class`].
pub fn assert_per_image_target_picks_each_class(method: &dyn Explainer, images: &Tensor, tol: f64) {
    let n = images.dim(0).unwrap();
    let all = method.explain(images, &Target::AllClasses).unwrap();
    let MapClasses::All(num_classes) = all.classes else {
        panic!("{}: AllClasses gave {:?}", method.name(), all.classes);
    };
    assert!(num_classes > 1, "pick a model with several classes");
    // Neighbouring images get different classes, none of them all the same.
    let classes: Vec<usize> = (0..n).map(|i| (3 * i + 1) % num_classes).collect();
    let picked = method
        .explain(images, &Target::PerImage(classes.clone()))
        .unwrap();
    assert_eq!(picked.classes, MapClasses::PerImage(classes.clone()));
    assert_eq!(picked.maps.rank(), 3, "one map per image");
    for (i, &c) in classes.iter().enumerate() {
        let what = format!("{} image {i}, class {c}", method.name());
        let mine = map_of(&picked, i, 0);
        assert_close(&mine, &map_of(&all, i, c), tol, &what);
        let fixed = method.explain(images, &Target::Class(c)).unwrap();
        assert_close(&mine, &map_of(&fixed, i, 0), tol, &what);
    }
}

mod tests {
    use candle_core::{DType, Device};
    use models::{init_model, random::uniform, GapCnn, Oracle};
    use rand::{rngs::StdRng, SeedableRng};

    use super::*;
    use crate::explainer::{GradCam, Resolution};
    use crate::grad_cam_plus_plus::GradCamPlusPlus;
    use crate::hires_cam::HiResCam;
    use crate::score_cam::ScoreCam;

    fn images(n: usize) -> Tensor {
        let mut rng = StdRng::seed_from_u64(40);
        uniform(&mut rng, (n, 1, 28, 28), 0.0, 1.0, DType::F32, &Device::Cpu).unwrap()
    }

    fn feature_methods<M: FeatureClassifier>(model: &M) -> Vec<Box<dyn Explainer + '_>> {
        vec![
            Box::new(GradCam { model }),
            Box::new(GradCamPlusPlus { model }),
            Box::new(HiResCam { model }),
            Box::new(ScoreCam { model, batch: 50 }),
        ]
    }

    #[test]
    fn every_feature_method_runs_on_the_oracle_which_has_no_gap_head() {
        let (model, _) = init_model::<Oracle>(0, DType::F32, &Device::Cpu).unwrap();
        let x = images(3);
        for method in feature_methods(&model) {
            let maps = method.explain(&x, &Target::Predicted).unwrap();
            assert_eq!(maps.maps.dims(), &[3, 7, 7], "{}", method.name());
            assert_eq!(method.resolution(), Resolution::Features);
            assert!(values(&maps.maps).iter().all(|v| v.is_finite()));
            assert!(
                values(&maps.maps).iter().any(|&v| v != 0.0),
                "{}",
                method.name()
            );
            assert_batch_of_n_is_n_batches_of_one(method.as_ref(), &x, &Target::Predicted, 1e-4);
        }
    }

    #[test]
    fn every_feature_method_batches_gapcnn_like_single_images() {
        // GapCnn picks its convolution layout by batch size, so f32 rounding may differ.
        let (model, _) = init_model::<GapCnn>(0, DType::F32, &Device::Cpu).unwrap();
        let x = images(3);
        for method in feature_methods(&model) {
            let target = Target::PerImage(vec![7, 0, 3]);
            assert_batch_of_n_is_n_batches_of_one(method.as_ref(), &x, &target, 1e-4);
        }
    }
}
