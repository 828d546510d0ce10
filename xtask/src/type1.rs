//! `cargo xtask type1`: the Type I attack (or, with `--transition`, the class
//! transition alone) on the first `n` test images towards each of the 9 other classes,
//! with a table of success, oracle agreement and distances.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use mnist_data::PixelFormat;
use models::{load_model, Classifier, GapCnn, Mlp, Oracle, Svae};
use vae_attack::{class_transition, type_one_attack, LatentAttackConfig, LatentOutcome};

use crate::attack::print_rows;
use crate::data::SourceArgs;
use crate::progress::Progress;
use crate::train::ModelKind;

/// Flags of `cargo xtask type1`.
#[derive(Args, Debug)]
pub struct Type1Args {
    /// Attack the first N test images, each towards the 9 classes other than its label.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// The attacked classifier f1 (gapcnn or mlp).
    #[arg(long, value_enum, default_value = "gapcnn")]
    pub f1: ModelKind,
    /// Directory with gapcnn/mlp/oracle/svae.safetensors.
    #[arg(long, default_value = "fixtures/weights")]
    pub weights_dir: PathBuf,
    /// Data (the test split is attacked).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Iterations per pair (default: 500, LatentAttackConfig::type_one).
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

/// Runs the pairs batch by batch under a progress bar, then prints the table.
pub fn type1(args: &Type1Args) -> Result<()> {
    if args.n == 0 || args.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    let device = Device::Cpu;
    let f1 = f1_model(args, &device)?;
    let oracle_path = args.weights_dir.join("oracle.safetensors");
    let oracle = load_model::<Oracle>(&oracle_path, DType::F32, &device)
        .with_context(|| format!("loading {}", oracle_path.display()))?;
    let svae_path = args.weights_dir.join("svae.safetensors");
    let svae = load_model::<Svae>(&svae_path, DType::F32, &device)
        .with_context(|| format!("loading {}", svae_path.display()))?;
    let mut config = if args.transition {
        LatentAttackConfig::transition()
    } else {
        LatentAttackConfig::type_one()
    };
    if let Some(iters) = args.iters {
        config.max_iters = iters;
    }
    config.frame_every = 0;

    let splits = args.source.source().load()?;
    let test = splits.test.first(args.n);
    let (images, _) = test.to_tensors(PixelFormat::Gray, &device)?;
    let labels: Vec<u32> = test.labels().iter().map(|&l| u32::from(l)).collect();
    let f1_labels = f1.predict(&images)?;
    // Every image towards each class other than its label.
    let pairs: Vec<(usize, u32)> = (0..test.len())
        .flat_map(|i| {
            let label = labels[i];
            (0..10u32).filter(move |&t| t != label).map(move |t| (i, t))
        })
        .collect();
    let mode = if args.transition {
        "class transition (f2 only)"
    } else {
        "Type I"
    };
    println!(
        "{mode}: {} images x 9 targets of {}, {} iterations, weights {}",
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
        let keep: Vec<u32> = chunk.iter().map(|&(i, _)| f1_labels[i]).collect();
        let outcome = if args.transition {
            class_transition(&svae, None, &x, &targets, &config)?
        } else {
            type_one_attack(
                &svae,
                f1.as_ref(),
                &oracle,
                &x,
                &keep,
                &targets,
                None,
                &config,
            )?
        };
        let oracle_pred = oracle.predict(&outcome.images)?;
        tally.add(&outcome, &keep, &targets, &oracle_pred);
        bar.set_message(format!(
            "success {:.1}%",
            100.0 * tally.successes as f64 / tally.pairs.max(1) as f64
        ));
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    print_table(&tally, args.transition, start.elapsed().as_secs_f64());
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
