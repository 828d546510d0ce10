//! Errors of the `cam` crate.

use std::path::PathBuf;

use crate::map_status::MapStatus;

/// The error type of `cam`.
#[derive(Debug, thiserror::Error)]
pub enum CamError {
    /// A class index outside `0..num_classes`.
    #[error("class {class} is out of range: the model has {num_classes} classes")]
    ClassOutOfRange {
        /// The class asked for.
        class: usize,
        /// How many classes the model has.
        num_classes: usize,
    },
    /// A tensor or slice whose shape does not fit (the message says which and why).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A bad argument: an upsampling factor, an empty list, a style value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A map that a convention could not turn into something informative, reported by
    /// [`crate::ScaledMaps::require_informative`].
    #[error("map {index} is degenerate: {status}")]
    DegenerateMap {
        /// Row-major index of the map among all maps of the batch.
        index: usize,
        /// What is wrong with it.
        status: MapStatus,
    },
    /// NaN or infinite values where pixels or map values were expected.
    #[error("{0} contains NaN or infinite values")]
    NotFinite(&'static str),
    /// A caption character the built-in bitmap font cannot draw.
    #[error("the caption font has no glyph for {0:?}")]
    UnsupportedCharacter(char),
    /// Writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// PNG encoding failed.
    #[error("encoding PNG: {0}")]
    Image(#[from] image::ImageError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T, E = CamError> = std::result::Result<T, E>;
