//! Errors of this crate: each names the input it is about and what is wrong with it.

/// The error type of `metrics`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// A model evaluation (forward or gradient) failed.
    #[error("model evaluation failed: {0}")]
    Model(String),
    /// An input with no elements where at least one is needed.
    #[error("{what} is empty")]
    EmptyInput {
        /// Which input.
        what: &'static str,
    },
    /// Two inputs that must have the same length do not.
    #[error("length mismatch: {left_name} has {left} elements but {right_name} has {right}")]
    LengthMismatch {
        /// Name of the first input.
        left_name: &'static str,
        /// Its length.
        left: usize,
        /// Name of the second input.
        right_name: &'static str,
        /// Its length.
        right: usize,
    },
    /// A NaN (or, where stated, an infinite value) in an input.
    #[error("{what} holds a non-finite value {value} at index {index}")]
    NotFinite {
        /// Which input.
        what: &'static str,
        /// Position of the first offending value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A ROC curve or a true positive rate needs at least one positive example.
    #[error("no positive examples: the true positive rate is undefined")]
    NoPositives,
    /// A ROC curve or a false positive rate needs at least one negative example.
    #[error("no negative examples: the false positive rate is undefined")]
    NoNegatives,
    /// Precision needs at least one example predicted positive.
    #[error("no example is predicted positive: precision is undefined")]
    NoPredictedPositives,
    /// A class index outside `0..n_classes`.
    #[error("class {class} at index {index} is outside 0..{n_classes}")]
    ClassOutOfRange {
        /// Position of the label.
        index: usize,
        /// The label.
        class: usize,
        /// Number of classes.
        n_classes: usize,
    },
    /// A parameter outside its allowed range (a quantile outside [0, 1], k = 0...).
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: f64,
        /// What is allowed.
        reason: &'static str,
    },
    /// A correlation with a map (or ranking) that does not vary: it is undefined.
    #[error("{which} is constant: its correlation with anything is undefined")]
    ConstantMap {
        /// Which map.
        which: &'static str,
    },
    /// A centre of mass of a map whose mass (after clipping negatives to 0) is zero.
    #[error("{which} has zero mass after clipping negative values to 0")]
    ZeroMass {
        /// Which map.
        which: &'static str,
    },
    /// A map whose length is not `height * width`.
    #[error("{which} has {len} values, not height {height} x width {width}")]
    ShapeMismatch {
        /// Which map.
        which: &'static str,
        /// Its length.
        len: usize,
        /// Claimed height.
        height: usize,
        /// Claimed width.
        width: usize,
    },
    /// A map smaller than the SSIM window.
    #[error("a {height} x {width} map is smaller than the {window} x {window} SSIM window")]
    MapTooSmall {
        /// Map height.
        height: usize,
        /// Map width.
        width: usize,
        /// Window side.
        window: usize,
    },
    /// A vector of x values for the trapezoid rule that is neither non-decreasing nor non-increasing.
    #[error("x values are not monotonic at index {index}")]
    NotMonotonic {
        /// First index where the direction changes.
        index: usize,
    },
    /// Fewer samples than an estimator needs.
    #[error("{what} needs at least {needed} samples, got {got}")]
    TooFewSamples {
        /// The estimator.
        what: &'static str,
        /// Minimum count.
        needed: usize,
        /// Count given.
        got: usize,
    },
    /// A sample whose values are all equal: no continuous distribution can be fitted.
    #[error("all {n} samples equal {value}: no distribution can be fitted")]
    DegenerateSample {
        /// Sample size.
        n: usize,
        /// The common value.
        value: f64,
    },
}

/// Result alias of this crate.
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// Fails with [`MetricsError::EmptyInput`] if `values` is empty.
pub(crate) fn ensure_non_empty<T>(what: &'static str, values: &[T]) -> Result<()> {
    if values.is_empty() {
        return Err(MetricsError::EmptyInput { what });
    }
    Ok(())
}

/// Fails with [`MetricsError::LengthMismatch`] unless both slices have the same length.
pub(crate) fn ensure_same_len<A, B>(
    left_name: &'static str,
    left: &[A],
    right_name: &'static str,
    right: &[B],
) -> Result<()> {
    if left.len() != right.len() {
        return Err(MetricsError::LengthMismatch {
            left_name,
            left: left.len(),
            right_name,
            right: right.len(),
        });
    }
    Ok(())
}

/// Fails with [`MetricsError::NotFinite`] on the first NaN or infinity.
pub(crate) fn ensure_finite(
    what: &'static str,
    values: impl IntoIterator<Item = f64>,
) -> Result<()> {
    for (index, value) in values.into_iter().enumerate() {
        if !value.is_finite() {
            return Err(MetricsError::NotFinite { what, index, value });
        }
    }
    Ok(())
}

/// Fails with [`MetricsError::NotFinite`] on the first NaN (infinities pass).
pub(crate) fn ensure_not_nan(what: &'static str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| v.is_nan()) {
        Some(index) => Err(MetricsError::NotFinite {
            what,
            index,
            value: f64::NAN,
        }),
        None => Ok(()),
    }
}

/// Fails with [`MetricsError::ShapeMismatch`] unless `map.len() == height * width > 0`.
pub(crate) fn check_shape(
    map: &[f32],
    height: usize,
    width: usize,
    which: &'static str,
) -> Result<()> {
    if map.is_empty() || height.checked_mul(width) != Some(map.len()) {
        return Err(MetricsError::ShapeMismatch {
            which,
            len: map.len(),
            height,
            width,
        });
    }
    Ok(())
}
