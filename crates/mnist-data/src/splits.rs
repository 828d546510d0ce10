//! What every loader returns and shares: the two splits, their standard file names, and
//! one split read from an images file and a labels file.

use std::path::Path;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::idx;

/// A train and a test split, and where they came from.
#[derive(Debug, Clone)]
pub struct Splits {
    /// The training split.
    pub train: Dataset,
    /// The test split.
    pub test: Dataset,
    /// Human-readable provenance (a directory, a Hub repo and commit, "fixtures").
    pub origin: String,
}

/// A split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// 60,000 images in MNIST.
    Train,
    /// 10,000 images in MNIST.
    Test,
}

impl Split {
    /// The file-name prefix of the split in the standard distribution.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// The standard file names (MNIST and Fashion-MNIST share them) of a split,
/// as (images, labels), without the `.gz` suffix.
pub fn standard_file_names(split: Split) -> (String, String) {
    let p = split.file_prefix();
    (
        format!("{p}-images-idx3-ubyte"),
        format!("{p}-labels-idx1-ubyte"),
    )
}

/// Loads one split from an images file and a labels file that must agree in count.
pub fn load_pair(images_path: &Path, labels_path: &Path) -> Result<Dataset> {
    load_pair_capped(images_path, labels_path, None)
}

/// [`load_pair`] with each file's decoded size (header included) capped at `max_bytes`:
/// a header announcing more is refused before any data is read.
pub fn load_pair_capped(
    images_path: &Path,
    labels_path: &Path,
    max_bytes: Option<u64>,
) -> Result<Dataset> {
    let images = idx::read_images_capped(images_path, max_bytes)?;
    let labels = idx::read_labels_capped(labels_path, max_bytes)?;
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: images.count,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    Dataset::new(images.pixels, labels, images.rows, images.cols)
}
