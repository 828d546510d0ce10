//! The evaluation that reproduces "is CAM reliable?": configuration, the ROC comparison
//! of Type I and Type II attacks, figures and report artifacts, written atomically.

#![deny(missing_docs)]

pub mod artifact;
mod error;
pub mod plot;
pub mod roc;

pub use error::{HarnessError, Result};
