//! `summary.json`'s one schema: [`Summary`], built from the stages' results by
//! [`Summary::of`]. `docs/SUMMARY.md` documents it and `.ci/run` reads it; a test checks
//! both against a summary this type writes (`tests/quick_claims.rs`). A number that could
//! not be computed (a mean over no example) is `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cache::StageTime;
use crate::cam_change::MapChange;
use crate::config::ExperimentConfig;
use crate::inputs::{ProgramIdentity, Provenance};
use crate::roc::RocComparison;
use crate::stages::league::LeagueTable;
use crate::stages::type1::{JudgeAccuracy, ModeSummary, Type1MapChange};
use crate::stages::type2::Type2Summary;
use crate::stages::{
    CleverResult, LeagueResult, ModelAccuracies, SandwichResult, Type1Result, Type2Result,
};

/// Where the ROC's Type I negatives and `cam.type1` come from.
const TYPE1_POPULATION: &str = "constrained attack, consensus successes";

/// Everything `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Model accuracies on the evaluation split.
    pub models: ModelsSummary,
    /// Per Type II attack, by name.
    pub type2: BTreeMap<String, Type2Summary>,
    /// The Type I stage.
    pub type1: Type1Summary,
    /// The ROC comparison.
    pub roc: RocSummary,
    /// The study's claims as measured.
    pub claims: Claims,
    /// CAM change per attack, under Type I, and the study's defective map.
    pub cam: CamSummary,
    /// Untargeted CLEVER.
    pub clever: CleverSummary,
    /// Certified <= CLEVER <= found.
    pub sandwich: SandwichSummary,
    /// The explanation league: every method's scores by name, the populations and the
    /// verdict.
    pub explain: LeagueTable,
    /// The full configuration.
    pub config: ExperimentConfig,
    /// The configuration's seed.
    pub seed: u64,
    /// Versions of this toolkit and of candle, and the build that computed the results.
    pub versions: Versions,
    /// Where the data came from.
    pub data: String,
    /// Where the weights came from.
    pub weights: String,
    /// The inputs' fingerprint.
    pub inputs: InputsSummary,
    /// This run's wall time (stages loaded from the cache are not re-timed).
    pub wall_seconds: f64,
    /// Each stage's computation time, in run order (a reused stage: the time of the run
    /// that computed it).
    pub stage_seconds: Vec<StageTime>,
}

/// One classifier's accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// On the evaluation split.
    pub test_accuracy: f64,
}

/// `models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelsSummary {
    /// f1.
    pub gapcnn: Accuracy,
    /// The second f1.
    pub mlp: Accuracy,
    /// The judge.
    pub oracle: Accuracy,
    /// The SVAE.
    pub svae: SvaeSummary,
    /// Images evaluated.
    pub images: usize,
}

/// `models.svae`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SvaeSummary {
    /// Repeats `latent_accuracy`.
    #[serde(with = "crate::nan::float")]
    pub test_accuracy: f64,
    /// f2(mu(x)) accuracy.
    #[serde(with = "crate::nan::float")]
    pub latent_accuracy: f64,
    /// Reconstruction BCE per image.
    #[serde(with = "crate::nan::float")]
    pub reconstruction_bce: f64,
    /// KL per image.
    #[serde(with = "crate::nan::float")]
    pub kl: f64,
    /// The oracle's accuracy on decode(mu(x)).
    pub decoded_oracle_accuracy: f64,
}

/// `type1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type1Summary {
    /// Pairs attacked by the paper's mode.
    pub pairs: usize,
    /// The paper's success rate (standard oracle).
    pub success_rate: f64,
    /// Mean L2 over successes.
    #[serde(with = "crate::nan::float")]
    pub mean_l2: f64,
    /// Mean Linf over successes.
    #[serde(with = "crate::nan::float")]
    pub mean_linf: f64,
    /// The oracle says the target.
    pub oracle_agreement: f64,
    /// f1 keeps its label.
    pub f1_kept: f64,
    /// Success rate per target class.
    #[serde(with = "crate::nan::floats")]
    pub per_target: Vec<f64>,
    /// Mean iterations of the successes.
    #[serde(with = "crate::nan::float")]
    pub mean_iterations: f64,
    /// Pairs x iterations per second.
    pub pair_iterations_per_second: f64,
    /// Each mode judged by the panel.
    pub modes: Type1Modes,
    /// Selected images f1 misclassifies.
    pub images_left_out: usize,
    /// Each judge's accuracy.
    pub judges: Vec<JudgeAccuracy>,
    /// Where the ROC's Type I negatives and `cam.type1` come from.
    pub negatives_from: String,
}

/// `type1.modes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type1Modes {
    /// The oracle-stopped reproduction.
    pub paper: ModeSummary,
    /// The judge-free constrained attack.
    pub constrained: ModeSummary,
}

/// `roc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocSummary {
    /// The positive class.
    pub positive_class: u32,
    /// The Type II attack run on the positives.
    pub type2_attack: String,
    /// AUC of the clean scores.
    pub clean_auc: f64,
    /// AUC with the Type II examples of the positives.
    pub type2_auc: f64,
    /// AUC with the Type I negatives added.
    pub type1_auc: f64,
    /// Clean TPR.
    pub clean_tpr: f64,
    /// TPR under Type II.
    pub type2_tpr: f64,
    /// TPR with the Type I negatives.
    pub type1_tpr: f64,
    /// Clean FPR.
    pub clean_fpr: f64,
    /// FPR under Type II.
    pub type2_fpr: f64,
    /// FPR with the Type I negatives.
    pub type1_fpr: f64,
    /// Positives among the evaluation images.
    pub positives: usize,
    /// Negatives among them.
    pub negatives: usize,
    /// Type I negatives added.
    pub type1_negatives_added: usize,
    /// Images scored clean.
    pub evaluation_images: usize,
    /// f1's FPR on the Type I set by itself.
    #[serde(with = "crate::nan::float")]
    pub type1_set_fpr: f64,
    /// Type I examples.
    pub type1_examples: usize,
    /// Where the Type I negatives come from.
    pub type1_negatives_from: String,
}

/// The study's claims, each as the direction the run measured (see the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The Type II examples of the positives lower f1's TPR.
    pub type2_lowers_tpr: bool,
    /// The Type I negatives raise f1's FPR.
    pub type1_raises_fpr: bool,
    /// The Type I map change (Spearman over the consensus successes, against x) is
    /// smaller, i.e. its Spearman larger, than every Type II attack's (over its
    /// successes); `None` where a population is empty.
    pub type1_change_smaller_than_every_type2: Option<bool>,
    /// The attacks whose change (over successes) is smaller than Type I's.
    pub type2_changing_less_than_type1: Vec<String>,
    /// The study's defective map is not the CAM (mean Spearman against the real map < 0.5).
    pub defective_map_differs_from_cam: Option<bool>,
}

impl Claims {
    /// Reads the claims off the measured results.
    pub fn of(type2: &[Type2Result], type1: &Type1Result, roc: &RocComparison) -> Self {
        let t1 = type1.cam.vs_x.spearman;
        let measured: Vec<&Type2Result> =
            type2.iter().filter(|t| t.cam.successes.pairs > 0).collect();
        let less: Vec<String> = measured
            .iter()
            .filter(|t| t.cam.successes.spearman >= t1)
            .map(|t| t.attack.clone())
            .collect();
        let (spearman, _, frames) = type1.defective_vs_real;
        Self {
            type2_lowers_tpr: roc.type2.tpr < roc.clean.tpr,
            type1_raises_fpr: roc.type1.fpr > roc.clean.fpr,
            type1_change_smaller_than_every_type2: (type1.cam.vs_x.pairs > 0
                && measured.len() == type2.len())
            .then_some(less.is_empty()),
            type2_changing_less_than_type1: less,
            defective_map_differs_from_cam: (frames > 0).then_some(spearman < 0.5),
        }
    }
}

/// `cam`: one entry per Type II attack (by name), `type1` and `defective_vs_real`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CamSummary {
    /// Per Type II attack.
    #[serde(flatten)]
    pub type2: BTreeMap<String, Labelled<MapChange>>,
    /// Under Type I.
    pub type1: Labelled<Type1MapChange>,
    /// The study's defective map vs the real class-7 CAM.
    pub defective_vs_real: DefectiveVsReal,
}

/// A map change with the population it was measured over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labelled<T> {
    /// The figures.
    #[serde(flatten)]
    pub change: T,
    /// Which examples they are over.
    pub population: String,
}

/// `cam.defective_vs_real`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefectiveVsReal {
    /// Mean Spearman.
    #[serde(with = "crate::nan::float")]
    pub spearman: f64,
    /// Mean Pearson.
    #[serde(with = "crate::nan::float")]
    pub pearson: f64,
    /// Frames compared.
    pub frames: usize,
}

/// `clever`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleverSummary {
    /// Images scored.
    pub images: usize,
    /// Batches.
    pub nb: usize,
    /// Samples per batch.
    pub ns: usize,
    /// `untargeted`.
    pub target: String,
    /// Which images.
    pub population: String,
    /// Mean CLEVER L2.
    #[serde(with = "crate::nan::float")]
    pub mean_l2: f64,
    /// Mean CLEVER Linf.
    #[serde(with = "crate::nan::float")]
    pub mean_linf: f64,
    /// Images where an attack found an L2 perturbation below the estimate.
    pub l2_bound_violations: usize,
    /// Estimates using the sample maximum instead of the Weibull location.
    pub fallbacks: usize,
}

/// `sandwich`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandwichSummary {
    /// Images.
    pub images: usize,
    /// `crown` or `crown-ibp`.
    pub method: String,
    /// The certified model.
    pub model: String,
    /// Which images.
    pub population: String,
    /// Seconds to certify one image in one norm.
    #[serde(with = "crate::nan::float")]
    pub seconds_per_radius: f64,
    /// L2 counts.
    pub l2: crate::stages::sandwich::SandwichCounts,
    /// Linf counts.
    pub linf: crate::stages::sandwich::SandwichCounts,
    /// Where the found L2 distances come from.
    pub found_l2_from: String,
    /// Where the found Linf distances come from.
    pub found_linf_from: String,
}

/// `versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// This toolkit.
    pub toolkit: String,
    /// candle.
    pub candle: String,
    /// The build of the program that computed the stages (all 64 hex digits of its
    /// [`ProgramIdentity`]; in a merge, the shards' build). `xtask compare` leaves it
    /// out with the timings: two builds that agree on every result are what it checks.
    pub program: String,
}

/// `inputs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputsSummary {
    /// The first digits of the fingerprint.
    pub fingerprint: String,
    /// All 64 hex digits.
    pub sha256: String,
}

/// The stages' results a summary is made of.
#[derive(Debug, Clone, Copy)]
pub struct StageResults<'a> {
    /// Model accuracies.
    pub models: &'a ModelAccuracies,
    /// Per Type II attack.
    pub type2: &'a [Type2Result],
    /// The Type I stage.
    pub type1: &'a Type1Result,
    /// The ROC comparison.
    pub roc: &'a RocComparison,
    /// CLEVER.
    pub clever: &'a CleverResult,
    /// The sandwich.
    pub sandwich: &'a SandwichResult,
    /// The explanation league.
    pub league: &'a LeagueResult,
}

impl Summary {
    /// The summary of `r` under `config` and `provenance`, `wall_seconds` into the run.
    pub fn of(
        r: &StageResults<'_>,
        config: &ExperimentConfig,
        provenance: &Provenance,
        program: &ProgramIdentity,
        stage_seconds: &[StageTime],
        wall_seconds: f64,
    ) -> Self {
        let (m, type1, roc) = (r.models, r.type1, r.roc);
        let type2 = r
            .type2
            .iter()
            .map(|t| (t.attack.clone(), t.summary.clone()))
            .collect();
        let cam_type2 = r
            .type2
            .iter()
            .map(|t| {
                (
                    t.attack.clone(),
                    Labelled {
                        change: t.cam.clone(),
                        population: "successes".into(),
                    },
                )
            })
            .collect();
        let (spearman, pearson, frames) = type1.defective_vs_real;
        Self {
            models: ModelsSummary {
                gapcnn: Accuracy {
                    test_accuracy: m.gapcnn,
                },
                mlp: Accuracy {
                    test_accuracy: m.mlp,
                },
                oracle: Accuracy {
                    test_accuracy: m.oracle,
                },
                svae: SvaeSummary {
                    test_accuracy: m.svae_latent_accuracy,
                    latent_accuracy: m.svae_latent_accuracy,
                    reconstruction_bce: m.svae_reconstruction_bce,
                    kl: m.svae_kl,
                    decoded_oracle_accuracy: m.svae_decoded_oracle_accuracy,
                },
                images: m.images,
            },
            type2,
            type1: Type1Summary {
                pairs: type1.pairs,
                success_rate: type1.success_rate,
                mean_l2: type1.mean_l2,
                mean_linf: type1.mean_linf,
                oracle_agreement: type1.oracle_agreement,
                f1_kept: type1.f1_kept,
                per_target: type1.per_target.clone(),
                mean_iterations: type1.mean_iterations,
                pair_iterations_per_second: type1.pair_iterations_per_second,
                modes: Type1Modes {
                    paper: type1.paper.clone(),
                    constrained: type1.constrained.clone(),
                },
                images_left_out: type1.images_left_out,
                judges: type1.judges.clone(),
                negatives_from: TYPE1_POPULATION.into(),
            },
            roc: RocSummary {
                positive_class: roc.positive_class,
                type2_attack: config.roc_type2_attack.clone(),
                clean_auc: roc.clean.auc,
                type2_auc: roc.type2.auc,
                type1_auc: roc.type1.auc,
                clean_tpr: roc.clean.tpr,
                type2_tpr: roc.type2.tpr,
                type1_tpr: roc.type1.tpr,
                clean_fpr: roc.clean.fpr,
                type2_fpr: roc.type2.fpr,
                type1_fpr: roc.type1.fpr,
                positives: roc.clean.positives,
                negatives: roc.clean.negatives,
                type1_negatives_added: type1.positives_turned.len(),
                evaluation_images: roc.clean.positives + roc.clean.negatives,
                type1_set_fpr: roc.type1_set_fpr,
                type1_examples: roc.type1_examples,
                type1_negatives_from: format!("{TYPE1_POPULATION} made from positives"),
            },
            claims: Claims::of(r.type2, type1, roc),
            cam: CamSummary {
                type2: cam_type2,
                type1: Labelled {
                    change: type1.cam.clone(),
                    population: TYPE1_POPULATION.into(),
                },
                defective_vs_real: DefectiveVsReal {
                    spearman,
                    pearson,
                    frames,
                },
            },
            clever: CleverSummary {
                images: r.clever.rows.len(),
                nb: r.clever.nb,
                ns: r.clever.ns,
                target: "untargeted".into(),
                population: "first correctly classified Type II images".into(),
                mean_l2: r.clever.mean_l2,
                mean_linf: r.clever.mean_linf,
                l2_bound_violations: r.clever.l2_bound_violations,
                fallbacks: r.clever.fallbacks().iter().map(|(_, n)| n).sum(),
            },
            sandwich: SandwichSummary {
                images: r.sandwich.rows.len(),
                method: r.sandwich.method.clone(),
                model: "gapcnn".into(),
                population: "the CLEVER images".into(),
                seconds_per_radius: r.sandwich.seconds_per_radius,
                l2: r.sandwich.l2,
                linf: r.sandwich.linf,
                found_l2_from: "cw-l2, deepfool".into(),
                found_linf_from: "pgd-linf eps bisection, every Type II attack".into(),
            },
            explain: r.league.table.clone(),
            config: config.clone(),
            seed: config.seed,
            versions: Versions {
                toolkit: env!("CARGO_PKG_VERSION").into(),
                candle: "0.11.1".into(),
                program: program.sha256().to_string(),
            },
            data: provenance.data.clone(),
            weights: provenance.weights.clone(),
            inputs: InputsSummary {
                fingerprint: provenance.inputs.short().to_string(),
                sha256: provenance.inputs.sha256().to_string(),
            },
            wall_seconds,
            stage_seconds: stage_seconds.to_vec(),
        }
    }
}
