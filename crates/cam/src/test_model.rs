//! A tiny `CamModel` for tests: one 3x3 convolution + ReLU giving `K x h x w`
//! features, global average pooling and a linear head, in f64, seeded weights.

use candle_core::{DType, Device, Result, Tensor};
use models::{CamModel, Classifier, FeatureClassifier};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct TinyCamModel {
    kernel: Tensor,
    conv_bias: Tensor,
    weight: Tensor,
    bias: Tensor,
}

/// `len` uniform values in [-1, 1] as an f64 tensor of `shape`.
pub fn random_tensor(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..=1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// `n` random images `n x 1 x size x size` in [0, 1].
pub fn random_images(seed: u64, n: usize, size: usize) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    ((random_tensor(&mut rng, &[n, 1, size, size]) + 1.0).unwrap() / 2.0).unwrap()
}

impl TinyCamModel {
    /// A model with `channels` feature maps and `classes` classes; the convolution has
    /// stride 2, so `size x size` images give `size/2 x size/2` features.
    pub fn random(seed: u64, channels: usize, classes: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Self {
            kernel: random_tensor(&mut rng, &[channels, 1, 3, 3]),
            conv_bias: random_tensor(&mut rng, &[channels]),
            weight: random_tensor(&mut rng, &[classes, channels]),
            bias: random_tensor(&mut rng, &[classes]),
        }
    }

    /// The same features with another head.
    pub fn with_head(&self, weight: Tensor, bias: Tensor) -> Self {
        Self {
            weight,
            bias,
            ..self.clone()
        }
    }

    /// The head's weight and bias.
    pub fn head_tensors(&self) -> (Tensor, Tensor) {
        (self.weight.clone(), self.bias.clone())
    }
}

impl Classifier for TinyCamModel {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        self.logits_from_features(&self.features_and_logits(images)?.0)
    }

    fn num_classes(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl FeatureClassifier for TinyCamModel {
    fn features_and_logits(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        let images = images.to_dtype(DType::F64)?;
        let f = images
            .conv2d(&self.kernel, 1, 2, 1, 1)?
            .broadcast_add(&self.conv_bias.reshape((1, (), 1, 1))?)?
            .relu()?;
        let logits = self.logits_from_features(&f)?;
        Ok((f, logits))
    }

    fn logits_from_features(&self, features: &Tensor) -> Result<Tensor> {
        features
            .mean((2, 3))?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)
    }
}

impl CamModel for TinyCamModel {
    fn head(&self) -> (&Tensor, &Tensor) {
        (&self.weight, &self.bias)
    }
}
