//! The explanation league (ALGORITHMS.md sections 7, 11, 12): every explanation method on
//! f1 (GapCnn) under the Type I constrained attack and the Type II attacks of
//! [`LEAGUE_ATTACKS`], over their successful examples as the attack stages kept them
//! ([`KeptExample`]), each beside its noise control; and under label-preserving noise
//! and the deletion / insertion curves on the first `league_images` clean test images.
//! The verdict ([`verdict`]) says which method is the most robust in the study's sense.
//!
//! Every random draw is seeded by the run's seed and the example's identity (the noise
//! controls share the CAM stages' streams, so CAM's row repeats their noise). The league
//! runs in units ([`crate::shard`]): the kept successes of one attack batch, the consensus
//! successes of one constrained Type I batch, one batch of clean images; a shard and the
//! single run compute every map in the same batch. A model's rows do not depend on their
//! batch, which is what lets a clean image's map, computed in one unit, serve the next
//! ([`drivers::MapCache`]).

use std::collections::BTreeMap;
use std::time::Instant;

use cam::{cam_model_methods, scale_maps, Explainer, MapScaling};
use candle_core::{Device, Tensor};
use metrics::detection_auroc;
use mnist_data::{Dataset, PixelFormat};
use serde::{Deserialize, Serialize};

use crate::bundle::Models;
use crate::cam_change::{l2_distances, noised_batch, rows, CamChange, PairFigures};
use crate::config::ExperimentConfig;
use crate::error::Result;
use crate::progress::Progress;
use crate::shard::Units;
use crate::stages::kept::KeptExample;
use crate::stages::type1::kept_of_batch;
use crate::stages::type1::panel::FinishedBatch;
use crate::stages::{Type1Result, Type2Result};

pub mod drivers;
pub mod verdict;

use drivers::{
    change_figures, change_scores, maps_28, maps_28_cached, noise_robustness, pixel_curve_aucs,
    predict_in_batches, MapCache,
};
pub use verdict::{Ranked, Verdict};

/// The Type II attacks the league ranks the methods under.
pub const LEAGUE_ATTACKS: [&str; 3] = ["pgd-linf", "cw-l2", "deepfool"];

/// Images of the league figure (methods x clean, Type I, PGD-Linf, CW-L2).
pub const FIGURE_IMAGES: usize = 3;

/// How well a map's change separates attacked examples from their noise controls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Mann-Whitney AUROC of the change score (1 - Spearman), attacked vs control.
    #[serde(with = "crate::nan::float")]
    pub auroc: f64,
    /// Attacked pairs scored (both maps informative).
    pub attacked: usize,
    /// Control pairs scored.
    pub control: usize,
}

impl Detection {
    fn of(attacked: &[f64], control: &[f64]) -> Self {
        Self {
            auroc: detection_auroc(attacked, control).unwrap_or(f64::NAN),
            attacked: attacked.len(),
            control: control.len(),
        }
    }
}

/// A mean over examples, with its denominator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanOf {
    /// The mean over the examples with a value.
    #[serde(with = "crate::nan::float")]
    pub mean: f64,
    /// Examples with a value.
    pub n: usize,
    /// Examples without one (no label-preserving copy, or a constant map).
    pub skipped: usize,
}

impl MeanOf {
    fn of(values: &[Option<f64>]) -> Self {
        let got: Vec<f64> = values.iter().flatten().copied().collect();
        Self {
            mean: if got.is_empty() {
                f64::NAN
            } else {
                got.iter().sum::<f64>() / got.len() as f64
            },
            n: got.len(),
            skipped: values.len() - got.len(),
        }
    }
}

/// One method under the Type I constrained attack (maps of f1's kept class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type1Cell {
    /// Map(x) vs map(G(z*)).
    pub vs_x: CamChange,
    /// Map(G(mu(x))) vs map(G(z*)): the attack without the SVAE's reconstruction error.
    pub vs_reconstruction: CamChange,
    /// Map(x) vs map(x + noise of norm ||G(z*) - x||).
    pub noise_x: CamChange,
    /// Map(G(mu(x))) vs map(G(mu(x)) + noise of norm ||G(z*) - G(mu(x))||).
    pub noise_reconstruction: CamChange,
    /// `vs_reconstruction` against `noise_reconstruction`.
    pub detection: Detection,
}

/// One method under one Type II attack (maps of the class f1 decides on each image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type2Cell {
    /// Map(x) vs map(x'), over the successes.
    pub change: CamChange,
    /// Map(x) vs map(x + noise of norm ||x' - x||).
    pub noise: CamChange,
    /// `change` against `noise`.
    pub detection: Detection,
}

/// One method's row of the league.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodScores {
    /// Under the Type I constrained attack.
    pub type1: Type1Cell,
    /// Under each of [`LEAGUE_ATTACKS`], by name.
    #[serde(flatten)]
    pub type2: BTreeMap<String, Type2Cell>,
    /// Max-Sensitivity under label-preserving noise (relative to the map's norm).
    pub max_sensitivity: MeanOf,
    /// The Local Lipschitz Estimate (maps divided by their largest magnitude).
    pub lipschitz: MeanOf,
    /// Deletion AUC of f1's class probability (low: faithful).
    pub deletion_auc: MeanOf,
    /// Insertion AUC (high: faithful).
    pub insertion_auc: MeanOf,
}

/// What the league explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Populations {
    /// The model explained.
    pub model: String,
    /// Type I constrained consensus successes explained.
    pub type1: usize,
    /// Successes explained per Type II attack.
    pub type2: BTreeMap<String, usize>,
    /// Clean test images for noise and faithfulness.
    pub clean_images: usize,
    /// Noise copies per clean image, and their Linf radius.
    pub noise_samples: usize,
    /// The noise's Linf radius.
    pub noise_radius: f64,
}

/// The league as `summary.json` shows it under `explain`: one object per method (by
/// name), the populations and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeagueTable {
    /// Every method's scores, by name.
    #[serde(flatten)]
    pub methods: BTreeMap<String, MethodScores>,
    /// The populations explained.
    pub populations: Populations,
    /// Which method is the most robust, and the ranking.
    pub verdict: Verdict,
}

/// One image of the figure under one condition, with every method's map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigureCell {
    /// `clean`, `type I`, or the attack's name.
    pub condition: String,
    /// The class explained (f1's decision; Type I: the kept class).
    pub class: u32,
    /// Type I: the class the image was moved to.
    pub target: Option<u32>,
    /// The image, 28 x 28.
    pub pixels: Vec<f32>,
    /// Each method's map (ReLU then min-max, as `explain` shows them), in method order.
    pub maps: Vec<Vec<f32>>,
}

/// The stage's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeagueResult {
    /// The table of `summary.json`.
    pub table: LeagueTable,
    /// The methods, in table order.
    pub methods: Vec<String>,
    /// The figure's images (test index, its four conditions).
    pub figure: Vec<(usize, Vec<FigureCell>)>,
    /// Seconds of each method, in order.
    pub seconds: Vec<f64>,
}

/// A population of kept examples as tensors.
struct Population {
    clean: Tensor,
    clean_classes: Vec<usize>,
    adversarial: Tensor,
    adversarial_classes: Vec<usize>,
    /// Type I: G(mu(x)).
    reconstruction: Option<Tensor>,
    /// The clean image (Type I: the reconstruction) plus noise of the attack's L2 norm.
    noised: Tensor,
    noised_classes: Vec<usize>,
    /// Type I: x plus noise of ||G(z*) - x||.
    noised_x: Option<Tensor>,
}

fn image_tensor(pixels: Vec<f32>, n: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(pixels, (n, 1, 28, 28), device)?)
}

fn population(
    kept: &[KeptExample],
    stream: &str,
    models: &Models,
    test: &Dataset,
    config: &ExperimentConfig,
    device: &Device,
) -> Result<Option<Population>> {
    let n = kept.len();
    if n == 0 {
        return Ok(None);
    }
    let indices: Vec<usize> = kept.iter().map(|k| k.index).collect();
    let ids: Vec<usize> = kept.iter().map(|k| k.id).collect();
    let clean = test
        .images_tensor(&indices, PixelFormat::Gray, device)
        .map_err(models::ModelError::from)?;
    let adversarial = image_tensor(
        kept.iter().flat_map(|k| k.adversarial.clone()).collect(),
        n,
        device,
    )?;
    let clean_classes: Vec<usize> = kept.iter().map(|k| k.clean_class as usize).collect();
    let adversarial_classes: Vec<usize> =
        kept.iter().map(|k| k.adversarial_class as usize).collect();
    let type1 = kept.iter().any(|k| !k.reconstruction.is_empty());
    if type1 {
        let reconstruction = image_tensor(
            kept.iter().flat_map(|k| k.reconstruction.clone()).collect(),
            n,
            device,
        )?;
        // The Type I stage's streams: the same noise as `cam.type1`'s controls.
        let to_x = l2_distances(&adversarial, &clean)?;
        let to_rec = l2_distances(&adversarial, &reconstruction)?;
        let (noised_x, _) = noised_batch(&clean, &to_x, config.seed, "type1 vs x", &ids)?;
        let (noised, _) = noised_batch(
            &reconstruction,
            &to_rec,
            config.seed,
            "type1 vs G(mu(x))",
            &ids,
        )?;
        return Ok(Some(Population {
            clean,
            noised_classes: clean_classes.clone(),
            clean_classes,
            adversarial,
            adversarial_classes,
            reconstruction: Some(reconstruction),
            noised,
            noised_x: Some(noised_x),
        }));
    }
    let norms = l2_distances(&adversarial, &clean)?;
    let (noised, _) = noised_batch(&clean, &norms, config.seed, stream, &ids)?;
    let noised_classes = predict_in_batches(&models.gapcnn, &noised, config.batch_size)?
        .into_iter()
        .map(|c| c as usize)
        .collect();
    Ok(Some(Population {
        clean,
        clean_classes,
        adversarial,
        adversarial_classes,
        reconstruction: None,
        noised,
        noised_classes,
        noised_x: None,
    }))
}

/// A number per example that may be missing, as JSON keeps it (NaN included): `[]`
/// none, `[v]` one value, `[a, b, c, d, e]` a pair's five figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cell(#[serde(with = "crate::nan::floats")] Vec<f64>);

impl Cell {
    fn value(v: Option<f64>) -> Self {
        Self(v.into_iter().collect())
    }
    fn figures(f: &PairFigures) -> Self {
        Self(f.map_or_else(Vec::new, |a| a.to_vec()))
    }
    fn as_value(&self) -> Option<f64> {
        self.0.first().copied()
    }
    fn as_figures(&self) -> PairFigures {
        (self.0.len() == 5).then(|| [self.0[0], self.0[1], self.0[2], self.0[3], self.0[4]])
    }
}

/// One unit of the league: every method's per-example figures over one batch of a
/// population (Type II: a Type II batch's successes, compared clean vs attacked and
/// clean vs noise; Type I: a constrained batch's consensus successes, four comparisons;
/// clean: a batch of the first `league_images` images, Max-Sensitivity, the Lipschitz
/// estimate, deletion and insertion AUC).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeagueUnit {
    /// Examples in the unit.
    examples: usize,
    /// Per method (in order), per measure, per example.
    cells: Vec<Vec<Vec<Cell>>>,
    /// Per method: seconds.
    seconds: Vec<f64>,
}

impl LeagueUnit {
    fn empty(methods: usize) -> Self {
        Self {
            examples: 0,
            cells: vec![Vec::new(); methods],
            seconds: vec![0.0; methods],
        }
    }
}

/// The figures of a Type I population: map(x) vs map(G(z*)), map(G(mu(x))) vs
/// map(G(z*)), and each against its noise control.
fn type1_figures(
    m: &dyn Explainer,
    p: &Population,
    batch: usize,
    clean_maps: &mut MapCache,
) -> Result<Vec<Vec<PairFigures>>> {
    let keep = &p.clean_classes;
    let map = |t: &Tensor| maps_28(m, t, keep, batch);
    let m_x = maps_28_cached(m, &p.clean, keep, batch, clean_maps)?;
    let m_adv = map(&p.adversarial)?;
    let m_rec = match &p.reconstruction {
        Some(r) => map(r)?,
        None => m_x.clone(),
    };
    let m_noise = map(&p.noised)?;
    let m_noise_x = match &p.noised_x {
        Some(t) => map(t)?,
        None => m_x.clone(),
    };
    Ok(vec![
        change_figures(&m_x, &m_adv)?,
        change_figures(&m_rec, &m_adv)?,
        change_figures(&m_x, &m_noise_x)?,
        change_figures(&m_rec, &m_noise)?,
    ])
}

/// The figures of a Type II population: map(x) vs map(x'), and vs its noise control.
fn type2_figures(
    m: &dyn Explainer,
    p: &Population,
    batch: usize,
    clean_maps: &mut MapCache,
) -> Result<Vec<Vec<PairFigures>>> {
    let m_x = maps_28_cached(m, &p.clean, &p.clean_classes, batch, clean_maps)?;
    Ok(vec![
        change_figures(
            &m_x,
            &maps_28(m, &p.adversarial, &p.adversarial_classes, batch)?,
        )?,
        change_figures(&m_x, &maps_28(m, &p.noised, &p.noised_classes, batch)?)?,
    ])
}

/// The league unit of a population of kept examples (empty: no examples); the maps of
/// the clean images through `clean_maps` (one cache per method).
#[allow(clippy::too_many_arguments)]
fn population_unit(
    kept: &[KeptExample],
    stream: &str,
    methods: &[Box<dyn Explainer + '_>],
    clean_maps: &mut [MapCache],
    models: &Models,
    test: &Dataset,
    config: &ExperimentConfig,
    device: &Device,
) -> Result<LeagueUnit> {
    let Some(p) = population(kept, stream, models, test, config, device)? else {
        return Ok(LeagueUnit::empty(methods.len()));
    };
    let batch = config.batch_size.max(1);
    let mut unit = LeagueUnit {
        examples: kept.len(),
        cells: Vec::new(),
        seconds: Vec::new(),
    };
    for (m, cache) in methods.iter().zip(clean_maps.iter_mut()) {
        let t0 = Instant::now();
        let figures = if p.reconstruction.is_some() {
            type1_figures(m.as_ref(), &p, batch, cache)?
        } else {
            type2_figures(m.as_ref(), &p, batch, cache)?
        };
        unit.cells.push(
            figures
                .iter()
                .map(|f| f.iter().map(Cell::figures).collect())
                .collect(),
        );
        unit.seconds.push(t0.elapsed().as_secs_f64());
    }
    Ok(unit)
}

/// The league unit of clean test images `start..end`.
#[allow(clippy::too_many_arguments)]
fn clean_unit(
    start: usize,
    end: usize,
    methods: &[Box<dyn Explainer + '_>],
    clean_maps: &mut [MapCache],
    models: &Models,
    test: &Dataset,
    config: &ExperimentConfig,
    device: &Device,
) -> Result<LeagueUnit> {
    let batch = config.batch_size.max(1);
    let indices: Vec<usize> = (start..end).collect();
    let clean = test
        .images_tensor(&indices, PixelFormat::Gray, device)
        .map_err(models::ModelError::from)?;
    let classes: Vec<usize> = predict_in_batches(&models.gapcnn, &clean, batch)?
        .into_iter()
        .map(|c| c as usize)
        .collect();
    let pixels = rows(&clean)?;
    let mut unit = LeagueUnit {
        examples: indices.len(),
        cells: Vec::new(),
        seconds: Vec::new(),
    };
    for (m, cache) in methods.iter().zip(clean_maps.iter_mut()) {
        let t0 = Instant::now();
        let base = rows(&maps_28_cached(m.as_ref(), &clean, &classes, batch, cache)?)?;
        let (sensitivity, lipschitz) = noise_robustness(
            m.as_ref(),
            &models.gapcnn,
            &clean,
            &base,
            &indices,
            &classes,
            config.league_noise_radius,
            config.league_noise_samples,
            config.seed,
            batch,
        )?;
        let (deletion, insertion) = pixel_curve_aucs(
            &models.gapcnn,
            &base,
            &pixels,
            &classes,
            config.league_pixels_per_step,
            batch,
            device,
        )?;
        let cells = |v: &[Option<f64>]| v.iter().map(|&x| Cell::value(x)).collect();
        unit.cells.push(vec![
            cells(&sensitivity),
            cells(&lipschitz),
            cells(&deletion),
            cells(&insertion),
        ]);
        unit.seconds.push(t0.elapsed().as_secs_f64());
    }
    Ok(unit)
}

/// Method `m`'s measure `k` over `units`, example by example in unit order, the first
/// `limit` examples.
fn gathered(units: &[LeagueUnit], m: usize, k: usize, limit: usize) -> Vec<Cell> {
    let mut out: Vec<Cell> = units
        .iter()
        .filter(|u| u.examples > 0)
        .flat_map(|u| u.cells[m][k].iter().cloned())
        .collect();
    out.truncate(limit);
    out
}

fn pair_figures_of(cells: &[Cell]) -> Vec<PairFigures> {
    cells.iter().map(Cell::as_figures).collect()
}

fn type1_cell(units: &[LeagueUnit], m: usize) -> Type1Cell {
    let f = |k| pair_figures_of(&gathered(units, m, k, usize::MAX));
    let (vs_x, vs_rec, noise_x, noise_rec) = (f(0), f(1), f(2), f(3));
    let all = |f: &[PairFigures]| CamChange::over(f, |_| true);
    Type1Cell {
        vs_x: all(&vs_x),
        vs_reconstruction: all(&vs_rec),
        noise_x: all(&noise_x),
        noise_reconstruction: all(&noise_rec),
        detection: Detection::of(&change_scores(&vs_rec), &change_scores(&noise_rec)),
    }
}

fn type2_cell(units: &[LeagueUnit], m: usize, limit: usize) -> Type2Cell {
    let attacked = pair_figures_of(&gathered(units, m, 0, limit));
    let control = pair_figures_of(&gathered(units, m, 1, limit));
    Type2Cell {
        change: CamChange::over(&attacked, |_| true),
        noise: CamChange::over(&control, |_| true),
        detection: Detection::of(&change_scores(&attacked), &change_scores(&control)),
    }
}

fn examples(units: &[LeagueUnit]) -> usize {
    units.iter().map(|u| u.examples).sum()
}

/// One condition of a figure image: its name, the class explained, the Type I target
/// and the image.
type FigureInput = (String, u32, Option<u32>, Vec<f32>);

/// The test images of the figure: those with a Type I success and a PGD-Linf and CW-L2
/// success kept, the first [`FIGURE_IMAGES`] by test index; each with its four
/// conditions' images and classes.
fn figure_inputs(
    type1: &[KeptExample],
    type2: &BTreeMap<&str, &[KeptExample]>,
    test: &Dataset,
    device: &Device,
) -> Result<Vec<(usize, Vec<FigureInput>)>> {
    let find = |attack: &str, i: usize| {
        type2
            .get(attack)
            .and_then(|kept| kept.iter().find(|k| k.index == i))
    };
    let mut indices: Vec<usize> = type1.iter().map(|k| k.index).collect();
    indices.sort_unstable();
    indices.dedup();
    let mut out = Vec::new();
    for i in indices {
        if out.len() == FIGURE_IMAGES {
            break;
        }
        let (Some(t1), Some(pgd), Some(cw)) = (
            type1.iter().find(|k| k.index == i),
            find("pgd-linf", i),
            find("cw-l2", i),
        ) else {
            continue;
        };
        let clean = test
            .images_tensor(&[i], PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let clean = rows(&clean)?.remove(0);
        out.push((
            i,
            vec![
                ("clean".to_string(), pgd.clean_class, None, clean),
                (
                    "type I".to_string(),
                    t1.adversarial_class,
                    t1.target,
                    t1.adversarial.clone(),
                ),
                (
                    "pgd-linf".to_string(),
                    pgd.adversarial_class,
                    None,
                    pgd.adversarial.clone(),
                ),
                (
                    "cw-l2".to_string(),
                    cw.adversarial_class,
                    None,
                    cw.adversarial.clone(),
                ),
            ],
        ));
    }
    Ok(out)
}

/// What the league explains: the attack stages' results (the single run and a merge),
/// or, in a shard, the shard's own units of them.
pub(crate) enum LeagueInputs<'a> {
    /// The assembled Type II and Type I stages.
    Results {
        /// Every Type II stage.
        type2: &'a [Type2Result],
        /// The Type I stage.
        type1: &'a Type1Result,
    },
    /// A shard: its units of the attack stages, read back from its directory.
    Shard,
}

/// Runs the league: every method of [`cam_model_methods`] on f1, in units (a Type II
/// batch's kept successes, a constrained Type I batch's consensus successes, a batch of
/// clean images), each owned by the shard that owns the attack batch it explains.
/// `None` in a shard run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_league(
    models: &Models,
    test: &Dataset,
    inputs: LeagueInputs<'_>,
    config: &ExperimentConfig,
    units: &Units<'_>,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Option<LeagueResult>> {
    let batch = config.batch_size.max(1);
    let methods = cam_model_methods(&models.gapcnn);
    let attacks: Vec<String> = config
        .type2_attacks()
        .iter()
        .map(|a| a.name().to_string())
        .filter(|a| LEAGUE_ATTACKS.contains(&a.as_str()))
        .collect();
    let clean_n = config.league_images.min(test.len());
    let type2_counts: Vec<usize> = attacks
        .iter()
        .map(|name| crate::stages::type2::type2_images(name, config, test).div_ceil(batch))
        .collect();
    // Type I: one unit per batch of the constrained attack.
    let per = config.type1_batch.max(1);
    let mut type1_by_batch: BTreeMap<usize, Vec<KeptExample>> = BTreeMap::new();
    let type1_count = match &inputs {
        LeagueInputs::Results { type1, .. } => {
            for k in &type1.successes {
                type1_by_batch
                    .entry(k.id / per)
                    .or_default()
                    .push(k.clone());
            }
            type1.constrained.pairs.div_ceil(per)
        }
        LeagueInputs::Shard => {
            let (count, mine) = units.written::<FinishedBatch>("type1_constrained")?;
            for (b, f) in mine {
                type1_by_batch.insert(b, kept_of_batch(&models.svae, test, &f, device)?);
            }
            count
        }
    };
    progress.start(
        "explanation league",
        (type2_counts.iter().sum::<usize>() + type1_count + clean_n.div_ceil(batch)) as u64,
        "units",
    );
    // The clean test images' maps, per method, shared by every unit this process runs.
    let mut clean_maps: Vec<MapCache> = methods.iter().map(|_| MapCache::default()).collect();
    let mut explain_population = |kept: &[KeptExample], stream: &str| {
        let maps = &mut clean_maps;
        population_unit(kept, stream, &methods, maps, models, test, config, device)
    };
    // Type II: one unit per batch of the attack.
    let mut type2_units = Vec::new();
    for (name, &count) in attacks.iter().zip(&type2_counts) {
        let owner = format!("type2_{name}");
        let mut by_batch: BTreeMap<usize, Vec<KeptExample>> = BTreeMap::new();
        match &inputs {
            LeagueInputs::Results { type2, .. } => {
                if let Some(t) = type2.iter().find(|t| &t.attack == name) {
                    for k in &t.successes {
                        by_batch.entry(k.index / batch).or_default().push(k.clone());
                    }
                }
            }
            LeagueInputs::Shard => {
                let (_, mine) = units.written::<crate::stages::type2::Type2Unit>(&owner)?;
                for (b, u) in mine {
                    by_batch.insert(b, u.kept);
                }
            }
        }
        let r = units.run_owned_as(&format!("league_{name}"), &owner, count, |b| {
            let kept = by_batch.get(&b).map_or(&[][..], Vec::as_slice);
            let u = explain_population(kept, name)?;
            progress.advance(1);
            Ok(u)
        })?;
        type2_units.push((name.clone(), r));
    }
    let type1_units =
        units.run_owned_as("league_type1", "type1_constrained", type1_count, |b| {
            let kept = type1_by_batch.get(&b).map_or(&[][..], Vec::as_slice);
            let u = explain_population(kept, "type1")?;
            progress.advance(1);
            Ok(u)
        })?;
    // Clean images: one unit per batch of the first `league_images`.
    let clean_units = units.run("league_clean", clean_n.div_ceil(batch), |b| {
        let (start, end) = (b * batch, ((b + 1) * batch).min(clean_n));
        let u = clean_unit(
            start,
            end,
            &methods,
            &mut clean_maps,
            models,
            test,
            config,
            device,
        )?;
        progress.advance(1);
        Ok(u)
    })?;
    progress.finish();
    let LeagueInputs::Results { type2, type1 } = inputs else {
        return Ok(None);
    };
    let (Some(type1_units), Some(clean_units)) = (type1_units, clean_units) else {
        return Ok(None);
    };
    let mut type2_done = Vec::new();
    for (name, r) in type2_units {
        let Some(u) = r else {
            return Ok(None);
        };
        type2_done.push((name, u));
    }

    let mut kept_type2: BTreeMap<&str, &[KeptExample]> = BTreeMap::new();
    for name in LEAGUE_ATTACKS {
        if let Some(t) = type2.iter().find(|t| t.attack == name) {
            kept_type2.insert(name, &t.successes);
        }
    }
    let figure_in = figure_inputs(&type1.successes, &kept_type2, test, device)?;
    let figure_images: Vec<f32> = figure_in
        .iter()
        .flat_map(|(_, cells)| cells.iter().flat_map(|c| c.3.clone()))
        .collect();
    let figure_n = figure_images.len() / 784;
    let figure_tensor = image_tensor(figure_images, figure_n, device)?;
    let figure_classes: Vec<usize> = figure_in
        .iter()
        .flat_map(|(_, cells)| cells.iter().map(|c| c.1 as usize))
        .collect();

    let mut table = BTreeMap::new();
    let mut names = Vec::new();
    let mut seconds = Vec::new();
    let mut figure_maps: Vec<Vec<Vec<f32>>> = Vec::new();
    let limit = config.league_successes;
    let all_units = || {
        type2_done
            .iter()
            .flat_map(|(_, u)| u.iter())
            .chain(&type1_units)
            .chain(&clean_units)
    };
    for (k, m) in methods.iter().enumerate() {
        let t0 = Instant::now();
        let mut cells = BTreeMap::new();
        for (name, u) in &type2_done {
            cells.insert(name.clone(), type2_cell(u, k, limit));
        }
        let measure = |j| -> Vec<Option<f64>> {
            gathered(&clean_units, k, j, usize::MAX)
                .iter()
                .map(Cell::as_value)
                .collect()
        };
        table.insert(
            m.name().to_string(),
            MethodScores {
                type1: type1_cell(&type1_units, k),
                type2: cells,
                max_sensitivity: MeanOf::of(&measure(0)),
                lipschitz: MeanOf::of(&measure(1)),
                deletion_auc: MeanOf::of(&measure(2)),
                insertion_auc: MeanOf::of(&measure(3)),
            },
        );
        if figure_n > 0 {
            let shown = scale_maps(
                &maps_28(m.as_ref(), &figure_tensor, &figure_classes, batch)?,
                MapScaling::ReluMinMax,
            )?;
            figure_maps.push(rows(&shown.maps)?);
        }
        names.push(m.name().to_string());
        let in_units: f64 = all_units()
            .filter(|u| u.examples > 0)
            .map(|u| u.seconds[k])
            .sum();
        seconds.push(in_units + t0.elapsed().as_secs_f64());
    }

    let rows_for_verdict: Vec<(String, f64, f64, f64)> = names
        .iter()
        .map(|name| {
            let s = &table[name];
            let type2: Vec<f64> = s.type2.values().map(|c| c.detection.auroc).collect();
            let type2_mean = if type2.is_empty() {
                f64::NAN
            } else {
                type2.iter().sum::<f64>() / type2.len() as f64
            };
            (
                name.clone(),
                s.type1.detection.auroc,
                type2_mean,
                s.max_sensitivity.mean,
            )
        })
        .collect();
    let mut slot = 0;
    let figure = figure_in
        .into_iter()
        .map(|(index, cells)| {
            let cells = cells
                .into_iter()
                .map(|(condition, class, target, pixels)| {
                    let maps = figure_maps.iter().map(|per| per[slot].clone()).collect();
                    slot += 1;
                    FigureCell {
                        condition,
                        class,
                        target,
                        pixels,
                        maps,
                    }
                })
                .collect();
            (index, cells)
        })
        .collect();
    Ok(Some(LeagueResult {
        table: LeagueTable {
            methods: table,
            populations: Populations {
                model: "gapcnn".into(),
                type1: examples(&type1_units),
                type2: type2_done
                    .iter()
                    .map(|(name, u)| (name.clone(), examples(u).min(limit)))
                    .collect(),
                clean_images: clean_n,
                noise_samples: config.league_noise_samples,
                noise_radius: config.league_noise_radius,
            },
            verdict: verdict::verdict(&rows_for_verdict),
        },
        methods: names,
        figure,
        seconds,
    }))
}
