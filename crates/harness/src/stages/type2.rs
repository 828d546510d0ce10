//! The Type II stages: one attack each on the first `type2_images` test images (CW-L2
//! on the first `cw_images`), in batches, with the CAM change of f1's decided class
//! over the successes, over every image, and its noise control; writes
//! `type2_<attack>.csv`.

use std::path::Path;
use std::time::Instant;

use attacks::{Attack, AttackOutcome, Targeting};
use candle_core::{Device, Tensor};
use mnist_data::{Dataset, PixelFormat};
use models::Classifier;
use serde::{Deserialize, Serialize};

use crate::artifact::{csv, write_atomic};
use crate::bundle::Models;
use crate::cam_change::{cam_28, noised_batch, pair_figures, rows, CamChange, MapChange};
use crate::config::ExperimentConfig;
use crate::error::Result;
use crate::progress::Progress;
use crate::stages::kept::KeptExample;
use crate::stages::softmax_rows;
use crate::stages::type2_examples::{examples_of, Type2Example, EXAMPLE_ROWS};

/// The headline numbers of one Type II attack (what `summary.json` reports of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type2Summary {
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
}

/// The result of one Type II stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type2Result {
    /// Attack name.
    pub attack: String,
    /// The headline numbers.
    #[serde(flatten)]
    pub summary: Type2Summary,
    /// CAM of f1's predicted class, clean vs adversarial: over the successes, over
    /// every example, and the noise control.
    pub cam: MapChange,
    /// Per image: L2 of a successful perturbation (for the CLEVER comparison).
    pub l2_per_image: Vec<Option<f64>>,
    /// Per image: Linf of a successful perturbation.
    pub linf_per_image: Vec<Option<f64>>,
    /// The first few adversarial examples, for `type2_examples.png`.
    pub examples: Vec<Type2Example>,
    /// The first `league_successes` successes (in test-image order), for the league.
    pub successes: Vec<KeptExample>,
}

/// The smallest successful perturbation among `names`' attacks on test image `i`, and
/// which attack found it (`names` empty: every attack).
pub fn smallest_found(
    type2: &[Type2Result],
    names: &[&str],
    i: usize,
    norm: fn(&Type2Result) -> &Vec<Option<f64>>,
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
) -> Result<Type2Result> {
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
    let mut kept = Vec::new();
    for start in (0..n).step_by(config.batch_size.max(1)) {
        let idx: Vec<usize> = (start..(start + config.batch_size.max(1)).min(n)).collect();
        let x = test
            .images_tensor(&idx, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let labels: Vec<u32> = idx
            .iter()
            .map(|&i| u32::from(test.label(i).unwrap_or(0)))
            .collect();
        // Random starts drawn per test index: the same whatever the batching.
        let ids: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
        let o = attack.run_examples(&models.gapcnn, &x, &labels, &Targeting::Untargeted, &ids)?;
        if examples.len() < EXAMPLE_ROWS {
            let room = EXAMPLE_ROWS - examples.len();
            examples.extend(examples_of(&models.gapcnn, &x, &o, &idx, &labels, room)?);
        }
        if kept.len() < config.league_successes && o.success.iter().any(|&s| s) {
            let pixels = rows(&o.adversarial)?;
            for (j, &i) in idx.iter().enumerate() {
                if o.success[j] && kept.len() < config.league_successes {
                    kept.push(KeptExample {
                        id: i,
                        index: i,
                        clean_class: o.clean_predictions[j],
                        adversarial_class: o.adversarial_predictions[j],
                        target: None,
                        adversarial: pixels[j].clone(),
                        reconstruction: Vec::new(),
                    });
                }
            }
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
    Ok(Type2Result {
        attack: attack.name().to_string(),
        summary: Type2Summary {
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
        },
        cam,
        l2_per_image,
        linf_per_image,
        examples,
        successes: kept,
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
