//! MNIST and Fashion-MNIST for candle: IDX files (raw or gzip, detected by content),
//! the Hugging Face Hub (cache first, then network), and small bundled fixtures; a
//! [`Dataset`] of `u8` images with class-balanced subsets and seeded batching into
//! `N x 1 x 28 x 28` f32 tensors (grey in [0, 1], or binarised for the SVAE).
//!
//! ```
//! use mnist_data::{BatchOptions, PixelFormat, Source};
//! # fn main() -> Result<(), mnist_data::DataError> {
//! let splits = Source::Fixtures.load()?;
//! assert_eq!(splits.test.class_counts(), [50; 10]);
//! let device = candle_core::Device::Cpu;
//! let options = BatchOptions { batch_size: 100, shuffle_seed: Some(1), ..Default::default() };
//! for batch in splits.train.batches(&options, &device) {
//!     let batch = batch?;
//!     assert_eq!(batch.images.dims()[1..], [1, 28, 28]);
//! }
//! let (x, _) = splits.test.first(3).to_tensors(PixelFormat::Binarized, &device)?;
//! assert_eq!(x.dims(), &[3, 1, 28, 28]);
//! # Ok(()) }
//! ```
//!
//! Errors are [`DataError`] values naming the file and its defect; no input bytes make
//! this crate panic (a property test feeds it arbitrary and mutated files).

#![deny(missing_docs)]

mod dataset;
mod error;
mod footer;
pub mod hub;
pub mod idx;
mod parquet;
mod source;
mod splits;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use dataset::{shuffle, Batch, BatchOptions, Batches, Dataset, PixelFormat, NUM_CLASSES};
pub use error::{DataError, Defect, Result};
pub use hub::{FetchedFiles, HubFiles, HubSource, RepoKind};
pub use parquet::load_parquet;
pub use source::{
    fixtures_dir, load_dir, load_dir_capped, load_fixtures, load_split, load_split_capped, Source,
    FIXTURES_ENV,
};
pub use splits::{load_pair, load_pair_capped, standard_file_names, Split, Splits};
