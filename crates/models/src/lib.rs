//! The Classifier and CamModel traits, GapCnn, Mlp, the oracle and the supervised VAE, their training and safetensors checkpoints.
//!
//! This crate is filled by its own issue; until then it exports nothing.
