//! Type I attacks: class transition and the SVAE latent attack that changes the digit while the classifier keeps its label.
//!
//! This crate is filled by its own issue; until then it exports nothing.
