//! Small seeded models and batches for the tests.

use candle_core::{DType, Device, Result, Tensor};
use models::{init_model, random::uniform, Classifier, Mlp};
use rand::{rngs::StdRng, SeedableRng};

/// A seeded, untrained `Mlp`, random images and the model's own predictions as labels
/// (so every example is attackable).
pub fn setup(seed: u64, n: usize) -> (Mlp, Tensor, Vec<u32>) {
    let dev = Device::Cpu;
    let (model, _) = init_model::<Mlp>(seed, DType::F32, &dev).unwrap();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let images = uniform(&mut rng, (n, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).unwrap();
    let labels = model.predict(&images).unwrap();
    (model, images, labels)
}

/// A target per example that differs from its label.
pub fn other_classes(labels: &[u32], shift: u32) -> Vec<u32> {
    labels.iter().map(|&l| (l + 1 + shift % 9) % 10).collect()
}

/// A classifier whose logits ignore the input: every input gradient is zero, as under
/// perfect gradient masking.
pub struct Flat;

impl Classifier for Flat {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let n = images.dim(0)?;
        let bias = Tensor::arange(0f32, 10.0, images.device())?
            .to_dtype(images.dtype())?
            .unsqueeze(0)?
            .broadcast_as((n, 10))?;
        // Zero times the input keeps the input on the graph with a zero gradient.
        (images.flatten_from(1)?.sum_keepdim(1)? * 0.0)?.broadcast_add(&bias)
    }
}

/// Largest absolute component.
pub fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// An affine classifier `Z = W x + b` on the flattened input (`W`: one row per class),
/// computed in the images' dtype: every margin is linear, so the attacks' answers have
/// closed forms.
pub struct Affine {
    /// One weight row per class.
    pub w: Vec<Vec<f64>>,
    /// One bias per class.
    pub b: Vec<f64>,
}

impl Affine {
    /// The logits in f64, computed directly (not through candle).
    pub fn logits_f64(&self, x: &[f64]) -> Vec<f64> {
        self.w
            .iter()
            .zip(&self.b)
            .map(|(row, b)| row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>() + b)
            .collect()
    }
}

impl Classifier for Affine {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let (k, d) = (self.b.len(), self.w[0].len());
        let flat: Vec<f64> = self.w.iter().flatten().copied().collect();
        let w = Tensor::from_vec(flat, (k, d), images.device())?.to_dtype(images.dtype())?;
        let b = Tensor::from_vec(self.b.clone(), k, images.device())?.to_dtype(images.dtype())?;
        images.flatten_from(1)?.matmul(&w.t()?)?.broadcast_add(&b)
    }

    fn num_classes(&self) -> usize {
        self.b.len()
    }
}
