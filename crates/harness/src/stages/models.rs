//! The first stage: every model's accuracy on the evaluation split and the SVAE's figures.

use candle_core::Device;
use mnist_data::Dataset;
use models::Classifier;
use serde::{Deserialize, Serialize};

use crate::bundle::Models;
use crate::error::Result;
use crate::progress::Progress;

/// Each model's accuracy on the evaluation split, and the SVAE's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAccuracies {
    /// Images evaluated.
    pub images: usize,
    /// GapCnn test accuracy.
    pub gapcnn: f64,
    /// Mlp test accuracy.
    pub mlp: f64,
    /// Oracle test accuracy.
    pub oracle: f64,
    /// f2(mu(x)) accuracy.
    #[serde(with = "crate::nan::float")]
    pub svae_latent_accuracy: f64,
    /// Reconstruction BCE per image.
    #[serde(with = "crate::nan::float")]
    pub svae_reconstruction_bce: f64,
    /// KL per image.
    #[serde(with = "crate::nan::float")]
    pub svae_kl: f64,
    /// The oracle's accuracy on decode(mu(x)).
    pub svae_decoded_oracle_accuracy: f64,
}

/// Evaluates every model on `test`.
pub fn evaluate_models(
    models: &Models,
    test: &Dataset,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<ModelAccuracies> {
    progress.start("models", 5, "models");
    let acc = |m: &dyn Classifier| models::train::accuracy(m, test, 500, device);
    let gapcnn = acc(&models.gapcnn)?;
    progress.advance(1);
    let mlp = acc(&models.mlp)?;
    progress.advance(1);
    let oracle = acc(&models.oracle)?;
    progress.advance(1);
    let svae = models::train::evaluate_svae(&models.svae, test, device)?;
    progress.advance(1);
    let decoded = models::train::decoded_accuracy(&models.svae, &models.oracle, test, device)?;
    progress.advance(1);
    progress.finish();
    let get = |k: &str| {
        svae.iter()
            .find(|(n, _)| n == k)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    Ok(ModelAccuracies {
        images: test.len(),
        gapcnn,
        mlp,
        oracle,
        svae_latent_accuracy: get("latent_accuracy"),
        svae_reconstruction_bce: get("reconstruction_bce"),
        svae_kl: get("kl"),
        svae_decoded_oracle_accuracy: decoded,
    })
}
