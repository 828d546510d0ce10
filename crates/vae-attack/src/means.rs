//! The mean latent code of each class over training images: where the constrained
//! attack may start (part-way towards the target's mean).

use candle_core::{DType, Device, Tensor};
use mnist_data::{BatchOptions, Dataset, PixelFormat};
use models::Svae;

use crate::error::{AttackError, Result};

/// `10 x dim_z`: row c is the mean of mu(x) over the training images of class c
/// (binarised, as the SVAE sees them).
#[derive(Debug, Clone)]
pub struct ClassMeans(Tensor);

impl ClassMeans {
    /// Encodes every image of `train` (batches of 500) and averages mu per label.
    pub fn from_training(svae: &Svae, train: &Dataset, device: &Device) -> Result<Self> {
        let options = BatchOptions {
            batch_size: 500,
            format: PixelFormat::Binarized,
            ..Default::default()
        };
        let mut sums: Vec<Vec<f64>> = vec![Vec::new(); 10];
        let mut counts = [0usize; 10];
        for batch in train.batches(&options, device) {
            let batch = batch.map_err(|e| AttackError::InvalidInput(e.to_string()))?;
            let (mu, _) = svae.encode(&batch.images)?;
            let mu: Vec<Vec<f64>> = mu.to_dtype(DType::F64)?.to_vec2()?;
            let labels: Vec<u32> = batch.labels.to_vec1()?;
            for (row, &c) in mu.iter().zip(&labels) {
                let c = c as usize;
                if sums[c].is_empty() {
                    sums[c] = vec![0.0; row.len()];
                }
                sums[c].iter_mut().zip(row).for_each(|(s, v)| *s += v);
                counts[c] += 1;
            }
        }
        if let Some(c) = (0..10).find(|&c| counts[c] == 0) {
            return Err(AttackError::InvalidInput(format!(
                "no training image of class {c}: the class means need every class"
            )));
        }
        let flat: Vec<f64> = (0..10)
            .flat_map(|c| sums[c].iter().map(move |s| s / counts[c] as f64))
            .collect();
        let dim = flat.len() / 10;
        Ok(Self(
            Tensor::from_vec(flat, (10, dim), device)?.to_dtype(DType::F32)?,
        ))
    }

    /// Wraps given means (`10 x dim_z`).
    pub fn new(means: Tensor) -> Result<Self> {
        if means.dims().len() != 2 || means.dim(0)? != 10 {
            return Err(AttackError::InvalidInput(format!(
                "class means must be 10 x dim_z, got {:?}",
                means.dims()
            )));
        }
        Ok(Self(means))
    }

    /// The `10 x dim_z` tensor.
    pub fn tensor(&self) -> &Tensor {
        &self.0
    }

    /// The mean code of each target, `N x dim_z`.
    pub fn rows(&self, targets: &[u32]) -> Result<Tensor> {
        let idx = Tensor::new(targets, self.0.device())?;
        Ok(self.0.index_select(&idx, 0)?)
    }
}
