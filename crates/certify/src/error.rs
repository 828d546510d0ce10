//! Errors of the bound computations.

/// What went wrong; user input (a network that does not fit together, an image of the
/// wrong shape or outside [0, 1], a bad radius) is named, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    /// A layer does not fit the shape it receives, or its tensors are malformed.
    #[error("layer {index} ({kind}): {reason}")]
    Layer {
        /// Position in the sequence (0 = first).
        index: usize,
        /// The layer kind (`linear`, `conv2d`, ...).
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A bad argument (image, class, radius, search settings).
    #[error("invalid input: {0}")]
    Input(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with a [`CertifyError`].
pub type Result<T> = std::result::Result<T, CertifyError>;

pub(crate) fn input(reason: impl Into<String>) -> CertifyError {
    CertifyError::Input(reason.into())
}
