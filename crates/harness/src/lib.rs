//! Experiment configuration, the full Type I / Type II evaluation and its artifacts (JSON, CSV, PNG, report).
//!
//! This crate is filled by its own issue; until then it exports nothing.
