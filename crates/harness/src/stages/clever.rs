//! CLEVER on a sample, beside the smallest perturbations the attacks found.

use std::path::Path;

use candle_core::Device;
use metrics::{clever_score, CleverConfig, CleverTarget, Fallback, Norm};
use mnist_data::{Dataset, PixelFormat};
use serde::{Deserialize, Serialize};

use crate::artifact::{csv, write_atomic};
use crate::bundle::Models;
use crate::config::ExperimentConfig;
use crate::error::Result;
use crate::progress::Progress;
use crate::shard::Units;
use crate::stages::type2::{smallest_found, Type2Result};

/// One image's CLEVER scores and found perturbations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleverRow {
    /// Test index.
    pub index: usize,
    /// Untargeted CLEVER L2 (the minimum over the 9 other classes).
    #[serde(with = "crate::nan::float")]
    pub clever_l2: f64,
    /// Untargeted CLEVER Linf.
    #[serde(with = "crate::nan::float")]
    pub clever_linf: f64,
    /// Why the L2 estimate's Lipschitz constant is the sample maximum, if it is. (Stage
    /// files from before this field do not parse, so their CLEVER stage is recomputed
    /// with the current fallback rules.)
    pub l2_fallback: Option<Fallback>,
    /// The same for the Linf estimate.
    pub linf_fallback: Option<Fallback>,
    /// Smallest successful L2 among CW-L2 and DeepFool.
    pub found_l2: Option<f64>,
    /// Linf of that smallest-L2 perturbation's attack... the smallest successful Linf among all attacks.
    pub found_linf: Option<f64>,
}

/// CLEVER figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleverResult {
    /// Nb, Ns and radii used.
    pub nb: usize,
    /// See `nb`.
    pub ns: usize,
    /// Per image.
    pub rows: Vec<CleverRow>,
    /// Mean CLEVER L2.
    #[serde(with = "crate::nan::float")]
    pub mean_l2: f64,
    /// Mean CLEVER Linf.
    #[serde(with = "crate::nan::float")]
    pub mean_linf: f64,
    /// Images where an attack found an L2 perturbation smaller than CLEVER's estimate.
    pub l2_bound_violations: usize,
    /// The Weibull fit's shape penalty ([`metrics::CLEVER_SHAPE_PENALTY`]). Stage files
    /// from before it (fitted without the penalty, issue #22) do not parse, so their
    /// CLEVER stage is recomputed.
    pub shape_penalty: f64,
}

impl CleverResult {
    /// The estimates (L2 and Linf together) whose Lipschitz constant is the sample
    /// maximum rather than the fitted location, counted per reason in the order each
    /// reason first occurs.
    pub fn fallbacks(&self) -> Vec<(Fallback, usize)> {
        let mut counts: Vec<(Fallback, usize)> = Vec::new();
        for f in self
            .rows
            .iter()
            .flat_map(|r| [r.l2_fallback, r.linf_fallback])
            .flatten()
        {
            match counts.iter_mut().find(|(g, _)| *g == f) {
                Some((_, n)) => *n += 1,
                None => counts.push((f, 1)),
            }
        }
        counts
    }
}

/// The fallback of the estimate that set the score (the closest class's).
fn decisive_fallback(report: &metrics::CleverReport) -> Option<Fallback> {
    report
        .per_class
        .iter()
        .find(|(j, _)| *j == report.closest_class)
        .and_then(|(_, e)| e.fallback)
}

/// The first `config.clever_images` test images f1 classifies correctly, among the Type
/// II images (like with like: an attack on the others has nothing to flip, and each has
/// its found perturbations).
pub(crate) fn clever_images(
    models: &Models,
    test: &Dataset,
    config: &ExperimentConfig,
    device: &Device,
) -> Result<Vec<usize>> {
    let pool = config.type2_images.min(test.len());
    let mut chosen = Vec::new();
    for start in (0..pool).step_by(500) {
        if chosen.len() >= config.clever_images {
            break;
        }
        let idx: Vec<usize> = (start..(start + 500).min(pool)).collect();
        let x = test
            .images_tensor(&idx, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let pred = models::Classifier::predict(&models.gapcnn, &x)?;
        chosen.extend(
            idx.iter()
                .zip(pred)
                .filter(|(&i, p)| test.label(i) == Some(*p as u8))
                .map(|(&i, _)| i),
        );
    }
    chosen.truncate(config.clever_images);
    Ok(chosen)
}

/// The untargeted CLEVER score (the one the untargeted attacks' smallest perturbations
/// are compared with) of each of [`clever_images`], one unit per image (its samples
/// seeded by the run's seed and the test index); the found perturbations are left for
/// [`assemble_clever`]. `None` in a shard run.
pub(crate) fn clever_units(
    models: &Models,
    test: &Dataset,
    config: &ExperimentConfig,
    units: &Units<'_>,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Option<Vec<CleverRow>>> {
    let chosen = clever_images(models, test, config, device)?;
    progress.start("CLEVER", chosen.len() as u64, "images");
    let rows = units.run("clever", chosen.len(), |u| {
        let i = chosen[u];
        let x = test
            .images_tensor(&[i], PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let score = |norm: Norm, radius: f64| {
            let c = CleverConfig {
                nb: config.clever_nb,
                ns: config.clever_ns,
                radius,
                norm,
            };
            clever_score(
                &models.gapcnn,
                &x,
                CleverTarget::Untargeted,
                &c,
                config.seed.wrapping_add(i as u64),
            )
        };
        let l2 = score(Norm::L2, config.clever_radius_l2)?;
        let linf = score(Norm::Linf, config.clever_radius_linf)?;
        progress.advance(1);
        Ok(CleverRow {
            index: i,
            clever_l2: l2.score,
            clever_linf: linf.score,
            l2_fallback: decisive_fallback(&l2),
            linf_fallback: decisive_fallback(&linf),
            found_l2: None,
            found_linf: None,
        })
    });
    progress.finish();
    rows
}

/// The CLEVER stage from its rows (in order), beside the smallest perturbations the
/// Type II stages found; writes `clever.csv`.
pub(crate) fn assemble_clever(
    mut rows: Vec<CleverRow>,
    type2: &[Type2Result],
    config: &ExperimentConfig,
    out: &Path,
) -> Result<CleverResult> {
    for r in &mut rows {
        let pick = |names: &[&str], f: fn(&Type2Result) -> &Vec<Option<f64>>| {
            smallest_found(type2, names, r.index, f).map(|(v, _)| v)
        };
        r.found_l2 = pick(&["cw-l2", "deepfool"], |t| &t.l2_per_image);
        r.found_linf = pick(&["fgsm", "pgd-linf", "pgd-l2", "cw-l2", "deepfool"], |t| {
            &t.linf_per_image
        });
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let o = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.5}"));
            let from = |f: Option<Fallback>| {
                f.map_or("fit".to_string(), |f| format!("max: {}", f.describe()))
            };
            vec![
                r.index.to_string(),
                format!("{:.5}", r.clever_l2),
                format!("{:.5}", r.clever_linf),
                from(r.l2_fallback),
                from(r.linf_fallback),
                o(r.found_l2),
                o(r.found_linf),
            ]
        })
        .collect();
    write_atomic(
        &out.join("clever.csv"),
        csv(
            &[
                "index",
                "clever_l2",
                "clever_linf",
                "l2_lipschitz_from",
                "linf_lipschitz_from",
                "found_l2",
                "found_linf",
            ],
            &table,
        )
        .as_bytes(),
    )?;
    let m = |f: fn(&CleverRow) -> f64| {
        if rows.is_empty() {
            f64::NAN
        } else {
            rows.iter().map(f).sum::<f64>() / rows.len() as f64
        }
    };
    Ok(CleverResult {
        nb: config.clever_nb,
        ns: config.clever_ns,
        mean_l2: m(|r| r.clever_l2),
        mean_linf: m(|r| r.clever_linf),
        l2_bound_violations: rows
            .iter()
            .filter(|r| r.found_l2.is_some_and(|f| f < r.clever_l2))
            .count(),
        shape_penalty: metrics::CLEVER_SHAPE_PENALTY,
        rows,
    })
}
