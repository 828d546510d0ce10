//! TPR/FPR, ROC and AUC, attack statistics, map-change metrics and the CLEVER robustness score.
//!
//! This crate is filled by its own issue; until then it exports nothing.
