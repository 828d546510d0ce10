//! The evaluation, stage by stage. Each stage writes its artifacts, then its result as
//! `stages/<name>.json` (atomically, tagged with the configuration and the
//! [`InputFingerprint`] of the weights and test set); a rerun with the same configuration
//! and inputs loads finished stages instead of recomputing them, so a killed run loses
//! nothing it had finished, and a run with other weights or data reuses nothing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use attacks::{
    Attack, AttackOutcome, CarliniWagnerL2, DeepFool, Fgsm, PgdConfig, PgdL2, PgdLinf, Targeting,
};
use candle_core::{DType, Device, Tensor, D};
use mnist_data::{Dataset, PixelFormat};
use models::{Classifier, GapCnn, Mlp, Oracle, Svae};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::artifact::{csv, write_atomic};
use crate::cam_change::{cam_28, noised_batch, pair_figures, CamChange, MapChange};
use crate::config::ExperimentConfig;
use crate::error::{HarnessError, Result};
use crate::inputs::InputFingerprint;
use crate::roc::Scored;
use crate::type2_examples::{examples_of, Type2Example, EXAMPLE_ROWS};

/// The four trained models.
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

pub use common::progress::{Progress, Silent};

/// A stage's result with what made it. A file without `inputs` (written before they were
/// recorded) does not parse, so it is recomputed.
#[derive(Serialize, Deserialize)]
struct Cached<T> {
    config: ExperimentConfig,
    inputs: InputFingerprint,
    result: T,
}

/// Runs `compute` unless `stages/<name>.json` holds a result of the same configuration
/// and the same inputs; otherwise the new result replaces the file (atomically).
pub(crate) fn stage<T: Serialize + DeserializeOwned>(
    out: &Path,
    name: &str,
    config: &ExperimentConfig,
    inputs: &InputFingerprint,
    compute: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let path = out.join("stages").join(format!("{name}.json"));
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(cached) = serde_json::from_str::<Cached<T>>(&text) {
            if &cached.config == config && &cached.inputs == inputs {
                return Ok(cached.result);
            }
        }
    }
    let result = compute()?;
    let cached = Cached {
        config: config.clone(),
        inputs: inputs.clone(),
        result,
    };
    let text = serde_json::to_string(&cached).map_err(|e| HarnessError::Other(e.to_string()))?;
    write_atomic(&path, text.as_bytes())?;
    Ok(cached.result)
}

fn softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(candle_nn::ops::softmax(logits, D::Minus1)?
        .to_dtype(DType::F32)?
        .to_vec2()?)
}

/// Test accuracy of the models and the SVAE's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFigures {
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
) -> Result<ModelFigures> {
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
    Ok(ModelFigures {
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

/// Figures of one Type II attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type2Figures {
    /// Attack name.
    pub attack: String,
    /// Images attacked.
    pub images: usize,
    /// Successes among the correctly classified images.
    pub success_rate: f64,
    /// Correct and not broken, over all images.
    pub robust_accuracy: f64,
    /// Mean L2 of successful perturbations.
    #[serde(with = "crate::nan::float")]
    pub mean_l2: f64,
    /// Mean Linf of successful perturbations.
    #[serde(with = "crate::nan::float")]
    pub mean_linf: f64,
    /// Mean L0 of successful perturbations.
    #[serde(with = "crate::nan::float")]
    pub mean_l0: f64,
    /// Some gradient was zero or not finite.
    pub gradient_masking_suspected: bool,
    /// Images per second.
    pub images_per_second: f64,
    /// CAM of f1's predicted class, clean vs adversarial: over the successes, over
    /// every example, and the noise control.
    pub cam: MapChange,
    /// Per image: L2 of a successful perturbation (for the CLEVER comparison).
    pub l2_per_image: Vec<Option<f64>>,
    /// Per image: Linf of a successful perturbation.
    pub linf_per_image: Vec<Option<f64>>,
    /// The first few adversarial examples, for `type2_examples.png`.
    pub examples: Vec<Type2Example>,
}

/// The smallest successful perturbation among `names`' attacks on test image `i`, and
/// which attack found it (`names` empty: every attack).
pub fn smallest_found(
    type2: &[Type2Figures],
    names: &[&str],
    i: usize,
    norm: fn(&Type2Figures) -> &Vec<Option<f64>>,
) -> Option<(f64, String)> {
    type2
        .iter()
        .filter(|t| names.is_empty() || names.contains(&t.attack.as_str()))
        .filter_map(|t| {
            norm(t)
                .get(i)
                .copied()
                .flatten()
                .map(|v| (v, t.attack.clone()))
        })
        .fold(None, |m: Option<(f64, String)>, v| match m {
            Some(m) if m.0 <= v.0 => Some(m),
            _ => Some(v),
        })
}

/// The attacks of the configuration, by name.
pub fn type2_attacks(c: &ExperimentConfig) -> Vec<Box<dyn Attack>> {
    let pgd = |eps, step_size| PgdConfig {
        eps,
        step_size,
        steps: c.pgd_steps,
        random_start: true,
        restarts: 1,
        seed: c.seed,
    };
    vec![
        Box::new(Fgsm { eps: c.linf_eps }),
        Box::new(PgdLinf(pgd(c.linf_eps, c.pgd_linf_step))),
        Box::new(PgdL2(pgd(c.l2_eps, c.pgd_l2_step))),
        Box::new(CarliniWagnerL2 {
            steps: c.cw_steps,
            binary_search_steps: c.cw_binary_steps,
            ..CarliniWagnerL2::default()
        }),
        Box::new(DeepFool {
            max_steps: c.deepfool_steps,
            ..DeepFool::default()
        }),
    ]
}

/// Runs one Type II attack on the first `config.type2_images` test images, in batches;
/// writes `type2_<attack>.csv`.
pub fn run_type2(
    attack: &dyn Attack,
    models: &Models,
    test: &Dataset,
    config: &ExperimentConfig,
    out: &Path,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Type2Figures> {
    let wanted = if attack.name() == "cw-l2" {
        config.cw_images.min(config.type2_images)
    } else {
        config.type2_images
    };
    let n = wanted.min(test.len());
    let p = config.positive_class;
    progress.start(&format!("type II {}", attack.name()), n as u64, "images");
    let t0 = Instant::now();
    let mut outcomes: Vec<AttackOutcome> = Vec::new();
    let mut csv_rows = Vec::new();
    let mut cam_set: Vec<CamBatch> = Vec::new();
    let mut l2_per_image = Vec::with_capacity(n);
    let mut linf_per_image = Vec::with_capacity(n);
    let mut examples = Vec::new();
    for start in (0..n).step_by(config.batch_size.max(1)) {
        let idx: Vec<usize> = (start..(start + config.batch_size.max(1)).min(n)).collect();
        let x = test
            .images_tensor(&idx, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let labels: Vec<u32> = idx
            .iter()
            .map(|&i| u32::from(test.label(i).unwrap_or(0)))
            .collect();
        let o = attack.run(&models.gapcnn, &x, &labels, &Targeting::Untargeted)?;
        if examples.len() < EXAMPLE_ROWS {
            let room = EXAMPLE_ROWS - examples.len();
            examples.extend(examples_of(&o, &idx, &labels, room)?);
        }
        let probs_before = softmax_rows(&o.logits_before)?;
        let probs_after = softmax_rows(&o.logits_after)?;
        for (j, &i) in idx.iter().enumerate() {
            csv_rows.push(vec![
                i.to_string(),
                labels[j].to_string(),
                o.clean_predictions[j].to_string(),
                o.adversarial_predictions[j].to_string(),
                o.success[j].to_string(),
                o.l0[j].to_string(),
                format!("{:.6}", o.l2[j]),
                format!("{:.6}", o.linf[j]),
                format!("{:.6}", probs_before[j][p as usize]),
                format!("{:.6}", probs_after[j][p as usize]),
            ]);
            l2_per_image.push(o.success[j].then_some(o.l2[j]));
            linf_per_image.push(o.success[j].then_some(o.linf[j]));
        }
        // CAM of the class f1 decides, before and after, on the first `cam_images`.
        let room = config.cam_images.saturating_sub(cam_set.len());
        let take = room.min(idx.len());
        if take > 0 {
            cam_set.push(CamBatch {
                clean: x.narrow(0, 0, take)?,
                adversarial: o.adversarial.narrow(0, 0, take)?,
                before: o.clean_predictions[..take]
                    .iter()
                    .map(|&c| c as usize)
                    .collect(),
                after: o.adversarial_predictions[..take]
                    .iter()
                    .map(|&c| c as usize)
                    .collect(),
                success: o.success[..take].to_vec(),
                l2: o.l2[..take].to_vec(),
                index: idx[..take].to_vec(),
            });
        }
        progress.advance(idx.len() as u64);
        outcomes.push(o);
    }
    progress.finish();
    let seconds = t0.elapsed().as_secs_f64();
    write_atomic(
        &out.join(format!("type2_{}.csv", attack.name())),
        csv(
            &[
                "index",
                "label",
                "clean_pred",
                "adv_pred",
                "success",
                "l0",
                "l2",
                "linf",
                "p_positive_clean",
                "p_positive_adv",
            ],
            &csv_rows,
        )
        .as_bytes(),
    )?;
    // Pool the batches' outcomes.
    let total = outcomes.iter().map(|o| o.len()).sum::<usize>().max(1) as f64;
    let correct: usize = outcomes.iter().map(|o| o.attackable()).sum();
    let successes: usize = outcomes.iter().map(|o| o.successes()).sum();
    let robust: f64 = outcomes
        .iter()
        .map(|o| o.robust_accuracy() * o.len() as f64)
        .sum::<f64>()
        / total;
    let succ: Vec<(f64, f64, f64)> = outcomes
        .iter()
        .flat_map(|o| {
            (0..o.len())
                .filter(|&i| o.success[i])
                .map(|i| (o.l2[i], o.linf[i], o.l0[i] as f64))
                .collect::<Vec<_>>()
        })
        .collect();
    let mean = |f: fn(&(f64, f64, f64)) -> f64| {
        if succ.is_empty() {
            f64::NAN
        } else {
            succ.iter().map(f).sum::<f64>() / succ.len() as f64
        }
    };
    let cam = type2_map_change(models, &cam_set, attack.name(), config.seed)?;
    Ok(Type2Figures {
        attack: attack.name().to_string(),
        images: n,
        success_rate: if correct == 0 {
            0.0
        } else {
            successes as f64 / correct as f64
        },
        robust_accuracy: robust,
        mean_l2: mean(|s| s.0),
        mean_linf: mean(|s| s.1),
        mean_l0: mean(|s| s.2),
        gradient_masking_suspected: outcomes.iter().any(|o| o.gradient_masking_suspected()),
        images_per_second: n as f64 / seconds.max(1e-9),
        cam,
        l2_per_image,
        linf_per_image,
        examples,
    })
}

/// The first `cam_images` examples of one batch, for the CAM comparison.
struct CamBatch {
    clean: Tensor,
    adversarial: Tensor,
    before: Vec<usize>,
    after: Vec<usize>,
    success: Vec<bool>,
    l2: Vec<f64>,
    index: Vec<usize>,
}

/// The CAM change of f1's decided class, clean vs adversarial, over the successes and
/// over every example, and the noise control over the successes: each clean image
/// with random noise of its perturbation's L2 norm (drawn per test index).
fn type2_map_change(
    models: &Models,
    set: &[CamBatch],
    attack: &str,
    seed: u64,
) -> Result<MapChange> {
    if set.is_empty() {
        return Ok(MapChange::none());
    }
    let cat = |f: fn(&CamBatch) -> &Tensor| -> Result<Tensor> {
        Ok(Tensor::cat(&set.iter().map(f).collect::<Vec<_>>(), 0)?)
    };
    let (clean, adversarial) = (cat(|b| &b.clean)?, cat(|b| &b.adversarial)?);
    let before: Vec<usize> = set.iter().flat_map(|b| b.before.clone()).collect();
    let after: Vec<usize> = set.iter().flat_map(|b| b.after.clone()).collect();
    let success: Vec<bool> = set.iter().flat_map(|b| b.success.clone()).collect();
    let l2: Vec<f64> = set.iter().flat_map(|b| b.l2.clone()).collect();
    let index: Vec<usize> = set.iter().flat_map(|b| b.index.clone()).collect();
    let clean_maps = cam_28(&models.gapcnn, &clean, &before)?;
    let figures = pair_figures(&clean_maps, &cam_28(&models.gapcnn, &adversarial, &after)?)?;
    let wins: Vec<usize> = (0..success.len()).filter(|&i| success[i]).collect();
    let (noise, noise_l2) = if wins.is_empty() {
        (CamChange::none(), Vec::new())
    } else {
        let pick = Tensor::new(
            wins.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            clean.device(),
        )?;
        let base = clean.index_select(&pick, 0)?;
        let norms: Vec<f64> = wins.iter().map(|&i| l2[i]).collect();
        let ids: Vec<usize> = wins.iter().map(|&i| index[i]).collect();
        let (noised, achieved) = noised_batch(&base, &norms, seed, attack, &ids)?;
        let noised_classes: Vec<usize> = models
            .gapcnn
            .predict(&noised)?
            .into_iter()
            .map(|c| c as usize)
            .collect();
        let base_classes: Vec<usize> = wins.iter().map(|&i| before[i]).collect();
        let f = pair_figures(
            &cam_28(&models.gapcnn, &base, &base_classes)?,
            &cam_28(&models.gapcnn, &noised, &noised_classes)?,
        )?;
        (CamChange::over(&f, |_| true), achieved)
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    Ok(MapChange {
        successes: CamChange::over(&figures, |i| success[i]),
        all: CamChange::over(&figures, |_| true),
        noise,
        attack_l2: mean(&wins.iter().map(|&i| l2[i]).collect::<Vec<_>>()),
        noise_l2: mean(&noise_l2),
    })
}

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

/// Scores every image of `eval` with f1 and runs `config.roc_type2_attack` on every
/// positive (in batches of `config.batch_size`).
pub fn roc_population(
    models: &Models,
    eval: &Dataset,
    config: &ExperimentConfig,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<RocPopulation> {
    let p = config.positive_class;
    let attack = type2_attacks(config)
        .into_iter()
        .find(|a| a.name() == config.roc_type2_attack)
        .ok_or_else(|| {
            HarnessError::Other(format!(
                "roc_type2_attack: no Type II attack named {}",
                config.roc_type2_attack
            ))
        })?;
    let batch = config.batch_size.max(1);
    let mut clean = Vec::with_capacity(eval.len());
    for start in (0..eval.len()).step_by(batch.max(500)) {
        let idx: Vec<usize> = (start..(start + batch.max(500)).min(eval.len())).collect();
        let x = eval
            .images_tensor(&idx, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let logits = models.gapcnn.logits(&x)?;
        let probs = softmax_rows(&logits)?;
        let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        for (j, &i) in idx.iter().enumerate() {
            clean.push(Scored {
                score: f64::from(probs[j][p as usize]),
                predicted_positive: pred[j] == p,
                positive: eval.label(i) == Some(p as u8),
            });
        }
    }
    let positives: Vec<usize> = (0..eval.len())
        .filter(|&i| eval.label(i) == Some(p as u8))
        .collect();
    progress.start(
        &format!("ROC: {} on positives", attack.name()),
        positives.len() as u64,
        "images",
    );
    let mut type2_of_positives = Vec::with_capacity(positives.len());
    for idx in positives.chunks(batch) {
        let x = eval
            .images_tensor(idx, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let o = attack.run(
            &models.gapcnn,
            &x,
            &vec![p; idx.len()],
            &Targeting::Untargeted,
        )?;
        let probs = softmax_rows(&o.logits_after)?;
        for (row, &pred) in probs.iter().zip(&o.adversarial_predictions) {
            type2_of_positives.push(Scored {
                score: f64::from(row[p as usize]),
                predicted_positive: pred == p,
                positive: true,
            });
        }
        progress.advance(idx.len() as u64);
    }
    progress.finish();
    let flipped = positives
        .iter()
        .zip(&type2_of_positives)
        .filter(|(&i, a)| clean[i].predicted_positive && !a.predicted_positive)
        .count();
    Ok(RocPopulation {
        clean,
        type2_of_positives,
        attack: attack.name().to_string(),
        flipped,
    })
}

/// Paths of the transition strips.
pub fn strip_path(out: &Path, from: u8, to: u32) -> PathBuf {
    out.join(format!("type1_{from}_to_{to}.png"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(byte: u8) -> InputFingerprint {
        let test = Dataset::new(vec![byte; 4], vec![0], 2, 2).unwrap();
        InputFingerprint::new([b"g", b"m", b"o", b"s", b"r"], &test)
    }

    #[test]
    fn a_stage_is_reused_only_with_the_same_config_and_inputs() {
        let out = tempfile::tempdir().unwrap();
        let config = ExperimentConfig::quick();
        let (a, b) = (fingerprint(0), fingerprint(1));
        let run = |inputs: &InputFingerprint, value: u32| {
            stage(out.path(), "s", &config, inputs, || Ok(value)).unwrap()
        };
        assert_eq!(run(&a, 1), 1);
        assert_eq!(run(&a, 2), 1, "same config and inputs: the cached result");
        assert_eq!(run(&b, 3), 3, "other inputs: recomputed");
        assert_eq!(run(&b, 4), 3, "and cached under the new inputs");
        assert_eq!(run(&a, 5), 5, "back to the first inputs: recomputed again");
        let text = std::fs::read_to_string(out.path().join("stages/s.json")).unwrap();
        assert!(text.contains(a.sha256()), "{text}");
        // A cache file from before inputs were recorded is recomputed, not trusted.
        let legacy = serde_json::json!({"config": config, "result": 6});
        std::fs::write(out.path().join("stages/s.json"), legacy.to_string()).unwrap();
        assert_eq!(run(&a, 7), 7);
    }
}
