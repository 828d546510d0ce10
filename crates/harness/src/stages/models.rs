//! The first stage: every model's accuracy on the evaluation split and the SVAE's figures.

use candle_core::Device;
use mnist_data::Dataset;
use models::Classifier;
use serde::{Deserialize, Serialize};

use crate::bundle::Models;
use crate::error::{HarnessError, Result};
use crate::progress::Progress;
use crate::shard::Units;

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

/// Images per unit of the models stage: the batch of every model's evaluation, so the
/// units' sums, added in order, are the whole split's to the last bit.
pub(crate) const MODELS_CHUNK: usize = 500;

/// One unit of the models stage: counts and sums over up to [`MODELS_CHUNK`] images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModelsUnit {
    images: usize,
    gapcnn: usize,
    mlp: usize,
    oracle: usize,
    latent_correct: usize,
    bce: f64,
    kl: f64,
    decoded: usize,
}

/// The counts and sums of `images`.
fn unit_of(models: &Models, images: &Dataset, device: &Device) -> Result<ModelsUnit> {
    let correct =
        |m: &dyn Classifier| models::train::correct_count(m, images, MODELS_CHUNK, device);
    let svae = models::train::svae_sums(&models.svae, images, device)?;
    Ok(ModelsUnit {
        images: images.len(),
        gapcnn: correct(&models.gapcnn)?,
        mlp: correct(&models.mlp)?,
        oracle: correct(&models.oracle)?,
        latent_correct: svae.latent_correct,
        bce: svae.bce,
        kl: svae.kl,
        decoded: models::train::decoded_correct(&models.svae, &models.oracle, images, device)?,
    })
}

/// The accuracies from the units, in order.
fn assemble(units: &[ModelsUnit]) -> Result<ModelAccuracies> {
    let mut sums = models::train::SvaeSums::default();
    let (mut gapcnn, mut mlp, mut oracle, mut decoded) = (0, 0, 0, 0);
    for u in units {
        sums = sums.then(&models::train::SvaeSums {
            images: u.images,
            latent_correct: u.latent_correct,
            bce: u.bce,
            kl: u.kl,
        });
        gapcnn += u.gapcnn;
        mlp += u.mlp;
        oracle += u.oracle;
        decoded += u.decoded;
    }
    let n = sums.images;
    if n == 0 {
        return Err(HarnessError::Other(
            "models: the evaluation split is empty".into(),
        ));
    }
    let figures = sums.figures();
    let rate = |k: usize| k as f64 / n as f64;
    Ok(ModelAccuracies {
        images: n,
        gapcnn: rate(gapcnn),
        mlp: rate(mlp),
        oracle: rate(oracle),
        svae_latent_accuracy: figures[0].1,
        svae_reconstruction_bce: figures[1].1,
        svae_kl: figures[2].1,
        svae_decoded_oracle_accuracy: rate(decoded),
    })
}

/// Images `u * MODELS_CHUNK ..` of `test`.
fn chunk(test: &Dataset, u: usize) -> Result<Dataset> {
    let idx: Vec<usize> = (u * MODELS_CHUNK..((u + 1) * MODELS_CHUNK).min(test.len())).collect();
    Ok(test.select(&idx).map_err(models::ModelError::from)?)
}

/// Every model evaluated on `test` in units of [`MODELS_CHUNK`] images (`None` in a
/// shard run).
pub(crate) fn model_units(
    models: &Models,
    test: &Dataset,
    units: &Units<'_>,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Option<ModelAccuracies>> {
    let count = test.len().div_ceil(MODELS_CHUNK);
    progress.start("models", count as u64, "chunks");
    let done = units.run("models", count, |u| {
        let unit = unit_of(models, &chunk(test, u)?, device)?;
        progress.advance(1);
        Ok(unit)
    })?;
    progress.finish();
    done.map(|u| assemble(&u)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units summed in order are the whole split's figures, bit for bit: 1,100 fixture
    /// images as 3 units (500, 500, 100) against the models crate's one-pass functions.
    #[test]
    fn units_assemble_to_the_one_pass_figures() {
        let device = Device::Cpu;
        let weights =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/weights");
        let models = crate::load_models(&weights, &device).unwrap();
        let splits = mnist_data::Source::Fixtures.load().unwrap();
        // The fixtures' train split (500 images) twice, then 100 test images: 1,100
        // images, 3 units.
        let (mut pixels, mut labels) = (
            splits.train.pixels().repeat(2),
            splits.train.labels().repeat(2),
        );
        pixels.extend_from_slice(&splits.test.pixels()[..100 * 784]);
        labels.extend_from_slice(&splits.test.labels()[..100]);
        let test = Dataset::new(pixels, labels, 28, 28).unwrap();
        assert_eq!(test.len(), 1100);
        let units: Vec<ModelsUnit> = (0..3)
            .map(|u| unit_of(&models, &chunk(&test, u).unwrap(), &device).unwrap())
            .collect();
        assert_eq!(
            units.iter().map(|u| u.images).collect::<Vec<_>>(),
            [500, 500, 100]
        );
        let a = assemble(&units).unwrap();
        let svae = models::train::evaluate_svae(&models.svae, &test, &device).unwrap();
        assert_eq!(a.images, 1100);
        assert_eq!(a.svae_latent_accuracy, svae[0].1);
        assert_eq!(a.svae_reconstruction_bce, svae[1].1);
        assert_eq!(a.svae_kl, svae[2].1);
        let acc = |m: &dyn Classifier| models::train::accuracy(m, &test, 500, &device).unwrap();
        assert_eq!(a.gapcnn, acc(&models.gapcnn));
        assert_eq!(a.mlp, acc(&models.mlp));
        assert_eq!(a.oracle, acc(&models.oracle));
        let decoded =
            models::train::decoded_accuracy(&models.svae, &models.oracle, &test, &device).unwrap();
        assert_eq!(a.svae_decoded_oracle_accuracy, decoded);
    }
}
