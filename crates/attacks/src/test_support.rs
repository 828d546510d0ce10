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
