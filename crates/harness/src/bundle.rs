//! The models one evaluation uses, loaded together (see [`crate::load_models`]).

use models::{GapCnn, Mlp, Oracle, Svae};

/// The five trained models.
#[derive(Debug)]
pub struct Models {
    /// The attacked f1 (CAM-able).
    pub gapcnn: GapCnn,
    /// The second f1.
    pub mlp: Mlp,
    /// The independent judge.
    pub oracle: Oracle,
    /// The supervised VAE.
    pub svae: Svae,
    /// The adversarially trained judge (the oracle's architecture).
    pub robust_oracle: Oracle,
}
