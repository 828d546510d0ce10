//! The Type II stages: one attack each on the first `type2_images` test images (CW-L2
//! on the first `cw_images`), in batches, with the CAM change of f1's decided class
//! over the successes, over every image, and its noise control; writes
//! `type2_<attack>.csv`.

use std::path::Path;
use std::time::Instant;

use attacks::{Attack, Targeting};
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
use crate::shard::Units;
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
    /// The successes of the batches that hold the first `league_successes` successes (in
    /// test-image order; whole batches), for the league, which explains the first
    /// `league_successes` of them.
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

/// One batch of a Type II stage, as a shard computes it and a merge reads it back.
#[derive(Serialize, Deserialize)]
pub(crate) struct Type2Unit {
    /// Seconds the batch took.
    seconds: f64,
    /// Images in the batch.
    images: usize,
    /// Of them, correctly classified (attackable).
    attackable: usize,
    /// Of them, broken.
    pub(crate) successes: usize,
    /// Correct and not broken.
    robust: usize,
    /// Some gradient was zero or not finite.
    masking: bool,
    /// `type2_<attack>.csv`'s rows.
    rows: Vec<Vec<String>>,
    /// Per image: (L2, Linf, L0) of a successful perturbation.
    found: Vec<Option<(f64, f64, f64)>>,
    /// The figure's examples among this batch (positions below `EXAMPLE_ROWS`).
    examples: Vec<Type2Example>,
    /// This batch's successes, when fewer than `league_successes` came before it (in
    /// this run's batches: a shard may keep more than the assembly takes).
    pub(crate) kept: Vec<KeptExample>,
    /// The images below position `cam_images`, for the CAM comparison.
    cam: Option<CamRows>,
}

/// The first `cam_images` examples of one batch as pixels, for the CAM comparison.
#[derive(Serialize, Deserialize)]
struct CamRows {
    clean: Vec<f32>,
    adversarial: Vec<f32>,
    before: Vec<usize>,
    after: Vec<usize>,
    success: Vec<bool>,
    #[serde(with = "crate::nan::floats")]
    l2: Vec<f64>,
    index: Vec<usize>,
}

/// The images one Type II attack runs on: the first `type2_images` (CW-L2: `cw_images`).
pub(crate) fn type2_images(attack: &str, config: &ExperimentConfig, test: &Dataset) -> usize {
    let wanted = if attack == "cw-l2" {
        config.cw_images.min(config.type2_images)
    } else {
        config.type2_images
    };
    wanted.min(test.len())
}

/// The units (batches of `batch_size` images, in test order) of one Type II attack on the
/// first `config.type2_images` test images; `None` in a shard run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn type2_units(
    attack: &dyn Attack,
    models: &Models,
    test: &Dataset,
    config: &ExperimentConfig,
    units: &Units<'_>,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Option<Vec<Type2Unit>>> {
    let n = type2_images(attack.name(), config, test);
    let batch = config.batch_size.max(1);
    let count = n.div_ceil(batch);
    let p = config.positive_class;
    progress.start(&format!("type II {}", attack.name()), n as u64, "images");
    // Successes this run has seen in the batches before (a shard: its own batches);
    // a batch's successes are kept while fewer than `league_successes` came before.
    let mut successes_before = 0usize;
    let stage = format!("type2_{}", attack.name());
    let result = units.run(&stage, count, |u| {
        let t0 = Instant::now();
        let start = u * batch;
        let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
        let x = test
            .images_tensor(&idx, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let labels: Vec<u32> = idx
            .iter()
            .map(|&i| u32::from(test.label(i).unwrap_or(0)))
            .collect();
        // Random starts drawn per test index: the same whatever the batching.
        let ids: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
        // A long batch (CW-L2's) reports how far it has got, so a line still comes
        // every 10 s without a terminal.
        let mut observe = |fraction: f64| {
            progress.set_message(&format!(
                "(batch {} of {count}: {:.0} % of its steps)",
                u + 1,
                100.0 * fraction
            ));
            progress.advance(0);
        };
        let o = attack.run_examples_observed(
            &models.gapcnn,
            &x,
            &labels,
            &Targeting::Untargeted,
            &ids,
            &mut observe,
        )?;
        progress.set_message("");
        let examples = examples_of(
            &models.gapcnn,
            &x,
            &o,
            &idx,
            &labels,
            EXAMPLE_ROWS.saturating_sub(start),
        )?;
        let mut kept = Vec::new();
        if successes_before < config.league_successes && o.success.iter().any(|&s| s) {
            let pixels = rows(&o.adversarial)?;
            for (j, &i) in idx.iter().enumerate() {
                if o.success[j] {
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
        successes_before += o.successes();
        let probs_before = softmax_rows(&o.logits_before)?;
        let probs_after = softmax_rows(&o.logits_after)?;
        let mut csv_rows = Vec::new();
        let mut found = Vec::new();
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
            found.push(o.success[j].then_some((o.l2[j], o.linf[j], o.l0[j] as f64)));
        }
        // CAM of the class f1 decides, before and after, on the first `cam_images`.
        let take = config.cam_images.saturating_sub(start).min(idx.len());
        let cam = if take > 0 {
            let pixels = |t: &Tensor| -> Result<Vec<f32>> {
                Ok(t.narrow(0, 0, take)?.flatten_all()?.to_vec1::<f32>()?)
            };
            Some(CamRows {
                clean: pixels(&x)?,
                adversarial: pixels(&o.adversarial)?,
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
            })
        } else {
            None
        };
        let robust = (0..o.len())
            .filter(|&j| o.adversarial_predictions[j] == o.labels[j])
            .count();
        progress.advance(idx.len() as u64);
        Ok(Type2Unit {
            seconds: t0.elapsed().as_secs_f64(),
            images: idx.len(),
            attackable: o.attackable(),
            successes: o.successes(),
            robust,
            masking: o.gradient_masking_suspected(),
            rows: csv_rows,
            found,
            examples,
            kept,
            cam,
        })
    });
    progress.finish();
    result
}

/// One Type II stage's result from its units (in order); writes `type2_<attack>.csv`.
pub(crate) fn assemble_type2(
    attack: &str,
    units: Vec<Type2Unit>,
    models: &Models,
    config: &ExperimentConfig,
    out: &Path,
    device: &Device,
) -> Result<Type2Result> {
    let n: usize = units.iter().map(|u| u.images).sum();
    let seconds: f64 = units.iter().map(|u| u.seconds).sum();
    let csv_rows: Vec<Vec<String>> = units.iter().flat_map(|u| u.rows.clone()).collect();
    write_atomic(
        &out.join(format!("type2_{attack}.csv")),
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
    let correct: usize = units.iter().map(|u| u.attackable).sum();
    let successes: usize = units.iter().map(|u| u.successes).sum();
    let robust: usize = units.iter().map(|u| u.robust).sum();
    let found: Vec<Option<(f64, f64, f64)>> = units.iter().flat_map(|u| u.found.clone()).collect();
    let succ: Vec<(f64, f64, f64)> = found.iter().flatten().copied().collect();
    let mean = |f: fn(&(f64, f64, f64)) -> f64| {
        if succ.is_empty() {
            f64::NAN
        } else {
            succ.iter().map(f).sum::<f64>() / succ.len() as f64
        }
    };
    let image = |v: Vec<f32>, k: usize| Tensor::from_vec(v, (k, 1, 28, 28), device);
    let mut cam_set = Vec::new();
    for c in units.iter().filter_map(|u| u.cam.as_ref()) {
        let k = c.index.len();
        cam_set.push(CamBatch {
            clean: image(c.clean.clone(), k)?,
            adversarial: image(c.adversarial.clone(), k)?,
            before: c.before.clone(),
            after: c.after.clone(),
            success: c.success.clone(),
            l2: c.l2.clone(),
            index: c.index.clone(),
        });
    }
    let cam = type2_map_change(models, &cam_set, attack, config.seed)?;
    let mut examples: Vec<Type2Example> = units.iter().flat_map(|u| u.examples.clone()).collect();
    examples.truncate(EXAMPLE_ROWS);
    // Whole batches, up to the one that holds the `league_successes`-th success (the
    // league explains the first `league_successes` of them, batch by batch).
    let mut kept: Vec<KeptExample> = Vec::new();
    let mut before = 0;
    for u in &units {
        if before < config.league_successes {
            kept.extend(u.kept.iter().cloned());
        }
        before += u.successes;
    }
    Ok(Type2Result {
        attack: attack.to_string(),
        summary: Type2Summary {
            images: n,
            success_rate: if correct == 0 {
                0.0
            } else {
                successes as f64 / correct as f64
            },
            robust_accuracy: robust as f64 / n.max(1) as f64,
            mean_l2: mean(|s| s.0),
            mean_linf: mean(|s| s.1),
            mean_l0: mean(|s| s.2),
            gradient_masking_suspected: units.iter().any(|u| u.masking),
            images_per_second: n as f64 / seconds.max(1e-9),
        },
        cam,
        l2_per_image: found.iter().map(|f| f.map(|f| f.0)).collect(),
        linf_per_image: found.iter().map(|f| f.map(|f| f.1)).collect(),
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
