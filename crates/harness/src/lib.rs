//! The evaluation that reproduces "is CAM reliable?" and goes beyond it: every stage of
//! the study on one set of models, cached per stage, summarised in one typed schema,
//! drawn and reported.
//!
//! Data flows one way through the modules:
//!
//! 1. **Configuration and inputs**: [`ExperimentConfig`] (profiles, TOML, validation
//!    rules), the models bundle [`Models`] loaded by [`load_models`] or
//!    [`fetch_weights`], and the [`InputFingerprint`] of weights and test set (part of
//!    [`Provenance`]).
//! 2. **Stages** (`stages/`, one file each): models, one Type II stage per attack,
//!    Type I, CLEVER, the certified sandwich, the ROC population, the explanation league
//!    (every explanation method under both attack types). Each writes its CSV
//!    tables and returns a serde result that the stage cache keeps in
//!    `stages/<name>.json`, keyed by configuration and inputs, so a killed run resumes.
//! 3. **Results**: [`Evaluation`] holds every stage's result and the [`Summary`] made of
//!    them, `summary.json`'s one schema (documented in `docs/SUMMARY.md`, which a test
//!    checks against it).
//! 4. **Figures and report**, drawn from the results alone.
//! 5. **The entry point**: [`run_evaluation`], which `cargo xtask reproduce` calls.
//!
//! ```no_run
//! # fn main() -> harness::Result<()> {
//! use std::path::Path;
//! use candle_core::Device;
//! let device = Device::Cpu;
//! let weights = Path::new("fixtures/weights");
//! let splits = mnist_data::Source::Fixtures.load()?;
//! let models = harness::load_models(weights, &device)?;
//! let provenance = harness::Provenance {
//!     data: "fixtures".into(),
//!     weights: weights.display().to_string(),
//!     inputs: harness::InputFingerprint::of_weights_dir(weights, &splits.test)?,
//! };
//! let config = harness::ExperimentConfig::quick();
//! let e = harness::run_evaluation(
//!     &models, &splits.train, &splits.test, &config, &provenance,
//!     Path::new("results"), &device, &mut harness::Silent,
//! )?;
//! println!("Type I consensus: {}", e.summary.type1.modes.constrained.consensus);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod artifact;
mod bundle;
mod cache;
mod cam_change;
mod compare;
mod config;
mod error;
mod evaluation;
mod figures;
mod inputs;
mod nan;
mod progress;
mod report;
mod results;
mod roc;
mod shard;
mod stages;
mod summary;
mod weights;

pub use artifact::{csv, write_atomic};
pub use bundle::Models;
pub use cache::StageTime;
pub use cam_change::{CamChange, MapChange};
pub use compare::{compare_runs, FileComparison, BUILD_KEYS, TIMING_KEYS};
pub use config::ExperimentConfig;
pub use error::{HarnessError, Result, Violation};
pub use evaluation::{merge_shards, run_evaluation, run_shard};
pub use inputs::{InputFingerprint, ProgramIdentity, Provenance};
pub use progress::{Progress, Silent};
pub use results::Evaluation;
pub use roc::{RocComparison, Scored};
pub use shard::{check_shards, owner, Shard, ShardManifest, SHARD_FILE};
pub use stages::league::{
    Detection, FigureCell, LeagueTable, MeanOf, MethodScores, Populations, Ranked, Type1Cell,
    Type2Cell, Verdict, LEAGUE_ATTACKS,
};
pub use stages::type1::{
    judge_accuracy, pixel_rows, rows_csv, run_mode, stack_vertically, strip_path, success_grid,
    titled, transition_strip, Checkpoint, FrameReading, JudgeAccuracy, ModeRun, ModeSummary,
    PairRow, PanelInputs, Rate, TransitionStrip, Type1Pairs,
};
pub use stages::{
    CleverResult, CleverRow, KeptExample, LeagueResult, ModelAccuracies, RocPopulation,
    SandwichResult, Type1Result, Type2Example, Type2Result,
};
pub use summary::{Claims, Summary};
pub use weights::{fetch_weights, load_models, HubWeights, WEIGHT_FILES};
