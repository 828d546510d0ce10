//! An in-memory labelled image set (`u8` pixels), its subsets, and its conversion to
//! candle tensors in seeded batches.

use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::{DataError, Result};

/// Number of classes (digits 0..=9, or the ten Fashion-MNIST classes).
pub const NUM_CLASSES: usize = 10;

/// How pixels become floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelFormat {
    /// `byte / 255` in [0, 1]: what the classifiers see.
    #[default]
    Gray,
    /// `1.0` where `byte > 127`, else `0.0`: what the supervised VAE is trained on.
    Binarized,
}

/// Labelled grey images, `rows x cols` bytes each, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl Dataset {
    /// Builds a dataset; the pixel count must be `labels.len() * rows * cols` and every
    /// label a class below [`NUM_CLASSES`].
    pub fn new(pixels: Vec<u8>, labels: Vec<u8>, rows: usize, cols: usize) -> Result<Self> {
        let expected = labels
            .len()
            .checked_mul(rows)
            .and_then(|v| v.checked_mul(cols));
        if expected != Some(pixels.len()) || rows == 0 || cols == 0 {
            return Err(DataError::InvalidRequest(format!(
                "{} pixel bytes do not make {} images of {rows}x{cols}",
                pixels.len(),
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| usize::from(l) >= NUM_CLASSES) {
            return Err(DataError::InvalidRequest(format!(
                "label {bad} is outside 0..=9"
            )));
        }
        Ok(Self {
            pixels,
            labels,
            rows,
            cols,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Rows of every image.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of every image.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All labels, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// All pixels, image after image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The pixels of image `i`, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.rows * self.cols;
        self.pixels.get(i * n..(i + 1) * n)
    }

    /// The label of image `i`, or `None` past the end.
    pub fn label(&self, i: usize) -> Option<u8> {
        self.labels.get(i).copied()
    }

    /// How many images each class has.
    pub fn class_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let n = self.rows * self.cols;
        let mut pixels = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let img = self.image(i).ok_or_else(|| {
                DataError::InvalidRequest(format!(
                    "index {i} is out of range for a dataset of {} images",
                    self.len()
                ))
            })?;
            pixels.extend_from_slice(img);
            labels.push(self.labels[i]);
        }
        Ok(Self {
            pixels,
            labels,
            rows: self.rows,
            cols: self.cols,
        })
    }

    /// The first `n` images (all of them when `n >= len`).
    pub fn first(&self, n: usize) -> Self {
        let n = n.min(self.len());
        let per = self.rows * self.cols;
        Self {
            pixels: self.pixels[..n * per].to_vec(),
            labels: self.labels[..n].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Indices of the first `per_class` images of every class, in dataset order.
    /// Fails when a class has fewer images.
    pub fn balanced_indices(&self, per_class: usize) -> Result<Vec<usize>> {
        let mut taken = [0usize; NUM_CLASSES];
        let mut indices = Vec::with_capacity(per_class * NUM_CLASSES);
        for (i, &l) in self.labels.iter().enumerate() {
            let t = &mut taken[usize::from(l)];
            if *t < per_class {
                *t += 1;
                indices.push(i);
            }
        }
        if let Some(c) = taken.iter().position(|&t| t < per_class) {
            return Err(DataError::InvalidRequest(format!(
                "class {c} has {} images, fewer than the {per_class} asked for",
                taken[c]
            )));
        }
        Ok(indices)
    }

    /// A class-balanced subset: the first `per_class` images of every class, in dataset order.
    pub fn balanced(&self, per_class: usize) -> Result<Self> {
        self.select(&self.balanced_indices(per_class)?)
    }

    /// Pixels of the images at `indices` as an `N x 1 x rows x cols` f32 tensor.
    pub fn images_tensor(
        &self,
        indices: &[usize],
        format: PixelFormat,
        device: &Device,
    ) -> Result<Tensor> {
        let n = self.rows * self.cols;
        let mut data = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            let img = self
                .image(i)
                .ok_or_else(|| DataError::InvalidRequest(format!("index {i} is out of range")))?;
            match format {
                PixelFormat::Gray => data.extend(img.iter().map(|&p| f32::from(p) / 255.0)),
                PixelFormat::Binarized => {
                    data.extend(img.iter().map(|&p| if p > 127 { 1.0f32 } else { 0.0 }))
                }
            }
        }
        Ok(Tensor::from_vec(
            data,
            (indices.len(), 1, self.rows, self.cols),
            device,
        )?)
    }

    /// Labels of the images at `indices` as a `u32` tensor of length `N`.
    pub fn labels_tensor(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let labels = indices
            .iter()
            .map(|&i| {
                self.label(i)
                    .map(u32::from)
                    .ok_or_else(|| DataError::InvalidRequest(format!("index {i} is out of range")))
            })
            .collect::<Result<Vec<u32>>>()?;
        Ok(Tensor::from_vec(labels, indices.len(), device)?)
    }

    /// The whole dataset as (`N x 1 x rows x cols` f32 images, `N` u32 labels).
    pub fn to_tensors(&self, format: PixelFormat, device: &Device) -> Result<(Tensor, Tensor)> {
        let all: Vec<usize> = (0..self.len()).collect();
        Ok((
            self.images_tensor(&all, format, device)?,
            self.labels_tensor(&all, device)?,
        ))
    }

    /// Batches over the dataset; see [`BatchOptions`].
    pub fn batches<'a>(&'a self, options: &BatchOptions, device: &'a Device) -> Batches<'a> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some(seed) = options.shuffle_seed {
            shuffle(&mut order, seed);
        }
        if options.drop_last && options.batch_size > 0 {
            order.truncate(order.len() / options.batch_size * options.batch_size);
        }
        Batches {
            dataset: self,
            order,
            next: 0,
            batch_size: options.batch_size.max(1),
            format: options.format,
            device,
        }
    }
}

/// Fisher-Yates shuffle driven by `StdRng::seed_from_u64(seed)`, drawing `u64`s so the
/// order is the same on every platform.
pub fn shuffle(items: &mut [usize], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i as u64) as usize;
        items.swap(i, j);
    }
}

/// How [`Dataset::batches`] cuts the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    /// Images per batch (the last one may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// `Some(seed)`: a seeded random order; `None`: dataset order.
    pub shuffle_seed: Option<u64>,
    /// Drop a last, incomplete batch.
    pub drop_last: bool,
    /// Grey or binarised pixels.
    pub format: PixelFormat,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            batch_size: 64,
            shuffle_seed: None,
            drop_last: false,
            format: PixelFormat::Gray,
        }
    }
}

/// One batch: the dataset indices it holds, and its tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Positions in the dataset.
    pub indices: Vec<usize>,
    /// `N x 1 x rows x cols` f32.
    pub images: Tensor,
    /// `N` u32.
    pub labels: Tensor,
}

/// Iterator over [`Batch`]es, made by [`Dataset::batches`].
#[derive(Debug)]
pub struct Batches<'a> {
    dataset: &'a Dataset,
    order: Vec<usize>,
    next: usize,
    batch_size: usize,
    format: PixelFormat,
    device: &'a Device,
}

impl Batches<'_> {
    /// The order in which images are visited.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Number of batches in all.
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let indices = self.order[self.next..end].to_vec();
        self.next = end;
        let make = || {
            Ok(Batch {
                images: self
                    .dataset
                    .images_tensor(&indices, self.format, self.device)?,
                labels: self.dataset.labels_tensor(&indices, self.device)?,
                indices: indices.clone(),
            })
        };
        Some(make())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let pixels: Vec<u8> = (0..n * 4).map(|i| (i * 37 % 256) as u8).collect();
        Dataset::new(pixels, labels, 2, 2).unwrap()
    }

    #[test]
    fn counts_and_subsets() {
        let d = toy(35);
        assert_eq!(d.class_counts(), [4, 4, 4, 4, 4, 3, 3, 3, 3, 3]);
        let b = d.balanced(3).unwrap();
        assert_eq!(b.len(), 30);
        assert_eq!(b.class_counts(), [3; 10]);
        assert!(d.balanced(4).is_err());
        assert_eq!(d.first(7).len(), 7);
        assert_eq!(d.first(100).len(), 35);
        assert!(d.select(&[35]).is_err());
        assert_eq!(d.select(&[3, 1]).unwrap().labels(), &[3, 1]);
    }

    #[test]
    fn rejects_inconsistent_input() {
        assert!(Dataset::new(vec![0; 7], vec![1, 2], 2, 2).is_err());
        assert!(Dataset::new(vec![0; 8], vec![1, 12], 2, 2).is_err());
    }

    #[test]
    fn tensors_have_the_right_values() {
        let d = Dataset::new(vec![0, 127, 128, 255], vec![3], 2, 2).unwrap();
        let (x, y) = d.to_tensors(PixelFormat::Gray, &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[1, 1, 2, 2]);
        let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![0.0, 127.0 / 255.0, 128.0 / 255.0, 1.0]);
        assert_eq!(y.to_vec1::<u32>().unwrap(), vec![3]);
        let (xb, _) = d.to_tensors(PixelFormat::Binarized, &Device::Cpu).unwrap();
        let v: Vec<f32> = xb.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn batches_cover_everything_in_a_seeded_order() {
        let d = toy(23);
        let opts = BatchOptions {
            batch_size: 5,
            shuffle_seed: Some(7),
            ..Default::default()
        };
        let dev = Device::Cpu;
        let a: Vec<usize> = d.batches(&opts, &dev).order().to_vec();
        let b: Vec<usize> = d.batches(&opts, &dev).order().to_vec();
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..23).collect::<Vec<_>>());
        let other = d
            .batches(
                &BatchOptions {
                    shuffle_seed: Some(8),
                    ..opts.clone()
                },
                &dev,
            )
            .order()
            .to_vec();
        assert_ne!(a, other);
        let batches: Vec<Batch> = d.batches(&opts, &dev).map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 5);
        assert_eq!(batches[4].images.dims(), &[3, 1, 2, 2]);
        let dropped = d.batches(
            &BatchOptions {
                drop_last: true,
                ..opts
            },
            &dev,
        );
        assert_eq!(dropped.num_batches(), 4);
    }

    /// Guards the promise "same seed, same order on every machine": the permutation is
    /// pinned, so a change in the RNG or the shuffle shows up here.
    #[test]
    fn shuffle_order_is_pinned() {
        let mut v: Vec<usize> = (0..10).collect();
        shuffle(&mut v, 42);
        let mut w: Vec<usize> = (0..10).collect();
        shuffle(&mut w, 42);
        assert_eq!(v, w);
        assert_eq!(v, PINNED_SEED_42.to_vec());
    }

    const PINNED_SEED_42: [usize; 10] = [1, 7, 3, 8, 6, 0, 2, 9, 4, 5];
}
