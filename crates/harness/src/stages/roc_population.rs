//! The ROC stage: f1's scores of every image of the evaluation split, clean, and of the
//! configured Type II attack's example of every positive. The comparison itself
//! ([`crate::roc::roc_comparison`]) is computed from this and the Type I stage's result.

use attacks::Targeting;
use candle_core::{Device, D};
use mnist_data::{Dataset, PixelFormat};
use models::Classifier;
use serde::{Deserialize, Serialize};

use crate::bundle::Models;
use crate::config::ExperimentConfig;
use crate::error::{HarnessError, Result};
use crate::progress::Progress;
use crate::roc::Scored;
use crate::shard::Units;
use crate::stages::softmax_rows;

/// The ROC comparison's population: f1's clean scores of every image of the evaluation
/// split, and the configured Type II attack's example of every positive among them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocPopulation {
    /// Every evaluation image, clean.
    pub clean: Vec<Scored>,
    /// The Type II example of each positive, in the order of `clean`.
    pub type2_of_positives: Vec<Scored>,
    /// The attack used.
    pub attack: String,
    /// Positives whose example f1 no longer calls positive.
    pub flipped: usize,
}

/// Scores every image of `eval` with f1 (a unit per 500 images, or `batch_size` if
/// larger) and runs `config.roc_type2_attack` on every positive (a unit per
/// `batch_size` positives); `None` in a shard run.
pub(crate) fn roc_population(
    models: &Models,
    eval: &Dataset,
    config: &ExperimentConfig,
    units: &Units<'_>,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Option<RocPopulation>> {
    let p = config.positive_class;
    let attack = config
        .type2_attacks()
        .into_iter()
        .find(|a| a.name() == config.roc_type2_attack)
        .ok_or_else(|| {
            HarnessError::Other(format!(
                "roc_type2_attack: no Type II attack named {}",
                config.roc_type2_attack
            ))
        })?;
    let batch = config.batch_size.max(1);
    let chunk = batch.max(500);
    let clean = units.run("roc_clean", eval.len().div_ceil(chunk), |u| {
        let idx: Vec<usize> = (u * chunk..((u + 1) * chunk).min(eval.len())).collect();
        let x = eval
            .images_tensor(&idx, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let logits = models.gapcnn.logits(&x)?;
        let probs = softmax_rows(&logits)?;
        let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        Ok(idx
            .iter()
            .enumerate()
            .map(|(j, &i)| Scored {
                score: f64::from(probs[j][p as usize]),
                predicted_positive: pred[j] == p,
                positive: eval.label(i) == Some(p as u8),
            })
            .collect::<Vec<Scored>>())
    })?;
    let positives: Vec<usize> = (0..eval.len())
        .filter(|&i| eval.label(i) == Some(p as u8))
        .collect();
    progress.start(
        &format!("ROC: {} on positives", attack.name()),
        positives.len() as u64,
        "images",
    );
    let attacked = units.run("roc_positives", positives.len().div_ceil(batch), |u| {
        let idx = &positives[u * batch..((u + 1) * batch).min(positives.len())];
        let x = eval
            .images_tensor(idx, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let ids: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
        let o = attack.run_examples(
            &models.gapcnn,
            &x,
            &vec![p; idx.len()],
            &Targeting::Untargeted,
            &ids,
        )?;
        let probs = softmax_rows(&o.logits_after)?;
        progress.advance(idx.len() as u64);
        Ok(probs
            .iter()
            .zip(&o.adversarial_predictions)
            .map(|(row, &pred)| Scored {
                score: f64::from(row[p as usize]),
                predicted_positive: pred == p,
                positive: true,
            })
            .collect::<Vec<Scored>>())
    })?;
    progress.finish();
    let (Some(clean), Some(attacked)) = (clean, attacked) else {
        return Ok(None);
    };
    let clean: Vec<Scored> = clean.into_iter().flatten().collect();
    let type2_of_positives: Vec<Scored> = attacked.into_iter().flatten().collect();
    let flipped = positives
        .iter()
        .zip(&type2_of_positives)
        .filter(|(&i, a)| clean[i].predicted_positive && !a.predicted_positive)
        .count();
    Ok(Some(RocPopulation {
        clean,
        type2_of_positives,
        attack: attack.name().to_string(),
        flipped,
    }))
}
