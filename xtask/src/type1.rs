//! `cargo xtask type1`: the Type I attack (or, with `--transition`, the class
//! transition alone) on the first `n` test images towards each of the 9 other classes,
//! with a table of success, oracle agreement and distances; with `--index`, one image's
//! transition strips (`crate::type1_strips`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use common::progress::{Bar, Progress};
use harness::{
    judge_accuracy, run_mode, success_grid, JudgeAccuracy, ModeSummary, PanelInputs, Type1Pairs,
};
use mnist_data::PixelFormat;
use models::{Classifier, Knn, Oracle, Svae};
use serde::Serialize;
use vae_attack::{
    class_transition, ClassMeans, Judges, LatentAttackConfig, LatentOutcome, Start, Stop,
};

use crate::load::{checkpoint, classifier, weights_file, ClassifierKind, ModelKind};
use crate::output::{fixed, print_rows, write_json};
use crate::type1_args::{Mode, StartKind, Type1Args};

/// Totals over batches.
#[derive(Default)]
struct Tally {
    pairs: usize,
    successes: usize,
    oracle_says_target: usize,
    f2_says_target: usize,
    l2: f64,
    linf: f64,
    iterations: usize,
    per_target: [(usize, usize); 10],
}

impl Tally {
    fn add(&mut self, o: &LatentOutcome, targets: &[u32], oracle: &[u32]) {
        for (i, &t) in targets.iter().enumerate() {
            self.pairs += 1;
            self.iterations += o.iterations[i];
            self.per_target[t as usize].1 += 1;
            self.oracle_says_target += usize::from(oracle[i] == t);
            self.f2_says_target += usize::from(o.f2_pred[i] == t);
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
    let f1 = match args.f1.as_classifier() {
        Some(kind @ (ClassifierKind::Gapcnn | ClassifierKind::Mlp)) => kind,
        _ => bail!("--f1 must be gapcnn or mlp, not {:?}", args.f1),
    };
    classifier(f1, &weights_file(&args.weights_dir, args.f1), device)
}

/// What `--json` writes.
#[derive(Serialize)]
struct Type1Json {
    data: String,
    f1: String,
    images: usize,
    images_left_out: usize,
    max_iterations: usize,
    /// The shard (`K/N`) the modes' numbers cover, if sharded.
    shard: Option<String>,
    judges: Vec<JudgeAccuracy>,
    modes: Vec<ModeSummary>,
}

/// The pairs of `shard`'s batches (batches of `batch` pairs, in order): whole batches,
/// so each is attacked exactly as in the whole run.
fn shard_pairs(pairs: &Type1Pairs, batch: usize, shard: harness::Shard) -> Type1Pairs {
    let mut mine = Type1Pairs {
        images: pairs.images,
        left_out: pairs.left_out,
        ..Type1Pairs::default()
    };
    for (b, start) in (0..pairs.len()).step_by(batch.max(1)).enumerate() {
        if !shard.owns("type1", b) {
            continue;
        }
        let end = (start + batch.max(1)).min(pairs.len());
        mine.index.extend_from_slice(&pairs.index[start..end]);
        mine.keep.extend_from_slice(&pairs.keep[start..end]);
        mine.target.extend_from_slice(&pairs.target[start..end]);
    }
    mine
}

/// Runs the requested modes over the same pairs, then prints one table per mode.
pub fn type1(args: &Type1Args) -> Result<()> {
    if let Some(index) = args.index {
        return crate::type1_strips::strips(args, index);
    }
    if args.n == 0 || args.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    if args.transition {
        return transition(args);
    }
    let device = Device::Cpu;
    let f1 = f1_model(args, &device)?;
    let dir = &args.weights_dir;
    let standard = checkpoint::<Oracle>(&weights_file(dir, ModelKind::Oracle), &device)?;
    let robust = checkpoint::<Oracle>(&weights_file(dir, ModelKind::RobustOracle), &device)?;
    let svae = checkpoint::<Svae>(&weights_file(dir, ModelKind::Svae), &device)?;
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
    let pairs = match args.shard {
        Some(s) => shard_pairs(&pairs, args.batch_size, s),
        None => pairs,
    };
    if let Some(s) = args.shard {
        println!("shard {s}: {} of the pairs", pairs.len());
    }
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
        if let Some(w) = args.image_weight {
            if !(w.is_finite() && w >= 0.0) {
                return Err(anyhow::anyhow!(
                    "--image-weight must be finite and >= 0, got {w}"
                ));
            }
            constraint.image_weight = w;
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
            "constrained (kappa {}{}), start {}, judge-free (f2 >= {stop_prob}, margin >= kappa)",
            constraint.kappa,
            if constraint.image_weight > 0.0 {
                format!(", image term {}", constraint.image_weight)
            } else {
                String::new()
            },
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
    // With --json, each mode's finished batches are kept beside it until the command
    // ends, so a killed run resumes where it stopped (keyed by everything they depend on,
    // this build of the program included).
    let fingerprint = harness::InputFingerprint::of_weights_dir(dir, &splits.test)?;
    let partial_path = |k: usize| {
        args.json
            .as_ref()
            .map(|json| PathBuf::from(format!("{}.mode{k}.partial.jsonl", json.display())))
    };
    let partial_for = |k: usize, name: &str, config: &LatentAttackConfig| {
        partial_path(k).map(|path| harness::Checkpoint {
            path,
            key: format!(
                "{name} | data {} | inputs {} | program {} | pairs {} | batch {} | {config:?}",
                splits.origin,
                fingerprint.sha256(),
                harness::ProgramIdentity::running().sha256(),
                pairs.digest(),
                args.batch_size
            ),
        })
    };
    let mut summaries = Vec::new();
    for (k, (name, config)) in modes.iter().enumerate() {
        let checkpoint = partial_for(k, name, config);
        if let Some(c) = &checkpoint {
            println!(
                "finished batches kept in {} (a killed run resumes from them)",
                c.path.display()
            );
        }
        let mut bar = Bar::started("type1", pairs.len() as u64, "pairs");
        let run = run_mode(
            &inputs,
            &splits.test,
            &pairs,
            config,
            args.batch_size,
            &device,
            checkpoint.as_ref(),
            &mut |done| bar.advance(done as u64),
        )?;
        bar.finish();
        let summary = ModeSummary::new(name, &run);
        print_mode(&summary);
        if let Some(dir) = &args.rows_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating --rows-dir {}", dir.display()))?;
            let path = dir.join(format!("mode{k}.csv"));
            harness::write_atomic(&path, harness::rows_csv(&run.rows).as_bytes())?;
            println!("per-pair rows: {}", path.display());
        }
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
                shard: args.shard.map(|s| s.to_string()),
                judges: judges_accuracy.clone(),
                modes: summaries.clone(),
            };
            write_json(Some(path), &json)?;
        }
    }
    for k in 0..modes.len() {
        if let Some(path) = partial_path(k) {
            let _ = std::fs::remove_file(path);
        }
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
    let svae = checkpoint::<Svae>(&weights_file(&args.weights_dir, ModelKind::Svae), &device)?;
    let oracle =
        checkpoint::<Oracle>(&weights_file(&args.weights_dir, ModelKind::Oracle), &device)?;
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
    let mut bar = Bar::started("type1", pairs.len() as u64, "pairs");
    let start = Instant::now();
    let mut tally = Tally::default();
    for chunk in pairs.chunks(args.batch_size) {
        let rows: Vec<u32> = chunk.iter().map(|&(i, _)| i as u32).collect();
        let x = images.index_select(&Tensor::new(rows.as_slice(), &device)?, 0)?;
        let targets: Vec<u32> = chunk.iter().map(|&(_, t)| t).collect();
        let outcome = class_transition(&svae, None, &x, &targets, &config)?;
        let oracle_pred = oracle.predict(&outcome.images)?;
        tally.add(&outcome, &targets, &oracle_pred);
        bar.set_message(&format!(
            "success {:.1}%",
            100.0 * tally.successes as f64 / tally.pairs.max(1) as f64
        ));
        bar.advance(chunk.len() as u64);
    }
    bar.finish();
    let summary = TransitionSummary::new(
        &tally,
        &splits.origin,
        test.len(),
        config.max_iters,
        start.elapsed().as_secs_f64(),
    );
    print_rows(&summary.rows());
    write_json(args.json.as_deref(), &summary)
}

/// What `cargo xtask type1 --transition` prints.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TransitionSummary {
    /// Where the test images came from.
    pub data: String,
    /// Images, each towards its 9 other classes.
    pub images: usize,
    /// Iterations at most per pair.
    pub max_iterations: usize,
    /// (image, target) pairs.
    pub pairs: usize,
    /// Pairs where f2 says the target (the run's own rule; no judge is asked).
    pub successes: usize,
    /// Pairs whose final image the oracle calls the target.
    pub oracle_says_target: usize,
    /// Pairs whose final code f2 calls the target.
    pub f2_says_target: usize,
    /// Mean ||G(z*) - x||_2 over successes (`null` without one).
    pub mean_l2: Option<f64>,
    /// Mean ||G(z*) - x||_inf over successes.
    pub mean_linf: Option<f64>,
    /// Iterations per pair.
    pub iterations_per_pair: f64,
    /// Per target class 0 to 9: (successes, pairs).
    pub by_target: Vec<(usize, usize)>,
    /// Wall time.
    pub seconds: f64,
}

impl TransitionSummary {
    fn new(t: &Tally, data: &str, images: usize, max_iterations: usize, seconds: f64) -> Self {
        let mean = |s: f64| (t.successes > 0).then(|| s / t.successes as f64);
        Self {
            data: data.to_string(),
            images,
            max_iterations,
            pairs: t.pairs,
            successes: t.successes,
            oracle_says_target: t.oracle_says_target,
            f2_says_target: t.f2_says_target,
            mean_l2: mean(t.l2),
            mean_linf: mean(t.linf),
            iterations_per_pair: t.iterations as f64 / t.pairs.max(1) as f64,
            by_target: t.per_target.to_vec(),
            seconds,
        }
    }

    /// The printed table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let pct =
            |a: usize, b: usize| format!("{:.2}% ({a} of {b})", 100.0 * a as f64 / b.max(1) as f64);
        let mean = |v: Option<f64>| fixed(v.unwrap_or(f64::NAN), 4);
        let per_target: Vec<String> = self
            .by_target
            .iter()
            .enumerate()
            .map(|(c, &(s, n))| format!("{c}: {s}/{n}"))
            .collect();
        vec![
            ("pairs", self.pairs.to_string()),
            ("success (f2 says t)", pct(self.successes, self.pairs)),
            ("oracle says t", pct(self.oracle_says_target, self.pairs)),
            ("f2 says t", pct(self.f2_says_target, self.pairs)),
            ("mean L2 x to G(z*) (successes)", mean(self.mean_l2)),
            ("mean Linf x to G(z*) (successes)", mean(self.mean_linf)),
            (
                "iterations per pair",
                format!("{:.1}", self.iterations_per_pair),
            ),
            (
                "time",
                format!(
                    "{:.1} s ({:.1} pair-iterations/s)",
                    self.seconds,
                    self.iterations_per_pair * self.pairs as f64 / self.seconds.max(1e-9)
                ),
            ),
            ("success by target", per_target.join(", ")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::parse;

    /// The constrained mode on 3 fixture images (27 pairs) in batches of 7, whole and as
    /// 2 shards: each pair runs in exactly one shard and the shards' rows together are
    /// the whole run's, byte for byte.
    #[test]
    fn shards_together_write_the_whole_runs_rows() {
        let dir = tempfile::tempdir().unwrap();
        let weights = format!("{}/../fixtures/weights", env!("CARGO_MANIFEST_DIR"));
        let run = |name: &str, shard: Option<&str>| -> Vec<String> {
            let rows = dir.path().join(name);
            let grid = dir.path().join(format!("{name}.png"));
            let (r, g) = (rows.to_str().unwrap(), grid.to_str().unwrap());
            let mut line = vec![
                "type1",
                "--n",
                "3",
                "--iters",
                "4",
                "--batch-size",
                "7",
                "--skip-paper",
                "--weights-dir",
                &weights,
                "--rows-dir",
                r,
                "--grid",
                g,
            ];
            if let Some(s) = shard {
                line.extend(["--shard", s]);
            }
            let crate::Command::Type1(args) = parse(&line) else {
                panic!("not type1")
            };
            super::type1(&args).unwrap();
            let text = std::fs::read_to_string(rows.join("mode0.csv")).unwrap();
            text.lines().skip(1).map(str::to_string).collect()
        };
        let whole = run("whole", None);
        assert!(whole.len() > 14, "at least 3 batches: {}", whole.len());
        let (a, b) = (run("s0", Some("0/2")), run("s1", Some("1/2")));
        assert!(!a.is_empty() && !b.is_empty());
        let key = |r: &String| {
            let f: Vec<usize> = r.split(',').take(3).map(|v| v.parse().unwrap()).collect();
            (f[0], f[2])
        };
        let mut together: Vec<String> = a.into_iter().chain(b).collect();
        together.sort_by_key(key);
        let mut expected = whole;
        expected.sort_by_key(key);
        assert_eq!(together, expected);
    }
}
