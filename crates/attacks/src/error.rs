//! Errors of the `attacks` crate.

/// The error type of `attacks`: bad input is an error value, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// Images, labels, targets or a configuration that an attack cannot work with
    /// (pixels outside [0, 1], a label count that is not the batch size, `eps < 0`, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An attack asked for something it does not do (DeepFool is untargeted only).
    #[error("{attack} does not support {what}")]
    Unsupported {
        /// The attack's name.
        attack: &'static str,
        /// What was asked for.
        what: &'static str,
    },
    /// A tensor operation failed (including inside the model).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T, E = AttackError> = std::result::Result<T, E>;

/// An [`AttackError::InvalidInput`] from anything printable.
pub(crate) fn invalid(message: impl Into<String>) -> AttackError {
    AttackError::InvalidInput(message.into())
}
