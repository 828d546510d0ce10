//! Errors of the `models` crate.

use std::path::PathBuf;

/// The error type of `models`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A checkpoint file that cannot be read or does not fit the architecture.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong: the tensor name and the defect.
        message: String,
    },
    /// Writing a checkpoint failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A bad argument (shape, configuration).
    #[error("{0}")]
    InvalidInput(String),
    /// Data loading failed.
    #[error(transparent)]
    Data(#[from] mnist_data::DataError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<common::WriteError> for ModelError {
    fn from(e: common::WriteError) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
