//! Errors of this crate: every one names the file (or Hub repository) it is about.

use std::path::PathBuf;

/// What was wrong with the bytes of a data file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    /// The first four bytes are not the expected IDX magic number.
    #[error("wrong magic number {found:#010x} (expected {expected:#010x}, {what})")]
    WrongMagic {
        /// The magic number this kind of file must start with.
        expected: u32,
        /// The magic number found.
        found: u32,
        /// What the expected magic denotes.
        what: &'static str,
    },
    /// The file ends before the header or the data it announces.
    #[error("truncated: the header announces {expected} bytes but the file holds {found}")]
    Truncated {
        /// Bytes the header promises (header included).
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Bytes after the announced data.
    #[error("{extra} unexpected bytes after the {expected} announced ones")]
    TrailingBytes {
        /// Bytes the header promises (header included).
        expected: u64,
        /// Bytes beyond that.
        extra: u64,
    },
    /// The header announces more bytes than the reader's cap allows.
    #[error("the header announces {announced} bytes, above the cap of {cap} bytes")]
    TooLarge {
        /// Bytes the header promises (header included).
        announced: u64,
        /// The cap.
        cap: u64,
    },
    /// A dimension of zero rows or columns, or a size that overflows memory.
    #[error("unusable dimensions {dims:?}")]
    BadDimensions {
        /// The dimensions read from the header.
        dims: Vec<u32>,
    },
    /// A label outside 0..=9.
    #[error("label {label} at index {index} is outside 0..=9")]
    LabelOutOfRange {
        /// Position of the label.
        index: usize,
        /// Its value.
        label: u8,
    },
    /// The gzip stream is corrupt.
    #[error("corrupt gzip stream: {0}")]
    Gzip(String),
    /// A parquet file that cannot be read or lacks the expected columns.
    #[error("parquet: {0}")]
    Parquet(String),
    /// An embedded image (PNG) that cannot be decoded or has another size.
    #[error("image at row {row}: {message}")]
    Image {
        /// Row of the table.
        row: usize,
        /// What went wrong.
        message: String,
    },
}

/// The error type of `mnist-data`.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file that should exist does not.
    #[error("{}: file not found{}", path.display(), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Missing {
        /// The path looked for.
        path: PathBuf,
        /// What to do about it, if anything useful can be said.
        hint: Option<String>,
    },
    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file's content is malformed.
    #[error("{}: {defect}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        defect: Defect,
    },
    /// An image file and a label file that do not belong together.
    #[error("{} holds {images} images but {} holds {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Its record count.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Its record count.
        labels: usize,
    },
    /// A request the dataset cannot satisfy (a subset larger than a class, an index out of range...).
    #[error("{0}")]
    InvalidRequest(String),
    /// The Hugging Face Hub could not provide the data.
    #[error("Hugging Face Hub, {repo}: {message}")]
    Hub {
        /// The repository asked for.
        repo: String,
        /// What failed, and what to do about it.
        message: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
