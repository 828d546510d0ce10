//! `cargo xtask reproduce`: data and weights resolved (flags, local cache, the Hub, the
//! bundled fixtures, in that order), optionally trained first, then the full evaluation.

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::Device;
use clap::Args;
use common::progress::Bar;
use harness::{
    fetch_weights, load_models, merge_shards, run_evaluation, run_shard, ExperimentConfig,
    InputFingerprint, Provenance, WEIGHT_FILES,
};
use mnist_data::{HubFiles, HubSource, Source};
use models::train::{train_classifier, train_svae, ProgressBars, TrainConfig};
use models::{GapCnn, Mlp, Oracle};

/// Flags of `cargo xtask reproduce`.
#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// Fixtures only, the smallest profile (what CI runs; timings: docs/PERFORMANCE.md).
    #[arg(long, conflicts_with = "paper")]
    pub quick: bool,
    /// The published iteration counts (hours on a CPU).
    #[arg(long)]
    pub paper: bool,
    /// Train every model on the train split first (into `<out>/weights`), then evaluate.
    #[arg(long)]
    pub train: bool,
    /// Epochs per model with --train (the SVAE: epochs of its first stage).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Data and weights.
    #[command(flatten)]
    pub inputs: InputArgs,
    /// A TOML file overriding the profile's settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Compute shard K of N only (K from 0): this shard's batches of the sharded stages,
    /// into `--out` (one directory per shard); `cargo xtask merge` assembles them
    /// (docs/SCALE.md).
    #[arg(long, value_name = "K/N", conflicts_with = "train")]
    pub shard: Option<harness::Shard>,
}

/// Flags of `cargo xtask merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Where the merged results go.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// The shards' output directories (every shard of one run, any order).
    #[arg(value_name = "DIR", required = true, num_args = 1..)]
    pub shards: Vec<PathBuf>,
    /// The data and weights the shards ran on, as given to `reproduce` (checked against
    /// the shards' fingerprint).
    #[command(flatten)]
    pub inputs: InputArgs,
}

/// Where the data and the weights come from (`reproduce` and `merge`).
#[derive(Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// A directory with the four standard MNIST files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A Hub dataset repository for the data (default: ylecun/mnist, cache first).
    #[arg(long, value_name = "REPO")]
    pub hub: Option<String>,
    /// A directory with gapcnn/mlp/oracle/svae/robust-oracle.safetensors.
    #[arg(long, value_name = "DIR")]
    pub weights_dir: Option<PathBuf>,
    /// A Hub model repository with the four checkpoints (cache first).
    #[arg(long, value_name = "REPO")]
    pub weights_repo: Option<String>,
}

fn fixtures_weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/weights")
}

/// Data: `--data-dir`, `--hub`, else (not quick) the Hub's ylecun/mnist if cached or
/// reachable, else the fixtures.
fn resolve_data(args: &InputArgs, quick: bool) -> Result<(mnist_data::Splits, Option<String>)> {
    if let Some(dir) = &args.data_dir {
        return Ok((Source::Dir(dir.clone()).load()?, None));
    }
    if let Some(repo) = &args.hub {
        return Ok((
            Source::Hub(HubSource {
                progress: true,
                ..HubSource::new(repo.clone())
            })
            .load()?,
            None,
        ));
    }
    if !quick {
        match Source::Hub(HubSource {
            progress: true,
            ..HubSource::new(mnist_data::hub::DEFAULT_REPO)
        })
        .load()
        {
            Ok(s) => return Ok((s, None)),
            Err(e) => {
                let note =
                    format!("full MNIST unavailable ({e}); fell back to the bundled fixtures");
                eprintln!("note: {note}");
                return Ok((Source::Fixtures.load()?, Some(note)));
            }
        }
    }
    Ok((Source::Fixtures.load()?, None))
}

/// The data as [`resolve_data`] finds it, and where it came from (with the fallback's
/// note), printed.
fn described_data(args: &InputArgs, quick: bool) -> Result<(mnist_data::Splits, String)> {
    let (splits, data_note) = resolve_data(args, quick)?;
    let mut data = splits.origin.clone();
    if let Some(note) = data_note {
        data = format!("{data} ({note})");
    }
    eprintln!("data: {data}");
    Ok((splits, data))
}

/// Weights: `--weights-dir`, `--weights-repo` (cache, then network; verified by loading),
/// else the fixtures. Returns the directory and where it came from, for the report.
fn resolve_weights(args: &InputArgs, device: &Device) -> (PathBuf, String) {
    if let Some(dir) = &args.weights_dir {
        return (dir.clone(), format!("directory {}", dir.display()));
    }
    let dir = fixtures_weights();
    let bundled = format!("bundled {}", dir.display());
    let Some(repo) = &args.weights_repo else {
        return (dir, bundled);
    };
    let hub = HubFiles {
        progress: true,
        ..HubFiles::model(repo.clone())
    };
    match fetch_weights(&hub, device) {
        Ok(w) => (w.dir, w.origin),
        Err(e) => {
            let note =
                format!("weights from {repo} unavailable ({e}); fell back to the bundled ones");
            eprintln!("note: {note}");
            (dir, format!("{bundled} ({note})"))
        }
    }
}

/// Runs the reproduction and prints where the artifacts are.
pub fn reproduce(args: &ReproduceArgs) -> Result<()> {
    let device = Device::Cpu;
    let base = if args.quick {
        ExperimentConfig::quick()
    } else if args.paper {
        ExperimentConfig::paper()
    } else {
        ExperimentConfig::standard()
    };
    let config = match &args.config {
        Some(path) => ExperimentConfig::from_toml_file(path, &base)?,
        None => base,
    };
    let (splits, data) = described_data(&args.inputs, args.quick)?;
    config.validate_for_test_split(splits.test.len())?;
    let (weights_dir, mut weights) = resolve_weights(&args.inputs, &device);
    let weights_dir = if args.train {
        let dir = args.out.join("weights");
        let mut bars = ProgressBars::default();
        let (tr, te) = (&splits.train, &splits.test);
        let c = TrainConfig::classifier(args.epochs, config.seed);
        train_classifier::<GapCnn>(
            tr,
            te,
            &c,
            &dir.join(WEIGHT_FILES[0]),
            true,
            &device,
            &mut bars,
        )?;
        train_classifier::<Mlp>(
            tr,
            te,
            &c,
            &dir.join(WEIGHT_FILES[1]),
            true,
            &device,
            &mut bars,
        )?;
        train_classifier::<Oracle>(
            tr,
            te,
            &c,
            &dir.join(WEIGHT_FILES[2]),
            true,
            &device,
            &mut bars,
        )?;
        let robust = TrainConfig {
            adversarial: Some(models::adversarial::AdversarialTraining::mnist()),
            ..c.clone()
        };
        train_classifier::<Oracle>(
            tr,
            te,
            &robust,
            &dir.join(WEIGHT_FILES[4]),
            true,
            &device,
            &mut bars,
        )?;
        let s = TrainConfig::svae(args.epochs, config.seed);
        train_svae(
            tr,
            te,
            &s,
            1,
            &dir.join(WEIGHT_FILES[3]),
            true,
            &device,
            &mut bars,
        )?;
        weights = format!(
            "trained by this run ({} epochs) into {}",
            args.epochs,
            dir.display()
        );
        dir
    } else {
        weights_dir
    };
    eprintln!("weights: {weights}");
    let (models, provenance) = load_inputs(&weights_dir, weights, data, &splits.test, &device)?;
    if let Some(shard) = args.shard {
        let m = run_shard(
            &models,
            &splits.train,
            &splits.test,
            &config,
            &provenance,
            shard,
            &args.out,
            &device,
            &mut Bar::new().with_start_lines(),
        )?;
        println!(
            "shard {} finished in {:.1} s: units of {} in {}; merge every shard with \
             `cargo xtask merge OUT DIR...`",
            m.shard,
            m.seconds,
            m.stages.join(", "),
            args.out.display()
        );
        return Ok(());
    }
    let evaluation = run_evaluation(
        &models,
        &splits.train,
        &splits.test,
        &config,
        &provenance,
        &args.out,
        &device,
        // A line per stage, which a terminal keeps when its bar is cleared.
        &mut Bar::new().with_start_lines(),
    )?;
    print_evaluation(&evaluation, &args.out);
    Ok(())
}

/// The models of `weights_dir` and the provenance of a run on them and `test`.
fn load_inputs(
    weights_dir: &Path,
    weights: String,
    data: String,
    test: &mnist_data::Dataset,
    device: &Device,
) -> Result<(harness::Models, Provenance)> {
    let models = load_models(weights_dir, device)?;
    // The files just loaded and the test set evaluated: stages cached in `--out` under
    // other weights or data are recomputed.
    let inputs = InputFingerprint::of_weights_dir(weights_dir, test)?;
    eprintln!("inputs: {} (sha256 {})", inputs.short(), inputs.sha256());
    // Every cache in `--out` is keyed by this build too.
    let program = harness::ProgramIdentity::running();
    eprintln!("program: {program} (sha256 of this executable; stages cached by another build are recomputed)");
    Ok((
        models,
        Provenance {
            data,
            weights,
            inputs,
        },
    ))
}

/// `cargo xtask merge OUT DIR...`: the shards assembled into OUT.
pub fn merge(args: &MergeArgs) -> Result<()> {
    let device = Device::Cpu;
    // The shards' own check first: it needs no data.
    let (_, manifest) = harness::check_shards(&args.shards)?;
    // As `reproduce` resolved them: the quick profile never tries the Hub.
    let quick = manifest.config.profile == "quick";
    let (splits, data) = described_data(&args.inputs, quick)?;
    let (weights_dir, weights) = resolve_weights(&args.inputs, &device);
    eprintln!("weights: {weights}");
    let (models, provenance) = load_inputs(&weights_dir, weights, data, &splits.test, &device)?;
    let evaluation = merge_shards(
        &models,
        &splits.train,
        &splits.test,
        &provenance,
        &args.shards,
        &args.out,
        &device,
        &mut Bar::new().with_start_lines(),
    )?;
    print_evaluation(&evaluation, &args.out);
    Ok(())
}

/// The headline tables of a finished evaluation, and where its artifacts are.
fn print_evaluation(evaluation: &harness::Evaluation, out: &Path) {
    let r = &evaluation.roc;
    println!(
        "ROC class {} over {} images ({} positives): clean AUC {:.4} (TPR {:.3}, FPR {:.3}); Type II AUC {:.4} (TPR {:.3}); \
         Type I AUC {:.4} (FPR {:.3}; {} Type I negatives, FPR {:.3} on them alone)",
        r.positive_class, r.clean.positives + r.clean.negatives, r.clean.positives, r.clean.auc, r.clean.tpr, r.clean.fpr,
        r.type2.auc, r.type2.tpr, r.type1.auc, r.type1.fpr, r.type1_examples, r.type1_set_fpr
    );
    println!(
        "Type I (paper): {} pairs, success {:.1} %; constrained: consensus {}",
        evaluation.type1.pairs,
        100.0 * evaluation.type1.success_rate,
        evaluation.type1.constrained.consensus
    );
    println!("| CAM change (Spearman) | n | over successes | noise control |");
    println!("| --- | --- | --- | --- |");
    for t in &evaluation.type2 {
        println!(
            "| {} | {} | {:.3} | {:.3} |",
            t.attack,
            t.cam.successes.n(),
            t.cam.successes.spearman,
            t.cam.noise.spearman
        );
    }
    let c = &evaluation.type1.cam;
    println!(
        "| Type I vs x | {} | {:.3} | {:.3} |",
        c.vs_x.n(),
        c.vs_x.spearman,
        c.noise_x.spearman
    );
    println!(
        "| Type I vs G(mu(x)) | {} | {:.3} | {:.3} |",
        c.vs_reconstruction.n(),
        c.vs_reconstruction.spearman,
        c.noise_reconstruction.spearman
    );
    let league = &evaluation.league.table;
    println!(
        "| explanation | Type I AUROC (n) | Type II AUROC, mean of {} | Max-Sensitivity (n) | deletion AUC | insertion AUC | mean rank |",
        harness::LEAGUE_ATTACKS.join(", ")
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in &league.verdict.ranking {
        let m = &league.methods[&r.method];
        println!(
            "| {} | {:.3} ({}) | {:.3} | {:.3} ({}) | {:.3} | {:.3} | {:.2} |",
            r.method,
            r.type1_auroc,
            m.type1.detection.attacked,
            r.type2_auroc,
            r.max_sensitivity,
            m.max_sensitivity.n,
            m.deletion_auc.mean,
            m.insertion_auc.mean,
            r.mean_rank
        );
    }
    if let Some(best) = &league.verdict.most_robust {
        println!("most robust explanation (the study's sense): {best}");
    }
    println!(
        "artifacts in {} (report.md, report.html, summary.json)",
        out.display()
    );
}
