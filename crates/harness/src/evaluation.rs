//! The one entry point: [`run_evaluation`] runs the stages in order (each loaded from the
//! stage cache when it finished before under the same configuration and inputs), then
//! writes `summary.json`, the figures and the report; [`run_shard`] computes one shard's
//! units and [`merge_shards`] assembles the shards into what one process writes.

use std::path::{Path, PathBuf};
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
use crate::shard::{check_shards, units_path, Shard, ShardManifest, Units, Work, SHARD_FILE};
use crate::stages::clever::{assemble_clever, clever_images, clever_units};
use crate::stages::league::{run_league, LeagueInputs, LEAGUE_ATTACKS};
use crate::stages::models::model_units;
use crate::stages::roc_population::roc_population;
use crate::stages::run_type1;
use crate::stages::sandwich::{assemble_sandwich, sandwich_units};
use crate::stages::type2::{assemble_type2, type2_units};
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
    evaluate(
        &Work::All,
        models,
        train,
        test,
        config,
        provenance,
        out,
        device,
        progress,
    )?
    .ok_or_else(|| HarnessError::Other("the evaluation assembled nothing".into()))
}

/// Shard `shard` of the evaluation: computes this shard's units of every sharded stage
/// into `out/stages/*.units.jsonl` (resuming where a killed run stopped), then writes
/// `out/shard.json`. Nothing is assembled: [`merge_shards`] does that.
#[allow(clippy::too_many_arguments)]
pub fn run_shard(
    models: &Models,
    train: &Dataset,
    test: &Dataset,
    config: &ExperimentConfig,
    provenance: &Provenance,
    shard: Shard,
    out: &Path,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<ShardManifest> {
    let t0 = Instant::now();
    evaluate(
        &Work::Shard(shard),
        models,
        train,
        test,
        config,
        provenance,
        out,
        device,
        progress,
    )?;
    let manifest = ShardManifest {
        shard,
        config: config.clone(),
        inputs: provenance.inputs.clone(),
        program: crate::inputs::ProgramIdentity::running().clone(),
        stages: sharded_stages(config),
        seconds: t0.elapsed().as_secs_f64(),
    };
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| HarnessError::Other(e.to_string()))?;
    write_atomic(&out.join(SHARD_FILE), text.as_bytes())?;
    Ok(manifest)
}

/// Merges the finished shards in `shards` (any order; see [`check_shards`]) into `out`:
/// the summary, tables, figures and report one process writes with the shards'
/// configuration. `provenance.inputs` must be the shards' inputs (the same weights and
/// test set) for the assembly (the Type I panel's own accuracy, the CAM comparisons).
#[allow(clippy::too_many_arguments)]
pub fn merge_shards(
    models: &Models,
    train: &Dataset,
    test: &Dataset,
    provenance: &Provenance,
    shards: &[PathBuf],
    out: &Path,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Evaluation> {
    let (ordered, manifest) = check_shards(shards)?;
    if manifest.inputs != provenance.inputs {
        return Err(HarnessError::Other(format!(
            "the shards were computed on other inputs than these weights and test set \
             (fingerprints {} and {}): give merge the shards' --data-dir and --weights-dir",
            manifest.inputs.short(),
            provenance.inputs.short()
        )));
    }
    evaluate(
        &Work::Merge {
            dirs: ordered,
            program: manifest.program.clone(),
        },
        models,
        train,
        test,
        &manifest.config,
        provenance,
        out,
        device,
        progress,
    )?
    .ok_or_else(|| HarnessError::Other("the merge assembled nothing".into()))
}

/// The stages a shard computes units of, in order.
fn sharded_stages(config: &ExperimentConfig) -> Vec<String> {
    let mut names = vec!["models".to_string()];
    names.extend(
        config
            .type2_attacks()
            .iter()
            .map(|a| format!("type2_{}", a.name())),
    );
    names.extend(
        [
            "type1_paper",
            "type1_constrained",
            "clever",
            "sandwich",
            "roc_clean",
            "roc_positives",
        ]
        .map(String::from),
    );
    names.extend(league_stages(config));
    names
}

/// The league's unit streams: one per league attack the configuration runs, the Type I
/// population, the clean images.
fn league_stages(config: &ExperimentConfig) -> Vec<String> {
    let mut names: Vec<String> = config
        .type2_attacks()
        .iter()
        .filter(|a| LEAGUE_ATTACKS.contains(&a.name()))
        .map(|a| format!("league_{}", a.name()))
        .collect();
    names.extend(["league_type1", "league_clean"].map(String::from));
    names
}

/// Runs `compute` unless the stage cache has the stage, then drops its units file (a
/// single run's; a merge's units stay in the shards' directories).
fn assembled<T: serde::Serialize + serde::de::DeserializeOwned>(
    out: &Path,
    name: &str,
    unit_files: &[String],
    config: &ExperimentConfig,
    inputs: &crate::inputs::InputFingerprint,
    compute: impl FnOnce() -> Result<Option<T>>,
) -> Result<(T, StageTime)> {
    let r = stage(out, name, config, inputs, || {
        compute()?.ok_or_else(|| HarnessError::Other(format!("stage {name}: no units")))
    })?;
    for f in unit_files {
        let _ = std::fs::remove_file(units_path(out, f));
    }
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    work: &Work,
    models: &Models,
    train: &Dataset,
    test: &Dataset,
    config: &ExperimentConfig,
    provenance: &Provenance,
    out: &Path,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<Option<Evaluation>> {
    config.validate_for_test_split(test.len())?;
    let t0 = Instant::now();
    let inputs = &provenance.inputs;
    let units = Units {
        out,
        config,
        inputs,
        work,
    };
    let eval_set = if config.eval_images == 0 {
        test.clone()
    } else {
        test.first(config.eval_images)
    };
    if let Work::Shard(_) = work {
        model_units(models, &eval_set, &units, device, progress)?;
        for attack in config.type2_attacks() {
            type2_units(
                attack.as_ref(),
                models,
                test,
                config,
                &units,
                device,
                progress,
            )?;
        }
        run_type1(models, train, test, config, &units, out, device, progress)?;
        clever_units(models, test, config, &units, device, progress)?;
        let indices = clever_images(models, test, config, device)?;
        sandwich_units(models, test, &indices, config, &units, device, progress)?;
        roc_population(models, &eval_set, config, &units, device, progress)?;
        run_league(
            models,
            test,
            LeagueInputs::Shard,
            config,
            &units,
            device,
            progress,
        )?;
        return Ok(None);
    }
    let mut times = Vec::new();
    let model_accuracies = timed(
        &mut times,
        assembled(out, "models", &["models".into()], config, inputs, || {
            model_units(models, &eval_set, &units, device, progress)
        })?,
    );
    let mut type2 = Vec::new();
    for attack in config.type2_attacks() {
        let name = format!("type2_{}", attack.name());
        type2.push(timed(
            &mut times,
            assembled(
                out,
                &name,
                std::slice::from_ref(&name),
                config,
                inputs,
                || {
                    let Some(u) = type2_units(
                        attack.as_ref(),
                        models,
                        test,
                        config,
                        &units,
                        device,
                        progress,
                    )?
                    else {
                        return Ok(None);
                    };
                    assemble_type2(attack.name(), u, models, config, out, device).map(Some)
                },
            )?,
        ));
    }
    let type1 = timed(
        &mut times,
        assembled(
            out,
            "type1",
            &["type1_paper".into(), "type1_constrained".into()],
            config,
            inputs,
            || run_type1(models, train, test, config, &units, out, device, progress),
        )?,
    );
    let clever = timed(
        &mut times,
        assembled(out, "clever", &["clever".into()], config, inputs, || {
            let Some(rows) = clever_units(models, test, config, &units, device, progress)? else {
                return Ok(None);
            };
            assemble_clever(rows, &type2, config, out).map(Some)
        })?,
    );
    let sandwich = timed(
        &mut times,
        assembled(
            out,
            "sandwich",
            &["sandwich".into()],
            config,
            inputs,
            || {
                let indices: Vec<usize> = clever.rows.iter().map(|r| r.index).collect();
                let Some(mut u) =
                    sandwich_units(models, test, &indices, config, &units, device, progress)?
                else {
                    return Ok(None);
                };
                let unit = u
                    .pop()
                    .ok_or_else(|| HarnessError::Other("sandwich: no unit".into()))?;
                assemble_sandwich(unit, &type2, &clever, out).map(Some)
            },
        )?,
    );
    let population = timed(
        &mut times,
        assembled(
            out,
            "roc",
            &["roc_clean".into(), "roc_positives".into()],
            config,
            inputs,
            || roc_population(models, &eval_set, config, &units, device, progress),
        )?,
    );
    let league_files = league_stages(config);
    let league = timed(
        &mut times,
        assembled(out, "league", &league_files, config, inputs, || {
            run_league(
                models,
                test,
                LeagueInputs::Results {
                    type2: &type2,
                    type1: &type1,
                },
                config,
                &units,
                device,
                progress,
            )
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
        match work {
            Work::Merge { program, .. } => program,
            _ => crate::inputs::ProgramIdentity::running(),
        },
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
    Ok(Some(evaluation))
}
