//! `cargo xtask type1`: the Type I attack (or, with `--transition`, the class
//! transition alone) on the first `n` test images towards each of the 9 other classes,
//! with a table of success, oracle agreement and distances.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use harness::type1_panel::{
    judge_accuracy, run_mode, success_grid, JudgeAccuracy, ModeSummary, PanelInputs, Type1Pairs,
};
use mnist_data::PixelFormat;
use models::{load_model, Classifier, GapCnn, Knn, Mlp, Oracle, Svae};
use serde::Serialize;
use vae_attack::{
    class_transition, ClassMeans, Judges, LatentAttackConfig, LatentOutcome, Start, Stop,
};

use crate::attack::print_rows;
use crate::data::SourceArgs;
use crate::progress::Progress;
use crate::train::ModelKind;

/// Which Type I attack.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The paper's objective (adaptive k capped at 1e-3), run twice: stopped by the
    /// standard oracle (the study's reproduction) and judge-free.
    Paper,
    /// f1 held as a constraint (ALGORITHMS.md section 9), judge-free; the paper's mode
    /// runs on the same pairs beside it unless `--skip-paper`.
    Constrained,
}

/// Where the constrained attack starts.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartKind {
    /// z0 = mu(x), as in the paper.
    Mu,
    /// Half-way from mu(x) to the target's mean code over the training images.
    TargetMean,
}

/// Flags of `cargo xtask type1`.
#[derive(Args, Debug)]
pub struct Type1Args {
    /// Attack the first N test images, each (if f1 classifies it correctly) towards the
    /// 9 classes other than its label.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Which attack.
    #[arg(long, value_enum, default_value = "constrained")]
    pub mode: Mode,
    /// Start of the constrained attack (the paper's mode always starts at mu(x)).
    #[arg(long, value_enum, default_value = "target-mean")]
    pub start: StartKind,
    /// The constrained attack's logit margin kappa (default 0.5, `Constraint::default`).
    #[arg(long)]
    pub kappa: Option<f64>,
    /// How far the target-mean start lies towards the target's mean code (default 0.5).
    #[arg(long)]
    pub fraction: Option<f64>,
    /// The judge-free stop: f2's probability of the target (default 0.99).
    #[arg(long)]
    pub stop_prob: Option<f64>,
    /// With `--mode constrained`: do not run the paper's mode beside it.
    #[arg(long)]
    pub skip_paper: bool,
    /// Write the numbers as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The success grid (PNG) of the first mode's examples.
    #[arg(long, default_value = "type1_grid.png")]
    pub grid: PathBuf,
    /// The attacked classifier f1 (gapcnn or mlp).
    #[arg(long, value_enum, default_value = "gapcnn")]
    pub f1: ModelKind,
    /// Directory with gapcnn/mlp/oracle/svae.safetensors.
    #[arg(long, default_value = "fixtures/weights")]
    pub weights_dir: PathBuf,
    /// Data (the test split is attacked).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Iterations per pair at most (default 1,000; the transition: 500).
    #[arg(long)]
    pub iters: Option<usize>,
    /// The class transition alone (no f1 term): success is the latent classifier f2
    /// saying the target.
    #[arg(long)]
    pub transition: bool,
    /// (image, target) pairs per batch.
    #[arg(long, default_value_t = 90)]
    pub batch_size: usize,
}

/// Totals over batches.
#[derive(Default)]
struct Tally {
    pairs: usize,
    successes: usize,
    f1_kept: usize,
    oracle_says_target: usize,
    f2_says_target: usize,
    l2: f64,
    linf: f64,
    iterations: usize,
    per_target: [(usize, usize); 10],
}

impl Tally {
    fn add(&mut self, o: &LatentOutcome, keep: &[u32], targets: &[u32], oracle: &[u32]) {
        for (i, &t) in targets.iter().enumerate() {
            self.pairs += 1;
            self.iterations += o.iterations[i];
            self.per_target[t as usize].1 += 1;
            self.oracle_says_target += usize::from(oracle[i] == t);
            self.f2_says_target += usize::from(o.f2_pred[i] == t);
            if let Some(&p) = o.f1_pred.get(i) {
                self.f1_kept += usize::from(p == keep[i]);
            }
            if o.success[i] {
                self.successes += 1;
                self.per_target[t as usize].0 += 1;
                self.l2 += f64::from(o.l2[i]);
                self.linf += f64::from(o.linf[i]);
            }
        }
    }
}

fn f1_model(args: &Type1Args, device: &Device) -> Result<Box<dyn Classifier>> {
    let load = |file: &str| args.weights_dir.join(file);
    Ok(match args.f1 {
        ModelKind::Gapcnn => {
            let p = load("gapcnn.safetensors");
            Box::new(
                load_model::<GapCnn>(&p, DType::F32, device)
                    .with_context(|| format!("loading {}", p.display()))?,
            )
        }
        ModelKind::Mlp => {
            let p = load("mlp.safetensors");
            Box::new(
                load_model::<Mlp>(&p, DType::F32, device)
                    .with_context(|| format!("loading {}", p.display()))?,
            )
        }
        other => bail!("--f1 must be gapcnn or mlp, not {other:?}"),
    })
}

/// What `--json` writes.
#[derive(Serialize)]
struct Type1Json {
    data: String,
    f1: String,
    images: usize,
    images_left_out: usize,
    max_iterations: usize,
    judges: Vec<JudgeAccuracy>,
    modes: Vec<ModeSummary>,
}

/// Runs the requested modes over the same pairs, then prints one table per mode.
pub fn type1(args: &Type1Args) -> Result<()> {
    if args.n == 0 || args.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    if args.transition {
        return transition(args);
    }
    let device = Device::Cpu;
    let f1 = f1_model(args, &device)?;
    let load_oracle = |file: &str| {
        let p = args.weights_dir.join(file);
        load_model::<Oracle>(&p, DType::F32, &device)
            .with_context(|| format!("loading {}", p.display()))
    };
    let standard = load_oracle("oracle.safetensors")?;
    let robust = load_oracle("robust-oracle.safetensors")?;
    let svae_path = args.weights_dir.join("svae.safetensors");
    let svae = load_model::<Svae>(&svae_path, DType::F32, &device)
        .with_context(|| format!("loading {}", svae_path.display()))?;
    let splits = args.source.source().load()?;
    let t_setup = Instant::now();
    let knn = Knn::new(&splits.train, 3, &device)?;
    let means = ClassMeans::from_training(&svae, &splits.train, &device)?;
    let judges = Judges {
        standard: &standard,
        robust: &robust,
        knn: &knn,
    };
    let inputs = PanelInputs {
        f1: f1.as_ref(),
        svae: &svae,
        means: &means,
        judges,
    };
    let n = args.n.min(splits.test.len());
    let indices: Vec<usize> = (0..n).collect();
    let pairs = Type1Pairs::from_f1(f1.as_ref(), &splits.test, &indices, &device)?;
    let accuracy_images = splits.test.first(splits.test.len().min(1000));
    let judges_accuracy = judge_accuracy(&judges, &svae, &accuracy_images, &device)?;
    let iters = args.iters.unwrap_or(1000);
    println!(
        "Type I on {} ({} test images, {} left out as misclassified by f1 = {:?}; {} pairs), \
         at most {iters} iterations; judges and class means from {} training images ({:.1} s)",
        splits.origin,
        n,
        pairs.left_out,
        args.f1,
        pairs.len(),
        splits.train.len(),
        t_setup.elapsed().as_secs_f64()
    );
    print_judges(&judges_accuracy);

    let paper = LatentAttackConfig {
        max_iters: iters,
        record_every: 0,
        frame_every: 0,
        ..LatentAttackConfig::type_one()
    };
    let stop_prob = args.stop_prob.unwrap_or(0.99);
    let paper_judge_free = LatentAttackConfig {
        stop: Stop::Confident {
            f2_prob: stop_prob,
            margin: 0.0,
        },
        ..paper.clone()
    };
    let mut modes: Vec<(String, LatentAttackConfig)> = Vec::new();
    if args.mode == Mode::Constrained {
        let defaults = LatentAttackConfig::constrained();
        let start = match (args.start, defaults.start) {
            (StartKind::Mu, _) => Start::Mu,
            (StartKind::TargetMean, Start::TowardsTarget { fraction }) => Start::TowardsTarget {
                fraction: args.fraction.unwrap_or(fraction),
            },
            (StartKind::TargetMean, other) => other,
        };
        let mut constraint = vae_attack::Constraint::default();
        if let Some(kappa) = args.kappa {
            constraint.kappa = kappa;
        }
        let stop = Stop::Confident {
            f2_prob: stop_prob,
            margin: constraint.kappa,
        };
        let config = LatentAttackConfig {
            max_iters: iters,
            start,
            objective: vae_attack::Objective::Constrained(constraint),
            stop,
            record_every: 0,
            frame_every: 0,
            ..defaults
        };
        let name = format!(
            "constrained (kappa {}), start {}, judge-free (f2 >= {stop_prob}, margin >= kappa)",
            constraint.kappa,
            match start {
                Start::Mu => "mu(x)".to_string(),
                Start::TowardsTarget { fraction } =>
                    format!("{fraction} of the way to the target mean"),
            }
        );
        modes.push((name, config));
    }
    if args.mode == Mode::Paper || !args.skip_paper {
        modes.push(("paper, stopped by the standard oracle".into(), paper));
        modes.push((
            format!("paper, judge-free (f2 >= {stop_prob}, margin >= 0)"),
            paper_judge_free,
        ));
    }
    let mut summaries = Vec::new();
    for (k, (name, config)) in modes.iter().enumerate() {
        let mut bar = Progress::new("type1", pairs.len() as u64, "pairs");
        let run = run_mode(
            &inputs,
            &splits.test,
            &pairs,
            config,
            args.batch_size,
            &device,
            &mut |done| bar.inc(done as u64),
        )?;
        bar.finish();
        let summary = ModeSummary::new(name, &run);
        print_mode(&summary);
        if k == 0 {
            success_grid(&run, &splits.test, f1.as_ref(), 36, &args.grid, &device)?;
            println!("grid of examples: {}", args.grid.display());
        }
        summaries.push(summary);
        // Written after every mode, so an interrupted run keeps the modes it finished.
        if let Some(path) = &args.json {
            let json = Type1Json {
                data: splits.origin.to_string(),
                f1: format!("{:?}", args.f1).to_lowercase(),
                images: n,
                images_left_out: pairs.left_out,
                max_iterations: iters,
                judges: judges_accuracy.clone(),
                modes: summaries.clone(),
            };
            harness::artifact::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    if let Some(path) = &args.json {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn print_judges(judges: &[JudgeAccuracy]) {
    println!("| judge | accuracy, clean test images | accuracy, decoded G(mu(x)) |");
    println!("| --- | --- | --- |");
    for j in judges {
        println!("| {} | {} | {} |", j.judge, j.clean, j.decoded);
    }
}

fn print_mode(s: &ModeSummary) {
    let fmt = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{v:.4}")
        }
    };
    println!("\n{}", s.mode);
    let by_target: Vec<String> = s
        .consensus_by_target
        .iter()
        .enumerate()
        .map(|(t, r)| format!("{t}: {}/{}", r.count, r.of))
        .collect();
    print_rows(&[
        ("pairs", s.pairs.to_string()),
        (
            "success (f1 keeps, standard oracle says t)",
            s.success.to_string(),
        ),
        (
            "success (f1 keeps, robust oracle says t)",
            s.success_robust.to_string(),
        ),
        ("success (f1 keeps, kNN says t)", s.success_knn.to_string()),
        (
            "consensus (f1 keeps, both oracles say t)",
            s.consensus.to_string(),
        ),
        ("f1 keeps its label", s.f1_kept.to_string()),
        ("median stop iteration", fmt(s.median_iterations)),
        ("mean L2 x to G(z*) (consensus)", fmt(s.mean_l2)),
        ("mean Linf x to G(z*) (consensus)", fmt(s.mean_linf)),
        ("consensus by target", by_target.join(", ")),
        (
            "pair-iterations per second",
            format!("{:.0}", s.pair_iterations_per_second),
        ),
    ]);
}

/// The class transition alone (no f1): success is f2 saying the target.
fn transition(args: &Type1Args) -> Result<()> {
    let device = Device::Cpu;
    let svae_path = args.weights_dir.join("svae.safetensors");
    let svae = load_model::<Svae>(&svae_path, DType::F32, &device)
        .with_context(|| format!("loading {}", svae_path.display()))?;
    let oracle_path = args.weights_dir.join("oracle.safetensors");
    let oracle = load_model::<Oracle>(&oracle_path, DType::F32, &device)
        .with_context(|| format!("loading {}", oracle_path.display()))?;
    let mut config = LatentAttackConfig {
        stop: Stop::Oracle,
        ..LatentAttackConfig::transition()
    };
    if let Some(iters) = args.iters {
        config.max_iters = iters;
    }
    config.frame_every = 0;
    let splits = args.source.source().load()?;
    let test = splits.test.first(args.n);
    let (images, _) = test.to_tensors(PixelFormat::Gray, &device)?;
    let labels: Vec<u32> = test.labels().iter().map(|&l| u32::from(l)).collect();
    let pairs: Vec<(usize, u32)> = (0..test.len())
        .flat_map(|i| {
            let label = labels[i];
            (0..10u32).filter(move |&t| t != label).map(move |t| (i, t))
        })
        .collect();
    println!(
        "class transition (f2 only): {} images x 9 targets of {}, {} iterations, weights {}",
        test.len(),
        splits.origin,
        config.max_iters,
        args.weights_dir.display()
    );
    let mut bar = Progress::new("type1", pairs.len() as u64, "pairs");
    let start = Instant::now();
    let mut tally = Tally::default();
    for chunk in pairs.chunks(args.batch_size) {
        let rows: Vec<u32> = chunk.iter().map(|&(i, _)| i as u32).collect();
        let x = images.index_select(&Tensor::new(rows.as_slice(), &device)?, 0)?;
        let targets: Vec<u32> = chunk.iter().map(|&(_, t)| t).collect();
        let keep: Vec<u32> = chunk.iter().map(|&(i, _)| labels[i]).collect();
        let outcome = class_transition(&svae, None, &x, &targets, &config)?;
        let oracle_pred = oracle.predict(&outcome.images)?;
        tally.add(&outcome, &keep, &targets, &oracle_pred);
        bar.set_message(format!(
            "success {:.1}%",
            100.0 * tally.successes as f64 / tally.pairs.max(1) as f64
        ));
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    print_table(&tally, true, start.elapsed().as_secs_f64());
    Ok(())
}

fn print_table(t: &Tally, transition: bool, seconds: f64) {
    let pct =
        |a: usize, b: usize| format!("{:.2}% ({a} of {b})", 100.0 * a as f64 / b.max(1) as f64);
    let mean = |s: f64| {
        if t.successes == 0 {
            "-".to_string()
        } else {
            format!("{:.4}", s / t.successes as f64)
        }
    };
    let success = if transition {
        "success (f2 says t)"
    } else {
        "success (f1 keeps, oracle says t)"
    };
    let mut rows = vec![
        ("pairs", t.pairs.to_string()),
        (success, pct(t.successes, t.pairs)),
        ("oracle says t", pct(t.oracle_says_target, t.pairs)),
        ("f2 says t", pct(t.f2_says_target, t.pairs)),
    ];
    if !transition {
        rows.push(("f1 keeps its label", pct(t.f1_kept, t.pairs)));
    }
    rows.extend([
        ("mean L2 x to G(z*) (successes)", mean(t.l2)),
        ("mean Linf x to G(z*) (successes)", mean(t.linf)),
        (
            "iterations per pair",
            format!("{:.1}", t.iterations as f64 / t.pairs.max(1) as f64),
        ),
        (
            "time",
            format!(
                "{seconds:.1} s ({:.1} pair-iterations/s)",
                t.iterations as f64 / seconds.max(1e-9)
            ),
        ),
    ]);
    let per_target: Vec<String> = t
        .per_target
        .iter()
        .enumerate()
        .map(|(c, &(s, n))| format!("{c}: {s}/{n}"))
        .collect();
    rows.push(("success by target", per_target.join(", ")));
    print_rows(&rows);
}
