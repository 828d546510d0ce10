//! Everything one evaluation measured: the stages' results and the summary made of them.
//! The figures and the report read this and nothing else.

use crate::roc::RocComparison;
use crate::stages::{
    CleverResult, LeagueResult, ModelAccuracies, SandwichResult, Type1Result, Type2Result,
};
use crate::summary::{StageResults, Summary};

/// Everything the evaluation measured.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Model accuracies.
    pub models: ModelAccuracies,
    /// Per Type II attack.
    pub type2: Vec<Type2Result>,
    /// The Type I stage.
    pub type1: Type1Result,
    /// The ROC comparison.
    pub roc: RocComparison,
    /// CLEVER.
    pub clever: CleverResult,
    /// Certified <= CLEVER <= found, on the CLEVER images.
    pub sandwich: SandwichResult,
    /// The explanation league.
    pub league: LeagueResult,
    /// `summary.json` as written.
    pub summary: Summary,
}

impl Evaluation {
    /// The stages' results, by reference.
    pub fn stage_results(&self) -> StageResults<'_> {
        StageResults {
            models: &self.models,
            type2: &self.type2,
            type1: &self.type1,
            roc: &self.roc,
            clever: &self.clever,
            sandwich: &self.sandwich,
            league: &self.league,
        }
    }
}
