//! The evaluation that reproduces "is CAM reliable?": configuration, the ROC comparison
//! of Type I and Type II attacks, figures and report artifacts, written atomically.

#![deny(missing_docs)]

pub mod artifact;
pub mod cam_change;
pub mod clever_stage;
pub mod config;
mod error;
pub mod evaluation;
pub mod inputs;
mod nan;
pub mod plot;
pub mod report;
pub mod roc;
pub mod runner;
pub mod sandwich;
pub mod type1;
pub mod type1_panel;
pub mod type2_examples;
pub mod weights;

pub use error::{HarnessError, Result};

pub use config::{ExperimentConfig, Violation};
pub use evaluation::{run_evaluation, Evaluation, Provenance};
pub use inputs::InputFingerprint;
pub use runner::{Models, Progress, Silent};
pub use weights::{fetch_weights, load_models, HubWeights, WEIGHT_FILES};
