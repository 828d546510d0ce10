//! Errors of the harness.

use std::path::PathBuf;

/// The error type of `harness`.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Reading or writing an artifact failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configuration file that cannot be used.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A configuration with settings that break their rules, every broken rule listed.
    #[error("{origin}: invalid configuration: {}", list(violations))]
    InvalidConfig {
        /// The file (or the profile) the configuration came from.
        origin: String,
        /// Each broken rule: the setting, its value and the rule.
        violations: Vec<Violation>,
    },
    /// Drawing a figure failed.
    #[error("figure {}: {message}", path.display())]
    Plot {
        /// The figure.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A metric could not be computed.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// A map could not be computed or drawn.
    #[error(transparent)]
    Cam(#[from] cam::CamError),
    /// A model or data operation failed.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// Data or Hub files could not be read or fetched.
    #[error(transparent)]
    Data(#[from] mnist_data::DataError),
    /// A Type II attack failed.
    #[error(transparent)]
    Attack(#[from] attacks::AttackError),
    /// A Type I attack failed.
    #[error(transparent)]
    TypeOne(#[from] vae_attack::AttackError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

fn list(violations: &[Violation]) -> String {
    let items: Vec<String> = violations.iter().map(ToString::to_string).collect();
    items.join("; ")
}

/// Result alias of this crate.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// One rule a configuration breaks: the setting, its value and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The setting (the TOML key).
    pub field: String,
    /// Its value, as written.
    pub value: String,
    /// What it must be.
    pub rule: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` = {}: {}", self.field, self.value, self.rule)
    }
}
