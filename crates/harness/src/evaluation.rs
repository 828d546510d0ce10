//! The one entry point: [`run_evaluation`] runs the stages in order (each loaded from the
//! stage cache when it finished before under the same configuration and inputs), then
//! writes `summary.json`, the figures and the report.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use mnist_data::Dataset;

use crate::artifact::write_atomic;
use crate::bundle::Models;
use crate::cache::{stage, StageTime};
use crate::config::ExperimentConfig;
use crate::error::{HarnessError, Result};
use crate::inputs::Provenance;
use crate::progress::Progress;
use crate::results::Evaluation;
use crate::roc::roc_comparison;
use crate::stages::{
    evaluate_models, roc_population, run_clever, run_league, run_sandwich, run_type1, run_type2,
};
use crate::summary::{StageResults, Summary};

/// A stage's result, its time kept in `times`.
fn timed<T>(times: &mut Vec<StageTime>, (result, time): (T, StageTime)) -> T {
    times.push(time);
    result
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
    let mut times = Vec::new();
    let model_accuracies = timed(
        &mut times,
        stage(out, "models", config, inputs, || {
            evaluate_models(models, &eval_set, device, progress)
        })?,
    );
    let mut type2 = Vec::new();
    for attack in config.type2_attacks() {
        let name = format!("type2_{}", attack.name());
        type2.push(timed(
            &mut times,
            stage(out, &name, config, inputs, || {
                run_type2(attack.as_ref(), models, test, config, out, device, progress)
            })?,
        ));
    }
    let type1 = timed(
        &mut times,
        stage(out, "type1", config, inputs, || {
            run_type1(models, train, test, config, inputs, out, device, progress)
        })?,
    );
    // Cached now: the finished batches kept for a resume are no longer needed.
    let _ = std::fs::remove_file(out.join(crate::stages::type1::PARTIAL_FILE));
    let clever = timed(
        &mut times,
        stage(out, "clever", config, inputs, || {
            run_clever(models, test, &type2, config, out, device, progress)
        })?,
    );
    let sandwich = timed(
        &mut times,
        stage(out, "sandwich", config, inputs, || {
            run_sandwich(models, test, &type2, &clever, config, out, device, progress)
        })?,
    );
    let population = timed(
        &mut times,
        stage(out, "roc", config, inputs, || {
            roc_population(models, &eval_set, config, device, progress)
        })?,
    );
    let league = timed(
        &mut times,
        stage(out, "league", config, inputs, || {
            run_league(models, test, &type2, &type1, config, device, progress)
        })?,
    );
    let roc = roc_comparison(
        config.positive_class,
        &population.clean,
        &population.type2_of_positives,
        &type1.positives_turned,
    )?;

    let summary = Summary::of(
        &StageResults {
            models: &model_accuracies,
            type2: &type2,
            type1: &type1,
            roc: &roc,
            clever: &clever,
            sandwich: &sandwich,
            league: &league,
        },
        config,
        provenance,
        &times,
        t0.elapsed().as_secs_f64(),
    );
    let text =
        serde_json::to_string_pretty(&summary).map_err(|e| HarnessError::Other(e.to_string()))?;
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    let evaluation = Evaluation {
        models: model_accuracies,
        type2,
        type1,
        roc,
        clever,
        sandwich,
        league,
        summary,
    };
    crate::figures::draw_all(
        out,
        &evaluation.type2,
        &evaluation.clever,
        &evaluation.sandwich,
        &evaluation.roc,
        &evaluation.league,
    )?;
    crate::report::write_reports(&evaluation, config, provenance, out)?;
    Ok(evaluation)
}
