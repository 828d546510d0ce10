//! The Type I stage: every selected test image towards the 9 other classes, the
//! success table, CAM under Type I, and the transition strips with CAM overlays.

use std::path::Path;

use candle_core::{Device, Tensor};
use mnist_data::{Dataset, PixelFormat};
use models::Classifier;
use serde::{Deserialize, Serialize};
use vae_attack::{type_one_attack, ClassMeans, Judges, LatentAttackConfig};

use crate::artifact::{csv, write_atomic};
use crate::bundle::Models;
use crate::cam_change::{cam_28, l2_distances, noised_batch, pair_figures, rows, CamChange};
use crate::config::ExperimentConfig;
use crate::error::Result;
use crate::progress::Progress;
use crate::roc::Scored;
use crate::shard::Units;
use crate::stages::kept::KeptExample;

pub mod artifacts;
pub mod judging;
pub mod panel;
pub mod strips;

pub use artifacts::{rows_csv, success_grid};
pub use judging::{judge_accuracy, JudgeAccuracy, ModeSummary, Rate};
use panel::mode_batch;
pub use panel::{
    judged_rows, pixel_rows, run_mode, Checkpoint, ModeRun, PairRow, PanelInputs, Type1Pairs,
};
use strips::draw_strips;
pub use strips::{
    stack_vertically, strip_path, titled, transition_strip, FrameReading, TransitionStrip,
};

/// The success grid of the constrained attack, written by the stage.
pub const GRID_FILE: &str = "type1_grid.png";

/// The frames of one transition of the strip image (iteration, G(z) pixels).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StripFrames {
    /// The pair's target.
    pub target: u32,
    /// Every frame the attack recorded.
    pub frames: Vec<(usize, Vec<f32>)>,
}

/// One batch of the paper's attack, as a shard computes it and a merge reads it back.
#[derive(Serialize, Deserialize)]
pub(crate) struct PaperUnit {
    seconds: f64,
    /// Attack iterations run over the batch's pairs.
    iterations: usize,
    /// Test index of each pair's image.
    images: Vec<usize>,
    /// Target of each pair.
    targets: Vec<u32>,
    /// The label f1 must keep (its clean arg-max).
    keep: Vec<u32>,
    f1_pred: Vec<u32>,
    oracle_pred: Vec<u32>,
    success: Vec<bool>,
    iters: Vec<usize>,
    l2: Vec<f32>,
    linf: Vec<f32>,
    /// The panel's rows.
    judged: Vec<PairRow>,
    /// The final images.
    pixels: Vec<Vec<f32>>,
    /// The strip image's transitions in this batch.
    strips: Vec<StripFrames>,
}

/// Figures of the Type I stage. The top-level rates are the paper's attack as the study
/// reproduces it (oracle-stopped; `success_rate` is its success under the standard
/// oracle); `paper` and `constrained` hold each mode's verdicts by every judge; the CAM
/// comparison and the ROC negatives come from the constrained attack's consensus
/// successes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type1Result {
    /// (image, target) pairs attacked by the paper's mode.
    pub pairs: usize,
    /// f1 keeps its label and the oracle says the target.
    pub success_rate: f64,
    /// The oracle says the target (whatever f1 says).
    pub oracle_agreement: f64,
    /// f1 keeps its label (whatever the oracle says).
    pub f1_kept: f64,
    /// Mean ||G(z*) - x||_2 over successful pairs.
    #[serde(with = "crate::nan::float")]
    pub mean_l2: f64,
    /// Mean ||G(z*) - x||_inf over successful pairs.
    #[serde(with = "crate::nan::float")]
    pub mean_linf: f64,
    /// Success rate per target class.
    #[serde(with = "crate::nan::floats")]
    pub per_target: Vec<f64>,
    /// Mean iterations of the successful pairs.
    #[serde(with = "crate::nan::float")]
    pub mean_iterations: f64,
    /// CAM of f1's kept class on the constrained attack's consensus successes: against
    /// x, against the reconstruction G(mu(x)), and the noise controls.
    pub cam: Type1MapChange,
    /// Correlation of the study's defective map with the real CAM (class 7, min-max),
    /// over every frame of the strips: (Spearman, Pearson, frames).
    pub defective_vs_real: (f64, f64, usize),
    /// Successful Type I examples made from positives, as negatives for the ROC.
    pub positives_turned: Vec<Scored>,
    /// The constrained attack's consensus successes with their reconstructions, for the
    /// explanation league.
    pub successes: Vec<KeptExample>,
    /// Pair-iterations per second of the attack (pairs x iterations / s).
    pub pair_iterations_per_second: f64,
    /// The paper's mode (oracle-stopped) judged by the panel.
    pub paper: ModeSummary,
    /// The constrained attack (judge-free) on the same images, pairs from f1's clean label.
    pub constrained: ModeSummary,
    /// Selected images f1 misclassifies, left out of the constrained attack's pairs.
    pub images_left_out: usize,
    /// Each judge's accuracy on clean test images and on their decoded codes.
    pub judges: Vec<JudgeAccuracy>,
}

/// The CAM of f1's kept class under Type I, like with like. `vs_x` mixes the SVAE's
/// reconstruction error into the attack's effect; `vs_reconstruction` starts from
/// G(mu(x)) and measures the attack alone; `reconstruction_vs_x` is the reconstruction
/// alone. Each comparison has its noise control: the same start image with random
/// noise of the L2 norm of the change it is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type1MapChange {
    /// CAM(x) vs CAM(G(z*)) (at the top level of the JSON).
    #[serde(flatten)]
    pub vs_x: CamChange,
    /// CAM(G(mu(x))) vs CAM(G(z*)).
    pub vs_reconstruction: CamChange,
    /// CAM(x) vs CAM(G(mu(x))).
    pub reconstruction_vs_x: CamChange,
    /// CAM(x) vs CAM(x + noise of norm ||G(z*) - x||).
    pub noise_x: CamChange,
    /// CAM(G(mu(x))) vs CAM(G(mu(x)) + noise of norm ||G(z*) - G(mu(x))||).
    pub noise_reconstruction: CamChange,
    /// Mean ||G(z*) - x||_2 over the pairs.
    #[serde(with = "crate::nan::float")]
    pub l2_x: f64,
    /// Mean ||G(z*) - G(mu(x))||_2 over the pairs.
    #[serde(with = "crate::nan::float")]
    pub l2_reconstruction: f64,
}

impl Type1MapChange {
    /// Nothing measured.
    pub fn none() -> Self {
        Self {
            vs_x: CamChange::none(),
            vs_reconstruction: CamChange::none(),
            reconstruction_vs_x: CamChange::none(),
            noise_x: CamChange::none(),
            noise_reconstruction: CamChange::none(),
            l2_x: f64::NAN,
            l2_reconstruction: f64::NAN,
        }
    }
}

/// Measures [`Type1MapChange`] on pairs (`clean[i]`, `adversarial[i]`) of kept class
/// `classes[i]`; `ids` name the pairs for the noise seeds.
fn type1_map_change(
    models: &Models,
    clean: &Tensor,
    reconstruction: &Tensor,
    adversarial: &Tensor,
    classes: &[usize],
    ids: &[usize],
    seed: u64,
) -> Result<Type1MapChange> {
    let (to_x, to_reconstruction) = (
        l2_distances(adversarial, clean)?,
        l2_distances(adversarial, reconstruction)?,
    );
    let map = |t: &Tensor| cam_28(&models.gapcnn, t, classes);
    let (m_x, m_adv, m_rec) = (map(clean)?, map(adversarial)?, map(reconstruction)?);
    let (noised_x, _) = noised_batch(clean, &to_x, seed, "type1 vs x", ids)?;
    let (noised_rec, _) = noised_batch(
        reconstruction,
        &to_reconstruction,
        seed,
        "type1 vs G(mu(x))",
        ids,
    )?;
    let all = |a, b| -> Result<CamChange> { Ok(CamChange::over(&pair_figures(a, b)?, |_| true)) };
    Ok(Type1MapChange {
        vs_x: all(&m_x, &m_adv)?,
        vs_reconstruction: all(&m_rec, &m_adv)?,
        reconstruction_vs_x: all(&m_x, &m_rec)?,
        noise_x: all(&m_x, &map(&noised_x)?)?,
        noise_reconstruction: all(&m_rec, &map(&noised_rec)?)?,
        l2_x: mean(&to_x),
        l2_reconstruction: mean(&to_reconstruction),
    })
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The consensus successes of one batch of the constrained attack as kept examples, with
/// G(mu(x)) of their clean images (encoded and decoded together, one batch).
pub(crate) fn kept_of_batch(
    svae: &models::Svae,
    test: &Dataset,
    b: &panel::FinishedBatch,
    device: &Device,
) -> Result<Vec<KeptExample>> {
    let wins: Vec<usize> = (0..b.rows.len())
        .filter(|&j| b.rows[j].verdict().consensus())
        .collect();
    if wins.is_empty() {
        return Ok(Vec::new());
    }
    let originals: Vec<usize> = wins.iter().map(|&j| b.rows[j].index).collect();
    let clean = test
        .images_tensor(&originals, PixelFormat::Gray, device)
        .map_err(models::ModelError::from)?;
    let (mu, _) = svae.encode(&clean)?;
    let reconstructed = rows(&svae.decode(&mu)?.reshape(clean.dims())?)?;
    Ok(wins
        .iter()
        .zip(reconstructed)
        .map(|(&j, reconstruction)| {
            let r = &b.rows[j];
            KeptExample {
                id: b.start + j,
                index: r.index,
                clean_class: r.keep,
                adversarial_class: r.f1_pred,
                target: Some(r.target),
                adversarial: b.images[j].clone(),
                reconstruction,
            }
        })
        .collect())
}

/// Runs the stage; writes `type1_pairs.csv`, `type1_constrained.csv`, the success grid
/// and the strips of `config.strip_index`. `train` gives the kNN judge its neighbours and
/// the constrained attack its class means. Both modes run in units of `type1_batch`
/// pairs ([`Units`]: a killed run resumes after its last finished batch, a shard runs
/// its own); `None` in a shard run.
#[allow(clippy::too_many_arguments)]
pub fn run_type1(
    models: &Models,
    train: &Dataset,
    test: &Dataset,
    config: &ExperimentConfig,
    units: &Units<'_>,
    out: &Path,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Option<Type1Result>> {
    let mut chosen = test
        .balanced_indices(config.type1_per_class)
        .map_err(models::ModelError::from)?;
    let p = config.positive_class;
    let extra: Vec<usize> = (0..test.len())
        .filter(|&i| test.label(i) == Some(p as u8) && !chosen.contains(&i))
        .take(config.type1_positive_images)
        .collect();
    chosen.extend(extra);
    // The strip image first, so its frames are in the first batch.
    chosen.retain(|&i| i != config.strip_index);
    chosen.insert(0, config.strip_index.min(test.len().saturating_sub(1)));
    let mut pair_index = Vec::new();
    let mut targets = Vec::new();
    for &i in &chosen {
        let y = u32::from(test.label(i).unwrap_or(0));
        for t in (0..10u32).filter(|&t| t != y) {
            pair_index.push(i);
            targets.push(t);
        }
    }
    let attack = LatentAttackConfig {
        max_iters: config.type1_iters,
        record_every: 10,
        frame_every: (config.type1_iters / 5).max(1),
        ..LatentAttackConfig::type_one()
    };
    let batch = config.type1_batch.max(1);
    // The panel judges both modes (on each batch's final images).
    let knn = models::Knn::new(train, 3, device)?;
    let judges = Judges {
        standard: &models.oracle,
        robust: &models.robust_oracle,
        knn: &knn,
    };
    progress.start("type I", pair_index.len() as u64, "pairs");
    let paper_units = units.run("type1_paper", pair_index.len().div_ceil(batch), |u| {
        let t = std::time::Instant::now();
        let start = u * batch;
        let end = (start + batch).min(pair_index.len());
        let idx = pair_index[start..end].to_vec();
        let tg = targets[start..end].to_vec();
        let x = test
            .images_tensor(&idx, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let keep = models.gapcnn.predict(&x)?;
        let o = type_one_attack(
            &models.svae,
            &models.gapcnn,
            &models.oracle,
            &x,
            &keep,
            &tg,
            None,
            &attack,
        )?;
        let v = judges.judge(&o.images)?;
        let judged = judged_rows(&models.gapcnn, &o, &v, &idx, &keep, &tg)?;
        let strips = (0..idx.len())
            .filter(|&j| idx[j] == config.strip_index)
            .map(|j| StripFrames {
                target: tg[j],
                frames: o.trajectories[j]
                    .frames
                    .iter()
                    .map(|f| (f.iteration, f.pixels.clone()))
                    .collect(),
            })
            .collect();
        progress.advance(idx.len() as u64);
        Ok(PaperUnit {
            seconds: t.elapsed().as_secs_f64(),
            iterations: o.iterations.iter().sum(),
            images: idx,
            targets: tg,
            keep,
            f1_pred: o.f1_pred.clone(),
            oracle_pred: o.oracle_pred.clone(),
            success: o.success.clone(),
            iters: o.iterations.clone(),
            l2: o.l2.clone(),
            linf: o.linf.clone(),
            judged,
            pixels: pixel_rows(&o.images)?,
            strips,
        })
    })?;
    progress.finish();

    // The constrained attack, judge-free, on the same images with f1's clean labels.
    let means = ClassMeans::from_training(&models.svae, train, device)?;
    let inputs = PanelInputs {
        f1: &models.gapcnn,
        svae: &models.svae,
        means: &means,
        judges,
    };
    let pairs = Type1Pairs::from_f1(&models.gapcnn, test, &chosen, device)?;
    let constrained_config = LatentAttackConfig {
        max_iters: config.type1_iters,
        record_every: 0,
        frame_every: 0,
        ..LatentAttackConfig::constrained()
    };
    progress.start("type I constrained", pairs.len() as u64, "pairs");
    let constrained_units = units.run("type1_constrained", pairs.len().div_ceil(batch), |u| {
        let b = mode_batch(
            &inputs,
            test,
            &pairs,
            &constrained_config,
            u * batch,
            batch,
            device,
        )?;
        progress.advance(b.rows.len() as u64);
        Ok(b)
    })?;
    progress.finish();
    let (Some(outcomes), Some(constrained_units)) = (paper_units, constrained_units) else {
        return Ok(None);
    };
    let seconds: f64 = outcomes.iter().map(|b| b.seconds).sum();
    let iterations_done: usize = outcomes.iter().map(|b| b.iterations).sum();

    let mut csv_rows = Vec::new();
    let (mut succ, mut oracle_ok, mut kept) = (0usize, 0usize, 0usize);
    let mut l2 = Vec::new();
    let mut linf = Vec::new();
    let mut iters = Vec::new();
    let mut per_target = [(0usize, 0usize); 10];
    for o in &outcomes {
        let (idx, tg, keep) = (&o.images, &o.targets, &o.keep);
        for j in 0..idx.len() {
            let s = o.success[j];
            csv_rows.push(vec![
                idx[j].to_string(),
                test.label(idx[j]).unwrap_or(0).to_string(),
                tg[j].to_string(),
                keep[j].to_string(),
                o.f1_pred[j].to_string(),
                o.oracle_pred[j].to_string(),
                s.to_string(),
                o.iters[j].to_string(),
                format!("{:.5}", o.l2[j]),
                format!("{:.5}", o.linf[j]),
            ]);
            per_target[tg[j] as usize].1 += 1;
            oracle_ok += usize::from(o.oracle_pred[j] == tg[j]);
            kept += usize::from(o.f1_pred[j] == keep[j]);
            if s {
                succ += 1;
                per_target[tg[j] as usize].0 += 1;
                l2.push(f64::from(o.l2[j]));
                linf.push(f64::from(o.linf[j]));
                iters.push(o.iters[j] as f64);
            }
        }
    }
    write_atomic(
        &out.join("type1_pairs.csv"),
        csv(
            &[
                "index",
                "label",
                "target",
                "f1_keep",
                "f1_pred",
                "oracle_pred",
                "success",
                "iterations",
                "l2",
                "linf",
            ],
            &csv_rows,
        )
        .as_bytes(),
    )?;
    let strips: Vec<&StripFrames> = outcomes.iter().flat_map(|o| &o.strips).collect();
    let defective_vs_real = draw_strips(models, test, config, &strips, out, device)?;
    let paper_images: Vec<Vec<f32>> = outcomes.iter().flat_map(|b| b.pixels.clone()).collect();
    let paper_rows: Vec<PairRow> = outcomes.iter().flat_map(|b| b.judged.clone()).collect();
    let paper = ModeSummary::new(
        "paper, stopped by the standard oracle",
        &ModeRun {
            rows: paper_rows,
            images: paper_images,
            seconds,
        },
    );

    // The league's Type I population: each batch's consensus successes, reconstructed
    // batch by batch (as a shard does).
    let mut successes = Vec::new();
    for b in &constrained_units {
        successes.extend(kept_of_batch(&models.svae, test, b, device)?);
    }
    let run = ModeRun {
        seconds: constrained_units.iter().map(|b| b.seconds).sum(),
        rows: constrained_units
            .iter()
            .flat_map(|b| b.rows.clone())
            .collect(),
        images: constrained_units
            .into_iter()
            .flat_map(|b| b.images)
            .collect(),
    };
    let constrained = ModeSummary::new(
        "constrained, half-way to the target mean, image term, judge-free",
        &run,
    );
    write_atomic(
        &out.join("type1_constrained.csv"),
        rows_csv(&run.rows).as_bytes(),
    )?;
    success_grid(&run, test, &models.gapcnn, 24, &out.join(GRID_FILE), device)?;
    // ROC negatives and the CAM comparison: the consensus successes.
    let mut positives_turned = Vec::new();
    let mut cam = Type1MapChange::none();
    if !successes.is_empty() {
        let n = successes.len();
        let image = |f: fn(&KeptExample) -> &Vec<f32>| {
            let pixels: Vec<f32> = successes.iter().flat_map(|k| f(k).clone()).collect();
            Tensor::from_vec(pixels, (n, 1, 28, 28), device)
        };
        let adv = image(|k| &k.adversarial)?;
        let reconstruction = image(|k| &k.reconstruction)?;
        let probs = candle_nn::ops::softmax(&models.gapcnn.logits(&adv)?, candle_core::D::Minus1)?
            .to_vec2::<f32>()?;
        for (k, s) in successes.iter().enumerate() {
            if s.clean_class == p && test.label(s.index) == Some(p as u8) {
                positives_turned.push(Scored {
                    score: f64::from(probs[k][p as usize]),
                    predicted_positive: s.adversarial_class == p,
                    positive: false,
                });
            }
        }
        let classes: Vec<usize> = successes.iter().map(|s| s.clean_class as usize).collect();
        let originals: Vec<usize> = successes.iter().map(|s| s.index).collect();
        let ids: Vec<usize> = successes.iter().map(|s| s.id).collect();
        let clean = test
            .images_tensor(&originals, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        cam = type1_map_change(
            models,
            &clean,
            &reconstruction,
            &adv,
            &classes,
            &ids,
            config.seed,
        )?;
    }
    let accuracy_images = test.first(test.len().min(1000));
    let judges_accuracy = judge_accuracy(&judges, &models.svae, &accuracy_images, device)?;
    let n = pair_index.len().max(1) as f64;
    Ok(Some(Type1Result {
        pairs: pair_index.len(),
        success_rate: succ as f64 / n,
        oracle_agreement: oracle_ok as f64 / n,
        f1_kept: kept as f64 / n,
        mean_l2: mean(&l2),
        mean_linf: mean(&linf),
        per_target: per_target
            .iter()
            .map(|&(s, t)| {
                if t == 0 {
                    f64::NAN
                } else {
                    s as f64 / t as f64
                }
            })
            .collect(),
        mean_iterations: mean(&iters),
        cam,
        defective_vs_real,
        positives_turned,
        successes,
        pair_iterations_per_second: iterations_done as f64 / seconds.max(1e-9),
        paper,
        constrained,
        images_left_out: pairs.left_out,
        judges: judges_accuracy,
    }))
}
