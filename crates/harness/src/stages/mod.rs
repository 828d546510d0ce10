//! The evaluation's stages, in the order [`crate::run_evaluation`] runs them. Each takes
//! the models, the data and the configuration, writes its own artifacts (CSV tables, and
//! the pictures only it can draw because they need the models: the Type I strips and
//! grid) and returns a serde result that the stage cache keeps in `stages/<name>.json`:
//!
//! | stage | file | result |
//! | --- | --- | --- |
//! | `models` | [`models`] | [`ModelAccuracies`] |
//! | `type2_<attack>` | [`type2`] | [`Type2Result`] (with [`Type2Example`]s) |
//! | `type1` | [`type1`] | [`Type1Result`] |
//! | `clever` | [`clever`] | [`CleverResult`] |
//! | `sandwich` | [`sandwich`] | [`SandwichResult`] |
//! | `roc` | [`roc_population`] | [`RocPopulation`] |
//! | `league` | [`league`] | [`LeagueResult`] (from the attack stages' [`KeptExample`]s) |
//!
//! Stages depend on the layer below (configuration, inputs, the models bundle, the
//! shared measures in [`crate::cam_change`] and [`crate::roc`]) and on earlier stages'
//! result types, never on the summary, the figures or the report.

use candle_core::{DType, Tensor, D};

use crate::error::Result;

pub mod clever;
pub mod kept;
pub mod league;
pub mod models;
pub mod roc_population;
pub mod sandwich;
pub mod type1;
pub mod type2;
pub mod type2_examples;

pub use clever::{CleverResult, CleverRow};
pub use kept::KeptExample;
pub use league::LeagueResult;
pub use models::ModelAccuracies;
pub use roc_population::RocPopulation;
pub use sandwich::SandwichResult;
pub use type1::{run_type1, Type1Result};
pub use type2::Type2Result;
pub use type2_examples::Type2Example;

/// Softmax of each row of `logits`, as f32.
pub(crate) fn softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(candle_nn::ops::softmax(logits, D::Minus1)?
        .to_dtype(DType::F32)?
        .to_vec2()?)
}
