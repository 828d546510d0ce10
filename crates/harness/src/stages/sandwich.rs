//! The attack lower bound three ways, per image: a certified radius (CROWN, a proof that
//! no adversarial example lies closer), the CLEVER estimate, and the smallest adversarial
//! example found. A sound certificate never exceeds what an attack found; CLEVER should
//! sit between the two, and where it exceeds the found distance the estimate failed.
//!
//! The images are the CLEVER stage's (the first Type II images f1 classifies correctly),
//! each measured on f1 = GapCnn in both geometries:
//! - L2: certified radius, untargeted CLEVER L2, and the smallest successful CW-L2 or
//!   DeepFool perturbation from the Type II stages;
//! - Linf: certified radius, untargeted CLEVER Linf, and the smallest Linf of a
//!   successful PGD-Linf run, the eps found by bisection ([`smallest_pgd_linf`]), or of
//!   any Type II attack's success on that image if smaller.

use std::path::Path;
use std::time::Instant;

use attacks::{Attack, PgdConfig, PgdLinf, Targeting};
use candle_core::{Device, Tensor};
use certify::{certified_radii, Method, Network, Norm, RadiusSearch};
use mnist_data::{Dataset, PixelFormat};
use models::Classifier;
use serde::{Deserialize, Serialize};

use crate::artifact::{csv, write_atomic};
use crate::bundle::Models;
use crate::config::ExperimentConfig;
use crate::error::{HarnessError, Result};
use crate::progress::Progress;
use crate::shard::Units;
use crate::stages::clever::CleverResult;
use crate::stages::type2::{smallest_found, Type2Result};

/// The Linf bisection stops when the bracket is at most this wide relative to its top...
pub const PGD_BISECTION_RELATIVE: f64 = 0.01;
/// ...or this wide in absolute terms.
pub const PGD_BISECTION_ABSOLUTE: f64 = 1e-4;

/// One geometry of one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Largest radius the certificate proves (bisection to 1 % or its absolute floor).
    pub certified: f64,
    /// The smallest radius the bisection tried that the bounds do not certify.
    pub not_certified: f64,
    /// The CLEVER estimate (untargeted).
    #[serde(with = "crate::nan::float")]
    pub clever: f64,
    /// The smallest successful perturbation found, if any attack succeeded.
    pub found: Option<f64>,
}

impl Bounds {
    /// CLEVER above the found distance: the estimate failed on this image.
    pub fn clever_above_found(&self) -> bool {
        self.found.is_some_and(|f| self.clever > f)
    }

    /// The certificate above the found distance: unsound (a bug).
    pub fn certified_above_found(&self) -> bool {
        self.found.is_some_and(|f| self.certified > f)
    }

    /// The certificate above CLEVER: the estimate is below a proved bound.
    pub fn certified_above_clever(&self) -> bool {
        self.certified > self.clever
    }
}

/// One image's sandwich.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandwichRow {
    /// Test index.
    pub index: usize,
    /// L2.
    pub l2: Bounds,
    /// Linf.
    pub linf: Bounds,
    /// Which attack found the smallest L2 perturbation.
    pub found_l2_by: Option<String>,
    /// Which attack found the smallest Linf perturbation (`pgd-linf bisection` or a
    /// Type II attack's name).
    pub found_linf_by: Option<String>,
    /// The smallest eps at which PGD-Linf succeeded in the bisection.
    pub pgd_linf_eps: Option<f64>,
}

/// Counts of one geometry over the sandwich's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandwichCounts {
    /// Images measured.
    pub images: usize,
    /// Of those, images where an attack found a perturbation (the denominator of the
    /// next two counts).
    pub with_found: usize,
    /// CLEVER above the found distance (the estimate failed).
    pub clever_above_found: usize,
    /// Certified radius above the found distance: a soundness bug, must be 0.
    pub certified_above_found: usize,
    /// Certified radius above CLEVER (over `images`).
    pub certified_above_clever: usize,
}

impl SandwichCounts {
    fn of(rows: &[SandwichRow], bounds: fn(&SandwichRow) -> &Bounds) -> Self {
        let count = |f: fn(&Bounds) -> bool| rows.iter().filter(|r| f(bounds(r))).count();
        Self {
            images: rows.len(),
            with_found: count(|b| b.found.is_some()),
            clever_above_found: count(Bounds::clever_above_found),
            certified_above_found: count(Bounds::certified_above_found),
            certified_above_clever: count(Bounds::certified_above_clever),
        }
    }
}

/// The sandwich stage's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandwichResult {
    /// The bound method as run (`crown`, or `crown-ibp` where every intermediate
    /// bound came from IBP).
    pub method: String,
    /// Per image.
    pub rows: Vec<SandwichRow>,
    /// L2 counts.
    pub l2: SandwichCounts,
    /// Linf counts.
    pub linf: SandwichCounts,
    /// Seconds to certify one image in one norm: the batched bisections' time over
    /// twice the number of images.
    #[serde(with = "crate::nan::float")]
    pub seconds_per_radius: f64,
}

/// The smallest eps at which PGD-Linf (`steps` steps of `2.5 eps / steps`, a random
/// start seeded by `seed`) turns f1's decision on `image` (`1 x 1 x 28 x 28`), by
/// bisection on `[0, 1]` to [`PGD_BISECTION_RELATIVE`] / [`PGD_BISECTION_ABSOLUTE`];
/// returns that eps and the Linf of the successful perturbation found there, or `None`
/// when PGD fails even at eps 1.
pub fn smallest_pgd_linf(
    model: &dyn Classifier,
    image: &Tensor,
    label: u32,
    steps: usize,
    seed: u64,
) -> Result<Option<(f64, f64)>> {
    let attack_at = |eps: f64| -> Result<Option<f64>> {
        let pgd = PgdLinf(PgdConfig {
            eps,
            step_size: 2.5 * eps / steps.max(1) as f64,
            steps,
            random_start: true,
            restarts: 1,
            seed,
        });
        let o = pgd.run(model, image, &[label], &Targeting::Untargeted)?;
        Ok(o.success[0].then_some(o.linf[0]))
    };
    // Bracket first: the smallest of a few growing radii that succeeds.
    let mut lo = 0.0;
    let mut best = None;
    for hi in [0.05, 0.1, 0.2, 0.4, 1.0] {
        match attack_at(hi)? {
            Some(linf) => {
                best = Some((hi, linf));
                break;
            }
            None => lo = hi,
        }
    }
    let Some((mut hi, mut linf)) = best else {
        return Ok(None);
    };
    while hi - lo > PGD_BISECTION_ABSOLUTE.max(PGD_BISECTION_RELATIVE * hi) {
        let mid = 0.5 * (lo + hi);
        match attack_at(mid)? {
            Some(l) => (hi, linf) = (mid, l),
            None => lo = mid,
        }
    }
    Ok(Some((hi, linf)))
}

/// The sandwich's one unit: every CLEVER image's certified radii (both norms, all
/// images' bisections in lockstep, batched) and its PGD-Linf bisection.
#[derive(Serialize, Deserialize)]
pub(crate) struct SandwichUnit {
    /// The certification method's name.
    method: String,
    /// Seconds the certified radii took.
    certify_seconds: f64,
    /// The test images, in order.
    indices: Vec<usize>,
    /// Per image: (certified, not certified) L2 radii, then Linf.
    radii: Vec<[f64; 4]>,
    /// Per image: [`smallest_pgd_linf`].
    pgd: Vec<Option<(f64, f64)>>,
}

/// The sandwich's computation on the CLEVER stage's images (`indices`, from
/// [`crate::stages::clever::clever_images`]), one unit; `None` in a shard run.
pub(crate) fn sandwich_units(
    models: &Models,
    test: &Dataset,
    indices: &[usize],
    config: &ExperimentConfig,
    units: &Units<'_>,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Option<Vec<SandwichUnit>>> {
    progress.start(
        "certified <= CLEVER <= found",
        indices.len() as u64 + 2,
        "steps",
    );
    let r = units.run("sandwich", 1, |_| {
        let certify_err = |e: certify::CertifyError| HarnessError::Other(format!("certify: {e}"));
        let net = Network::from_model(&models.gapcnn).map_err(certify_err)?;
        let method = Method::crown();
        let method_name = if method.crown_intermediate_layers(&net).is_empty() {
            Method::crown_ibp().name()
        } else {
            method.name()
        };
        let images = test
            .images_tensor(indices, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let labels = indices
            .iter()
            .map(|&i| {
                test.label(i)
                    .map(u32::from)
                    .ok_or_else(|| HarnessError::Other(format!("test image {i} has no label")))
            })
            .collect::<Result<Vec<u32>>>()?;
        // Every image's bisection in lockstep, batched (certify keeps each image's bounds
        // its own): one pass per norm.
        let t = Instant::now();
        let classes: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let mut radii = |norm: Norm| {
            let search = RadiusSearch::default_for(norm, net.input_len());
            let r = if indices.is_empty() {
                Ok(Vec::new())
            } else {
                certified_radii(&net, &images, &classes, norm, method, search).map_err(certify_err)
            };
            progress.advance(1);
            r
        };
        let (radii_l2, radii_linf) = (radii(Norm::L2)?, radii(Norm::Linf)?);
        let certify_seconds = t.elapsed().as_secs_f64();
        let mut pgd = Vec::new();
        for (k, &i) in indices.iter().enumerate() {
            let x = images.narrow(0, k, 1)?;
            pgd.push(smallest_pgd_linf(
                &models.gapcnn,
                &x,
                labels[k],
                config.pgd_steps,
                config.seed.wrapping_add(i as u64),
            )?);
            progress.advance(1);
        }
        Ok(SandwichUnit {
            method: method_name.to_string(),
            certify_seconds,
            indices: indices.to_vec(),
            radii: radii_l2
                .iter()
                .zip(&radii_linf)
                .map(|(a, b)| [a.radius, a.not_certified, b.radius, b.not_certified])
                .collect(),
            pgd,
        })
    });
    progress.finish();
    r
}

/// The sandwich from its unit, the CLEVER stage and the Type II stages' found
/// perturbations; writes `sandwich.csv` (the figure, `sandwich.png`, is drawn from the
/// result by the evaluation, cached or not).
pub(crate) fn assemble_sandwich(
    unit: SandwichUnit,
    type2: &[Type2Result],
    clever: &CleverResult,
    out: &Path,
) -> Result<SandwichResult> {
    let clever_indices: Vec<usize> = clever.rows.iter().map(|r| r.index).collect();
    if unit.indices != clever_indices
        || unit.radii.len() != clever.rows.len()
        || unit.pgd.len() != clever.rows.len()
    {
        return Err(HarnessError::Other(format!(
            "sandwich: certified images {:?} are not the CLEVER images {clever_indices:?}",
            unit.indices
        )));
    }
    let method_name = unit.method.clone();
    let certify_time = unit.certify_seconds;
    let mut rows = Vec::new();
    for (k, c) in clever.rows.iter().enumerate() {
        let i = c.index;
        let [r2, n2, rinf, ninf] = unit.radii[k];
        let found_l2 = smallest_found(type2, &["cw-l2", "deepfool"], i, |t| &t.l2_per_image);
        let pgd = unit.pgd[k];
        let from_type2 = smallest_found(type2, &[], i, |t| &t.linf_per_image);
        let found_linf = match (
            pgd.map(|(_, l)| (l, "pgd-linf bisection".to_string())),
            from_type2,
        ) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        rows.push(SandwichRow {
            index: i,
            l2: Bounds {
                certified: r2,
                not_certified: n2,
                clever: c.clever_l2,
                found: found_l2.as_ref().map(|f| f.0),
            },
            linf: Bounds {
                certified: rinf,
                not_certified: ninf,
                clever: c.clever_linf,
                found: found_linf.as_ref().map(|f| f.0),
            },
            found_l2_by: found_l2.map(|f| f.1),
            found_linf_by: found_linf.map(|f| f.1),
            pgd_linf_eps: pgd.map(|p| p.0),
        });
    }
    let o = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.index.to_string(),
                format!("{:.7}", r.l2.certified),
                format!("{:.6}", r.l2.clever),
                o(r.l2.found),
                r.found_l2_by.clone().unwrap_or_default(),
                format!("{:.7}", r.linf.certified),
                format!("{:.6}", r.linf.clever),
                o(r.linf.found),
                r.found_linf_by.clone().unwrap_or_default(),
                o(r.pgd_linf_eps),
            ]
        })
        .collect();
    write_atomic(
        &out.join("sandwich.csv"),
        csv(
            &[
                "index",
                "certified_l2",
                "clever_l2",
                "found_l2",
                "found_l2_by",
                "certified_linf",
                "clever_linf",
                "found_linf",
                "found_linf_by",
                "pgd_linf_eps",
            ],
            &table,
        )
        .as_bytes(),
    )?;
    let figures = SandwichResult {
        method: method_name.to_string(),
        l2: SandwichCounts::of(&rows, |r| &r.l2),
        linf: SandwichCounts::of(&rows, |r| &r.linf),
        seconds_per_radius: if rows.is_empty() {
            f64::NAN
        } else {
            certify_time / (2 * rows.len()) as f64
        },
        rows,
    };
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(certified: f64, clever: f64, found: Option<f64>) -> Bounds {
        Bounds {
            certified,
            not_certified: certified * 1.01,
            clever,
            found,
        }
    }

    /// Z_0 = w.x + b, Z_1 = 0, the other classes far below: the smallest Linf change
    /// that turns class 0 is exactly margin / ||w||_1 while the box does not bind.
    struct Affine {
        w: Tensor,
        b: f64,
    }

    impl Classifier for Affine {
        fn logits(&self, images: &Tensor) -> candle_core::Result<Tensor> {
            let n = images.dim(0)?;
            let z0 = (images.flatten_from(1)?.matmul(&self.w)? + self.b)?;
            let rest = Tensor::full(-100f32, (n, 8), images.device())?;
            let z1 = Tensor::zeros((n, 1), candle_core::DType::F32, images.device())?;
            Tensor::cat(&[&z0, &z1, &rest], 1)
        }
    }

    #[test]
    fn pgd_bisection_finds_the_exact_linf_distance_of_a_linear_model() {
        let dev = Device::Cpu;
        // Weights of both signs and several sizes, deterministic.
        let w: Vec<f32> = (0..784)
            .map(|k| ((k * 37 % 101) as f32 / 101.0 - 0.45) * 0.1)
            .collect();
        let l1: f64 = w.iter().map(|v| v.abs() as f64).sum();
        let x = Tensor::full(0.5f32, (1, 1, 28, 28), &dev).unwrap();
        let wx: f64 = w.iter().map(|&v| v as f64 * 0.5).sum();
        for distance in [0.003, 0.07, 0.3] {
            let model = Affine {
                w: Tensor::from_vec(w.clone(), (784, 1), &dev).unwrap(),
                b: distance * l1 - wx,
            };
            assert_eq!(model.predict(&x).unwrap(), vec![0]);
            let (eps, linf) = smallest_pgd_linf(&model, &x, 0, 40, 7).unwrap().unwrap();
            let width = PGD_BISECTION_ABSOLUTE.max(PGD_BISECTION_RELATIVE * eps);
            // Nothing closer than the exact distance can succeed (to f32 rounding), and the
            // bisection stops within its bracket above it.
            assert!(linf >= distance * (1.0 - 1e-4), "{distance}: linf {linf}");
            assert!(
                linf <= eps + 1e-6,
                "{distance}: linf {linf} above eps {eps}"
            );
            assert!(
                eps <= distance + width + 1e-6,
                "{distance}: eps {eps}, bracket {width}"
            );
        }
    }

    #[test]
    fn counts_use_the_images_with_a_found_perturbation() {
        let row = |l2, linf| SandwichRow {
            index: 0,
            l2,
            linf,
            found_l2_by: None,
            found_linf_by: None,
            pgd_linf_eps: None,
        };
        let rows = vec![
            row(b(0.1, 0.5, Some(1.0)), b(0.01, 0.05, Some(0.04))),
            row(b(0.1, 0.5, None), b(0.01, 0.005, Some(0.1))),
            row(b(0.3, 0.2, Some(0.25)), b(0.01, 0.05, None)),
        ];
        let l2 = SandwichCounts::of(&rows, |r| &r.l2);
        assert_eq!(
            l2,
            SandwichCounts {
                images: 3,
                with_found: 2,
                clever_above_found: 0,
                certified_above_found: 1,
                certified_above_clever: 1,
            }
        );
        let linf = SandwichCounts::of(&rows, |r| &r.linf);
        assert_eq!(
            (
                linf.with_found,
                linf.clever_above_found,
                linf.certified_above_clever
            ),
            (2, 1, 1)
        );
    }
}
