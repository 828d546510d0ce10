//! A non-parametric judge: k nearest neighbours in pixel space (L2) over a training set
//! (ALGORITHMS.md section 10). Distances come from one GEMM per chunk of training images,
//! `||q - t||^2 = ||q||^2 + ||t||^2 - 2 q.t`, so memory is the training set plus one
//! `batch x chunk` block, whatever the number of queries.

use candle_core::{DType, Device, Result, Tensor};
use mnist_data::{Dataset, PixelFormat};

use crate::traits::Classifier;

/// Training images per GEMM block.
const CHUNK: usize = 8192;

/// k-nearest-neighbour classifier over grey pixels in [0, 1] (`k = 3` in the study).
#[derive(Debug, Clone)]
pub struct Knn {
    /// Training images, each chunk transposed: `784 x chunk`.
    chunks: Vec<Tensor>,
    /// `||t||^2` per training image.
    norms: Vec<f32>,
    labels: Vec<u8>,
    k: usize,
}

/// One neighbour of a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// Index in the training set.
    pub index: usize,
    /// Squared L2 distance.
    pub distance2: f32,
    /// Its label.
    pub label: u8,
}

impl Knn {
    /// Indexes `train` (grey pixels) for `k`-neighbour votes.
    pub fn new(train: &Dataset, k: usize, device: &Device) -> crate::Result<Self> {
        if k == 0 || k > train.len() {
            return Err(crate::ModelError::InvalidInput(format!(
                "k = {k} neighbours over {} training images",
                train.len()
            )));
        }
        let (images, _) = train.to_tensors(PixelFormat::Gray, device)?;
        let flat = images.flatten_from(1)?.to_dtype(DType::F32)?;
        let norms = flat.sqr()?.sum(1)?.to_vec1()?;
        let n = train.len();
        let mut chunks = Vec::new();
        for start in (0..n).step_by(CHUNK) {
            let len = CHUNK.min(n - start);
            chunks.push(flat.narrow(0, start, len)?.t()?.contiguous()?);
        }
        Ok(Self {
            chunks,
            norms,
            labels: train.labels().to_vec(),
            k,
        })
    }

    /// Neighbours voting per query.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The `k` nearest training images of each query (`N x 1 x 28 x 28`), nearest first;
    /// equal distances go to the lower training index.
    pub fn neighbours(&self, images: &Tensor) -> Result<Vec<Vec<Neighbour>>> {
        let n = images.dim(0)?;
        let q = images.flatten_from(1)?.to_dtype(DType::F32)?;
        if q.dim(1)? != 784 {
            return Err(candle_core::Error::Msg(format!(
                "kNN queries must have 784 pixels, got {}",
                q.dim(1)?
            )));
        }
        let qn: Vec<f32> = q.sqr()?.sum(1)?.to_vec1()?;
        let mut best: Vec<Vec<Neighbour>> = vec![Vec::with_capacity(self.k + 1); n];
        let mut offset = 0;
        for chunk in &self.chunks {
            let dots: Vec<Vec<f32>> = q.matmul(chunk)?.to_vec2()?;
            let len = chunk.dim(1)?;
            for (r, row) in dots.iter().enumerate() {
                let kept = &mut best[r];
                for (j, &dot) in row.iter().enumerate() {
                    let index = offset + j;
                    let d2 = (qn[r] + self.norms[index] - 2.0 * dot).max(0.0);
                    if kept.len() == self.k && d2 >= kept[self.k - 1].distance2 {
                        continue;
                    }
                    let at = kept.partition_point(|b| b.distance2 <= d2);
                    kept.insert(
                        at,
                        Neighbour {
                            index,
                            distance2: d2,
                            label: self.labels[index],
                        },
                    );
                    kept.truncate(self.k);
                }
            }
            offset += len;
        }
        Ok(best)
    }
}

/// The vote of a query's neighbours: the majority label, ties to the nearest neighbour's.
pub fn vote(neighbours: &[Neighbour]) -> [f32; 10] {
    let mut score = [0f32; 10];
    for nb in neighbours {
        score[usize::from(nb.label).min(9)] += 1.0;
    }
    if let Some(first) = neighbours.first() {
        // Less than one vote, so it only breaks ties.
        score[usize::from(first.label).min(9)] += 0.5;
    }
    score
}

impl Classifier for Knn {
    /// Vote counts per class (plus 0.5 for the nearest neighbour's class, which breaks
    /// ties); not differentiable.
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let neighbours = self.neighbours(images)?;
        let votes: Vec<f32> = neighbours.iter().flat_map(|nb| vote(nb)).collect();
        Tensor::from_vec(votes, (neighbours.len(), 10), images.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random_dataset(n: usize, seed: u64) -> Dataset {
        let mut rng = StdRng::seed_from_u64(seed);
        let pixels: Vec<u8> = (0..n * 784).map(|_| rng.random()).collect();
        let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..10)).collect();
        Dataset::new(pixels, labels, 28, 28).unwrap()
    }

    #[test]
    fn neighbours_match_a_brute_force_search() {
        let train = random_dataset(CHUNK + 300, 1);
        let queries = random_dataset(7, 2);
        let d = Device::Cpu;
        let knn = Knn::new(&train, 3, &d).unwrap();
        let (q, _) = queries.to_tensors(PixelFormat::Gray, &d).unwrap();
        let got = knn.neighbours(&q).unwrap();
        for (qi, found) in got.iter().enumerate() {
            let a = queries.image(qi).unwrap();
            let mut all: Vec<(f64, usize)> = (0..train.len())
                .map(|i| {
                    let b = train.image(i).unwrap();
                    let d2: f64 = a
                        .iter()
                        .zip(b)
                        .map(|(&x, &y)| {
                            let diff = f64::from(x) / 255.0 - f64::from(y) / 255.0;
                            diff * diff
                        })
                        .sum();
                    (d2, i)
                })
                .collect();
            all.sort_by(|x, y| x.partial_cmp(y).unwrap());
            for (nb, &(d2, i)) in found.iter().zip(&all) {
                assert_eq!(nb.index, i, "query {qi}");
                assert!((f64::from(nb.distance2) - d2).abs() < 1e-3 * d2, "{d2}");
                assert_eq!(nb.label, train.label(i).unwrap());
            }
        }
    }

    #[test]
    fn a_training_image_is_its_own_nearest_neighbour_and_the_majority_wins() {
        let train = random_dataset(50, 3);
        let d = Device::Cpu;
        let knn = Knn::new(&train, 1, &d).unwrap();
        let (x, _) = train.first(10).to_tensors(PixelFormat::Gray, &d).unwrap();
        let pred = knn.predict(&x).unwrap();
        let labels: Vec<u32> = train.labels()[..10].iter().map(|&l| u32::from(l)).collect();
        assert_eq!(pred, labels);
        let nb = |label| Neighbour {
            index: 0,
            distance2: 0.0,
            label,
        };
        // 2 votes beat the nearest neighbour's 1; 1-1-1 goes to the nearest.
        assert_eq!(argmax(&vote(&[nb(4), nb(6), nb(6)])), 6);
        assert_eq!(argmax(&vote(&[nb(4), nb(6), nb(2)])), 4);
        assert!(Knn::new(&train, 0, &d).is_err());
        assert!(Knn::new(&train, 51, &d).is_err());
    }

    fn argmax(v: &[f32; 10]) -> usize {
        (0..10).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
    }
}
