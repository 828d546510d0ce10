//! The figures drawn from the stages' results (never from the models): `roc.png`,
//! `sandwich.png`, `clever_l2.png`, `type2_examples.png` and `explain_league.png`. A rerun that loads every
//! stage from the cache draws them again. (The Type I strips and success grid need the
//! models, so the Type I stage draws them.)

use std::path::Path;

use crate::error::Result;
use crate::roc::RocComparison;
use crate::stages::{CleverResult, LeagueResult, SandwichResult, Type2Result};

mod league;
mod plots;
mod type2_examples;

pub use league::{league_figure, LEAGUE_FIGURE};
pub use plots::{clever_scatter, roc_figure, sandwich_figure};
pub use type2_examples::type2_examples_figure;

/// The sandwich figure's file name.
pub const SANDWICH_FIGURE: &str = "sandwich.png";
/// The CLEVER scatter's file name.
pub const CLEVER_FIGURE: &str = "clever_l2.png";

/// Draws every figure of the results into `out`.
pub fn draw_all(
    out: &Path,
    type2: &[Type2Result],
    clever: &CleverResult,
    sandwich: &SandwichResult,
    roc: &RocComparison,
    league: &LeagueResult,
) -> Result<()> {
    let points: Vec<(f64, f64)> = clever
        .rows
        .iter()
        .filter_map(|r| r.found_l2.map(|f| (r.clever_l2, f)))
        .collect();
    clever_scatter(
        &out.join(CLEVER_FIGURE),
        "CLEVER L2 vs smallest L2 found (CW-L2, DeepFool)",
        &points,
    )?;
    roc_figure(&out.join("roc.png"), roc)?;
    sandwich_figure(&out.join(SANDWICH_FIGURE), sandwich)?;
    if type2.iter().any(|t| !t.examples.is_empty()) {
        type2_examples_figure(&out.join("type2_examples.png"), type2)?;
    }
    league_figure(&out.join(LEAGUE_FIGURE), league)?;
    Ok(())
}
