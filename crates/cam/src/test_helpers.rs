//! Test helpers of the input-resolution methods: a linear classifier (whose gradient,
//! integrated gradients and occlusion drops are known in closed form), central finite
//! differences of a logit, and the batch-independence check every method must pass.

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};
use models::{Classifier, FeatureClassifier};
use rand::{rngs::StdRng, SeedableRng};

use crate::explainer::Explainer;
use crate::target::Target;
use crate::test_model::random_tensor;

/// A model that counts the images its logits are asked for (a method's forward passes).
pub struct Counting<M> {
    pub model: M,
    images: AtomicUsize,
}

impl<M> Counting<M> {
    pub fn new(model: M) -> Self {
        Self {
            model,
            images: AtomicUsize::new(0),
        }
    }

    /// Images through [`Classifier::logits`] so far.
    pub fn images(&self) -> usize {
        self.images.load(Ordering::Relaxed)
    }
}

impl<M: Classifier> Classifier for Counting<M> {
    fn logits(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        self.images.fetch_add(images.dim(0)?, Ordering::Relaxed);
        self.model.logits(images)
    }

    fn num_classes(&self) -> usize {
        self.model.num_classes()
    }
}

impl<M: FeatureClassifier> FeatureClassifier for Counting<M> {
    fn features_and_logits(&self, images: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        self.model.features_and_logits(images)
    }

    fn logits_from_features(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        self.model.logits_from_features(features)
    }
}

/// `logits = flatten(x) W^T + b` in f64, for `h x w` grey images.
#[derive(Debug, Clone)]
pub struct LinearModel {
    weight: Tensor,
    bias: Tensor,
}

impl LinearModel {
    /// Uniform weights and biases in [-1, 1].
    pub fn random(seed: u64, classes: usize, h: usize, w: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Self {
            weight: random_tensor(&mut rng, &[classes, h * w]),
            bias: random_tensor(&mut rng, &[classes]),
        }
    }

    /// The weight's rows, one per class, row-major pixels.
    pub fn weight_rows(&self) -> Vec<Vec<f64>> {
        self.weight.to_vec2().unwrap()
    }
}

impl Classifier for LinearModel {
    fn logits(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        images
            .to_dtype(DType::F64)?
            .flatten_from(1)?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)
    }

    fn num_classes(&self) -> usize {
        self.weight.dims()[0]
    }
}

/// Row-major f64 values of a tensor.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The logit `class` of one image (`1 x h x w`).
pub fn logit(model: &dyn Classifier, image: &Tensor, class: usize) -> f64 {
    let z = model.logits(&image.unsqueeze(0).unwrap()).unwrap();
    values(&z)[class]
}

/// Central finite differences (step 1e-6) of logit `class` of one image (`1 x h x w`,
/// f64) with respect to each pixel, row-major.
pub fn finite_difference_gradient(
    model: &dyn Classifier,
    image: &Tensor,
    class: usize,
) -> Vec<f64> {
    let base = values(image);
    let step = 1e-6;
    (0..base.len())
        .map(|i| {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let x = Tensor::from_vec(v, image.shape(), &Device::Cpu).unwrap();
                logit(model, &x, class)
            };
            (at(step) - at(-step)) / (2.0 * step)
        })
        .collect()
}

/// A batch of `N` gives the same maps (bit for bit) as `N` batches of one, for a class
/// per image and for every class.
pub fn assert_batch_of_n_is_n_batches_of_one(
    explainer: &dyn Explainer,
    images: &Tensor,
    classes: &[usize],
) {
    let n = images.dim(0).unwrap();
    let together = explainer
        .explain(images, &Target::PerImage(classes.to_vec()))
        .unwrap();
    let all_together = explainer.explain(images, &Target::AllClasses).unwrap();
    for (i, &class) in classes.iter().enumerate().take(n) {
        let one = images.narrow(0, i, 1).unwrap();
        let alone = explainer.explain(&one, &Target::Class(class)).unwrap();
        assert_eq!(
            values(&alone.maps),
            values(&together.maps.get(i).unwrap()),
            "{}: image {i}",
            explainer.name()
        );
        let all_alone = explainer.explain(&one, &Target::AllClasses).unwrap();
        assert_eq!(
            values(&all_alone.maps),
            values(&all_together.maps.get(i).unwrap()),
            "{}: image {i}, all classes",
            explainer.name()
        );
    }
}
