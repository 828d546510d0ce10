//! The whole evaluation: stages in order, then `summary.json`, `roc.png`,
//! `type2_examples.png` and the report.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use mnist_data::Dataset;
use serde_json::{json, Value};

use crate::artifact::write_atomic;
use crate::clever_stage::{run_clever, CleverFigures};
use crate::config::ExperimentConfig;
use crate::error::{HarnessError, Result};
use crate::inputs::InputFingerprint;
use crate::roc::{roc_comparison, RocComparison};
use crate::runner::{
    evaluate_models, roc_population, run_type2, stage, type2_attacks, ModelFigures, Models,
    Progress, Type2Figures,
};
use crate::sandwich::{run_sandwich, SandwichFigures};
use crate::type1::{run_type1, Type1Figures};

/// Where the data and weights came from, for the report, and their fingerprint, which
/// also keys the cached stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The data source.
    pub data: String,
    /// The weights' source.
    pub weights: String,
    /// The checkpoints the models were loaded from and the test set passed to
    /// [`run_evaluation`] (e.g. [`InputFingerprint::of_weights_dir`]): a stage cached
    /// under other inputs is recomputed.
    pub inputs: InputFingerprint,
}

/// Everything the evaluation measured.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Model accuracies.
    pub models: ModelFigures,
    /// Per Type II attack.
    pub type2: Vec<Type2Figures>,
    /// The Type I stage.
    pub type1: Type1Figures,
    /// The ROC comparison.
    pub roc: RocComparison,
    /// CLEVER.
    pub clever: CleverFigures,
    /// Certified <= CLEVER <= found, on the CLEVER images.
    pub sandwich: SandwichFigures,
    /// `summary.json` as written.
    pub summary: Value,
}

/// Runs every stage (loading those already finished under `out` with the same
/// configuration and `provenance.inputs`) and writes the artifacts. `train` gives the
/// Type I stage its kNN judge and its class means.
#[allow(clippy::too_many_arguments)]
pub fn run_evaluation(
    models: &Models,
    train: &Dataset,
    test: &Dataset,
    config: &ExperimentConfig,
    provenance: &Provenance,
    out: &Path,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Evaluation> {
    config.validate_for_test_split(test.len())?;
    let t0 = Instant::now();
    let inputs = &provenance.inputs;
    let eval_set = if config.eval_images == 0 {
        test.clone()
    } else {
        test.first(config.eval_images)
    };
    let model_figures = stage(out, "models", config, inputs, || {
        evaluate_models(models, &eval_set, device, progress)
    })?;
    let mut type2 = Vec::new();
    for attack in type2_attacks(config) {
        let name = format!("type2_{}", attack.name());
        type2.push(stage(out, &name, config, inputs, || {
            run_type2(attack.as_ref(), models, test, config, out, device, progress)
        })?);
    }
    let type1 = stage(out, "type1", config, inputs, || {
        run_type1(models, train, test, config, inputs, out, device, progress)
    })?;
    // Cached now: the finished batches kept for a resume are no longer needed.
    let _ = std::fs::remove_file(out.join(crate::type1::PARTIAL_FILE));
    let clever = stage(out, "clever", config, inputs, || {
        run_clever(models, test, &type2, config, out, device, progress)
    })?;
    let sandwich = stage(out, "sandwich", config, inputs, || {
        run_sandwich(models, test, &type2, &clever, config, out, device, progress)
    })?;

    let population = stage(out, "roc", config, inputs, || {
        roc_population(models, &eval_set, config, device, progress)
    })?;
    let roc = roc_comparison(
        config.positive_class,
        &population.clean,
        &population.type2_of_positives,
        &type1.positives_turned,
    )?;
    crate::plot::roc_figure(&out.join("roc.png"), &roc)?;
    crate::plot::sandwich_figure(&out.join(crate::sandwich::SANDWICH_FIGURE), &sandwich)?;
    // Drawn from the stages' results, so a rerun that loads them draws it too.
    if type2.iter().any(|t| !t.examples.is_empty()) {
        crate::type2_examples::type2_examples_figure(
            &out.join("type2_examples.png"),
            models,
            test,
            &type2,
            device,
        )?;
    }

    let summary = summary_json(
        &model_figures,
        &type2,
        &type1,
        &roc,
        &clever,
        &sandwich,
        config,
        provenance,
        t0.elapsed().as_secs_f64(),
    );
    let text =
        serde_json::to_string_pretty(&summary).map_err(|e| HarnessError::Other(e.to_string()))?;
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    let evaluation = Evaluation {
        models: model_figures,
        type2,
        type1,
        roc,
        clever,
        sandwich,
        summary,
    };
    crate::report::write_reports(&evaluation, config, provenance, out)?;
    Ok(evaluation)
}

/// The study's claims, each as the direction the run measured (see the report).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
    /// Reads the claims off the measured figures.
    pub fn of(type2: &[Type2Figures], type1: &Type1Figures, roc: &RocComparison) -> Self {
        let t1 = type1.cam.vs_x.spearman;
        let measured: Vec<&Type2Figures> =
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

fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

#[allow(clippy::too_many_arguments)]
fn summary_json(
    m: &ModelFigures,
    type2: &[Type2Figures],
    type1: &Type1Figures,
    roc: &RocComparison,
    clever: &CleverFigures,
    sandwich: &SandwichFigures,
    config: &ExperimentConfig,
    provenance: &Provenance,
    wall_seconds: f64,
) -> Value {
    let mut t2 = serde_json::Map::new();
    let mut cam = serde_json::Map::new();
    let change = |c: &crate::cam_change::CamChange| {
        json!({"pairs": c.pairs, "skipped": c.skipped, "topk": finite(c.topk), "spearman": finite(c.spearman),
               "pearson": finite(c.pearson), "com_shift": finite(c.com_shift), "ssim": finite(c.ssim)})
    };
    for t in type2 {
        t2.insert(t.attack.clone(), json!({
            "images": t.images, "success_rate": t.success_rate, "robust_accuracy": t.robust_accuracy,
            "mean_l2": finite(t.mean_l2), "mean_linf": finite(t.mean_linf), "mean_l0": finite(t.mean_l0),
            "gradient_masking_suspected": t.gradient_masking_suspected, "images_per_second": t.images_per_second,
        }));
        let mut c = change(&t.cam.successes);
        c["population"] = json!("successes");
        c["all"] = change(&t.cam.all);
        c["noise"] = change(&t.cam.noise);
        c["attack_l2"] = finite(t.cam.attack_l2);
        c["noise_l2"] = finite(t.cam.noise_l2);
        cam.insert(t.attack.clone(), c);
    }
    let t1 = &type1.cam;
    let mut c = change(&t1.vs_x);
    c["population"] = json!("constrained attack, consensus successes");
    c["vs_reconstruction"] = change(&t1.vs_reconstruction);
    c["reconstruction_vs_x"] = change(&t1.reconstruction_vs_x);
    c["noise_x"] = change(&t1.noise_x);
    c["noise_reconstruction"] = change(&t1.noise_reconstruction);
    c["l2_x"] = finite(t1.l2_x);
    c["l2_reconstruction"] = finite(t1.l2_reconstruction);
    cam.insert("type1".into(), c);
    cam.insert("defective_vs_real".into(), json!({
        "spearman": finite(type1.defective_vs_real.0), "pearson": finite(type1.defective_vs_real.1), "frames": type1.defective_vs_real.2,
    }));
    let claims = Claims::of(type2, type1, roc);
    json!({
        "models": {
            "gapcnn": {"test_accuracy": m.gapcnn},
            "mlp": {"test_accuracy": m.mlp},
            "oracle": {"test_accuracy": m.oracle},
            "svae": {"test_accuracy": m.svae_latent_accuracy, "latent_accuracy": m.svae_latent_accuracy,
                     "reconstruction_bce": m.svae_reconstruction_bce, "kl": m.svae_kl,
                     "decoded_oracle_accuracy": m.svae_decoded_oracle_accuracy},
            "images": m.images,
        },
        "type2": t2,
        "type1": {
            "pairs": type1.pairs, "success_rate": type1.success_rate, "mean_l2": finite(type1.mean_l2),
            "mean_linf": finite(type1.mean_linf), "oracle_agreement": type1.oracle_agreement, "f1_kept": type1.f1_kept,
            "per_target": type1.per_target.iter().map(|&v| finite(v)).collect::<Vec<_>>(),
            "mean_iterations": finite(type1.mean_iterations), "pair_iterations_per_second": type1.pair_iterations_per_second,
            "modes": {
                "paper": serde_json::to_value(&type1.paper).unwrap_or(Value::Null),
                "constrained": serde_json::to_value(&type1.constrained).unwrap_or(Value::Null),
            },
            "images_left_out": type1.images_left_out,
            "judges": serde_json::to_value(&type1.judges).unwrap_or(Value::Null),
            "negatives_from": "constrained attack, consensus successes",
        },
        "roc": {
            "positive_class": roc.positive_class, "type2_attack": config.roc_type2_attack,
            "clean_auc": roc.clean.auc, "type2_auc": roc.type2.auc, "type1_auc": roc.type1.auc,
            "clean_tpr": roc.clean.tpr, "type2_tpr": roc.type2.tpr, "type1_tpr": roc.type1.tpr,
            "clean_fpr": roc.clean.fpr, "type2_fpr": roc.type2.fpr, "type1_fpr": roc.type1.fpr,
            "positives": roc.clean.positives, "negatives": roc.clean.negatives, "type1_negatives_added": type1.positives_turned.len(),
            "evaluation_images": roc.clean.positives + roc.clean.negatives,
            "type1_set_fpr": finite(roc.type1_set_fpr), "type1_examples": roc.type1_examples,
            "type1_negatives_from": "constrained attack, consensus successes made from positives",
        },
        "claims": serde_json::to_value(&claims).unwrap_or(Value::Null),
        "cam": cam,
        "clever": {
            "images": clever.rows.len(), "nb": clever.nb, "ns": clever.ns, "target": "untargeted", "population": "first correctly classified Type II images",
            "mean_l2": finite(clever.mean_l2), "mean_linf": finite(clever.mean_linf),
            "l2_bound_violations": clever.l2_bound_violations, "fallbacks": clever.fallbacks().iter().map(|(_, n)| n).sum::<usize>(),
        },
        "sandwich": {
            "images": sandwich.rows.len(), "method": sandwich.method, "model": "gapcnn",
            "population": "the CLEVER images", "seconds_per_radius": finite(sandwich.seconds_per_radius),
            "l2": serde_json::to_value(sandwich.l2).unwrap_or(Value::Null),
            "linf": serde_json::to_value(sandwich.linf).unwrap_or(Value::Null),
            "found_l2_from": "cw-l2, deepfool", "found_linf_from": "pgd-linf eps bisection, every Type II attack",
        },
        "config": serde_json::to_value(config).unwrap_or(Value::Null),
        "seed": config.seed,
        "versions": {"toolkit": env!("CARGO_PKG_VERSION"), "candle": "0.11.1"},
        "data": provenance.data,
        "weights": provenance.weights,
        "inputs": {"fingerprint": provenance.inputs.short(), "sha256": provenance.inputs.sha256()},
        "wall_seconds": wall_seconds,
    })
}
