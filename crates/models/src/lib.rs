//! The models of the study, behind traits that attacks, maps and metrics use without
//! knowing an architecture: [`Classifier`] (logits, differentiable in the input),
//! [`FeatureClassifier`] (Grad-CAM's feature layer) and [`CamModel`] (features before
//! global average pooling and the linear head, so CAM needs no hooks).
//!
//! Models: [`GapCnn`] (the attacked f1 whose CAM is studied), [`Mlp`] (the Type I
//! paper's weak f1), [`Oracle`] (an independent, stronger judge) and [`Svae`] (the
//! supervised VAE with latent classifier and discriminator). Each has a seeded init and
//! safetensors checkpoints with PyTorch state-dict names, checked on load.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use models::{init_model, Classifier, GapCnn};
//! # fn main() -> Result<(), models::ModelError> {
//! let device = Device::Cpu;
//! let (model, _vars) = init_model::<GapCnn>(0, DType::F32, &device)?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &device)?;
//! assert_eq!(model.logits(&x)?.dims(), &[2, 10]);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod adam;
pub mod adversarial;
mod error;
mod gapcnn;
mod knn;
pub mod layers;
mod mlp;
mod oracle;
mod params;
pub mod random;
mod sequence;
pub mod svae;
pub mod train;
mod traits;

pub use adam::{Adam, AdamConfig};
pub use error::{ModelError, Result};
pub use gapcnn::GapCnn;
pub use knn::{vote, Knn, Neighbour};
pub use mlp::Mlp;
pub use oracle::Oracle;
pub use params::{
    check_finite, check_tensors, init_model, init_varmap, load_model, read_safetensors, save_model,
    save_tensors, varmap_tensors, Architecture, Init, ParamSpec,
};
pub use sequence::{Layer, LayerSequence};
pub use svae::Svae;
pub use traits::{CamModel, Classifier, FeatureClassifier};
