//! Errors of `vae-attack`.

/// The error type of `vae-attack`.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// Bad images, labels or targets.
    #[error("{0}")]
    InvalidInput(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T, E = AttackError> = std::result::Result<T, E>;
