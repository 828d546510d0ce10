//! `cargo xtask attack`: one Type II attack over the first `n` test images, with a
//! table of success rate, robust accuracy and mean norms.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use attacks::{
    Attack, AttackOutcome, CarliniWagnerL2, DeepFool, Fgsm, PgdConfig, PgdL2, PgdLinf, Targeting,
};
use candle_core::{DType, Device};
use clap::{Args, ValueEnum};
use mnist_data::BatchOptions;
use models::{load_model, Classifier, GapCnn, Mlp, Oracle};

use crate::data::SourceArgs;
use crate::progress::Progress;
use crate::train::ModelKind;

/// The attacks of the `attacks` crate.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackKind {
    /// One signed gradient step (Linf).
    Fgsm,
    /// PGD in the Linf ball (Madry's MNIST settings by default).
    PgdLinf,
    /// PGD in the L2 ball.
    PgdL2,
    /// Carlini-Wagner L2 with the binary search over c.
    CwL2,
    /// DeepFool (L2, untargeted).
    Deepfool,
}

/// Flags of `cargo xtask attack`.
#[derive(Args, Debug)]
pub struct AttackArgs {
    /// Which attack.
    #[arg(long, value_enum)]
    pub attack: AttackKind,
    /// Radius (FGSM, PGD; default 0.3 for Linf, 2.0 for L2).
    #[arg(long)]
    pub eps: Option<f64>,
    /// Attack N test images (the first N after `--skip`).
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Skip this many test images first (to split a long run into parts).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Also write one CSV row per image (test index, label, predictions, success,
    /// norms, gradients), rewritten after every batch so an interrupted run keeps
    /// what it finished.
    #[arg(long)]
    pub per_image: Option<PathBuf>,
    /// Which classifier the weights are for.
    #[arg(long, value_enum, default_value = "gapcnn")]
    pub model: ModelKind,
    /// Checkpoint (safetensors).
    #[arg(long, default_value = "fixtures/weights/gapcnn.safetensors")]
    pub weights: PathBuf,
    /// Data (the test split is attacked).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Steps: PGD steps (default 40), CW Adam steps per round (default 1000, the
    /// paper's 10 000 is out of reach on a CPU; with 100 most background pixels, which
    /// start saturated at w = atanh(-1), cannot move), DeepFool's step limit (default 50).
    #[arg(long)]
    pub steps: Option<usize>,
    /// PGD step size (default: 0.01 for Linf, 2.5 eps / steps for L2).
    #[arg(long)]
    pub step_size: Option<f64>,
    /// PGD random starts.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// CW rounds of the binary search over c.
    #[arg(long, default_value_t = 9)]
    pub binary_search_steps: usize,
    /// CW confidence kappa.
    #[arg(long, default_value_t = 0.0)]
    pub kappa: f64,
    /// Targeted at the next class, (label + 1) mod 10, instead of untargeted.
    #[arg(long)]
    pub targeted: bool,
    /// Seed of the random starts: the batch starting at test image i uses seed +
    /// i / batch-size, so a run split with `--skip` (a multiple of the batch size)
    /// draws what the whole run draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
}

fn build(args: &AttackArgs, batch: u64) -> Box<dyn Attack> {
    let linf_eps = args.eps.unwrap_or(0.3);
    let pgd = |eps: f64, default_step: f64| PgdConfig {
        eps,
        step_size: args.step_size.unwrap_or(default_step),
        steps: args.steps.unwrap_or(40),
        random_start: true,
        restarts: args.restarts,
        seed: args.seed.wrapping_add(batch),
    };
    match args.attack {
        AttackKind::Fgsm => Box::new(Fgsm { eps: linf_eps }),
        AttackKind::PgdLinf => Box::new(PgdLinf(pgd(linf_eps, 0.01))),
        AttackKind::PgdL2 => {
            let eps = args.eps.unwrap_or(2.0);
            let steps = args.steps.unwrap_or(40).max(1) as f64;
            Box::new(PgdL2(pgd(eps, 2.5 * eps / steps)))
        }
        AttackKind::CwL2 => Box::new(CarliniWagnerL2 {
            steps: args.steps.unwrap_or(1000),
            binary_search_steps: args.binary_search_steps,
            kappa: args.kappa,
            ..Default::default()
        }),
        AttackKind::Deepfool => Box::new(DeepFool {
            max_steps: args.steps.unwrap_or(50),
            ..Default::default()
        }),
    }
}

/// Totals over batches.
#[derive(Default)]
struct Tally {
    n: usize,
    clean_right: usize,
    robust_right: usize,
    attackable: usize,
    successes: usize,
    l0: f64,
    l2: f64,
    linf: f64,
    gradients: usize,
    masked: usize,
}

impl Tally {
    fn add(&mut self, o: &AttackOutcome) {
        self.n += o.len();
        self.clean_right += (0..o.len())
            .filter(|&i| o.clean_predictions[i] == o.labels[i])
            .count();
        self.robust_right += (0..o.len())
            .filter(|&i| o.adversarial_predictions[i] == o.labels[i])
            .count();
        self.attackable += o.attackable();
        self.successes += o.successes();
        for i in (0..o.len()).filter(|&i| o.success[i]) {
            self.l0 += o.l0[i] as f64;
            self.l2 += o.l2[i];
            self.linf += o.linf[i];
        }
        self.gradients += o.total_gradient_evaluations();
        self.masked += o.degenerate_gradient.iter().filter(|&&d| d).count();
    }
}

fn classifier(args: &AttackArgs, device: &Device) -> Result<Box<dyn Classifier>> {
    let w = &args.weights;
    let context = || format!("loading {}", w.display());
    Ok(match args.model {
        ModelKind::Gapcnn => {
            Box::new(load_model::<GapCnn>(w, DType::F32, device).with_context(context)?)
        }
        ModelKind::Mlp => Box::new(load_model::<Mlp>(w, DType::F32, device).with_context(context)?),
        ModelKind::Oracle | ModelKind::RobustOracle => {
            Box::new(load_model::<Oracle>(w, DType::F32, device).with_context(context)?)
        }
        ModelKind::Svae => {
            bail!("the SVAE is not a classifier of images; attack gapcnn, mlp or oracle")
        }
    })
}

/// Runs the attack batch by batch under a progress bar, then prints the table.
pub fn attack(args: &AttackArgs) -> Result<()> {
    if args.n == 0 || args.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    let device = Device::Cpu;
    let model = classifier(args, &device)?;
    let splits = args.source.source().load()?;
    let available = splits.test.len();
    if args.skip >= available {
        bail!(
            "--skip {} leaves no test images ({} in {})",
            args.skip,
            available,
            splits.origin
        );
    }
    let indices: Vec<usize> = (args.skip..available.min(args.skip + args.n)).collect();
    let test = splits.test.select(&indices)?;
    let options = BatchOptions {
        batch_size: args.batch_size,
        ..Default::default()
    };
    let batches = test.len().div_ceil(args.batch_size);
    let name = build(args, 0).name();
    println!(
        "{name} on {} test images ({}..{}) of {} ({})",
        test.len(),
        indices[0],
        indices[indices.len() - 1] + 1,
        splits.origin,
        args.weights.display()
    );
    let mut bar = Progress::new(name, batches as u64, "batches");
    let start = Instant::now();
    let mut tally = Tally::default();
    let mut csv = String::from(CSV_HEADER);
    for (b, batch) in test.batches(&options, &device).enumerate() {
        let batch = batch?;
        let labels: Vec<u32> = batch.labels.to_vec1()?;
        let targeting = if args.targeted {
            Targeting::Targeted(labels.iter().map(|&l| (l + 1) % 10).collect())
        } else {
            Targeting::Untargeted
        };
        let first = args.skip + b * args.batch_size;
        let outcome = build(args, (first / args.batch_size) as u64)
            .run(model.as_ref(), &batch.images, &labels, &targeting)
            .with_context(|| format!("batch {b}"))?;
        tally.add(&outcome);
        if let Some(path) = &args.per_image {
            append_rows(&mut csv, first, &outcome);
            harness::artifact::write_atomic(path, csv.as_bytes())?;
        }
        bar.set_message(format!(
            "success {:.1}%",
            100.0 * tally.successes as f64 / tally.attackable.max(1) as f64
        ));
        bar.inc(1);
    }
    bar.finish();
    print_table(&tally, start.elapsed().as_secs_f64());
    Ok(())
}

/// Columns of `--per-image`.
const CSV_HEADER: &str = "index,label,target,clean_prediction,adversarial_prediction,success,l0,l2,linf,gradients,degenerate_gradient\n";

/// One CSV row per example of `o`, the first being test image `first`.
fn append_rows(csv: &mut String, first: usize, o: &AttackOutcome) {
    use std::fmt::Write;
    for i in 0..o.len() {
        let target = o
            .targets
            .as_ref()
            .map_or(String::new(), |t| t[i].to_string());
        // Writing to a String cannot fail.
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{}",
            first + i,
            o.labels[i],
            target,
            o.clean_predictions[i],
            o.adversarial_predictions[i],
            o.success[i],
            o.l0[i],
            o.l2[i],
            o.linf[i],
            o.gradient_evaluations[i],
            o.degenerate_gradient[i]
        );
    }
}

fn print_table(t: &Tally, seconds: f64) {
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    let mean = |s: f64| {
        if t.successes == 0 {
            f64::NAN
        } else {
            s / t.successes as f64
        }
    };
    let rows = [
        ("images", format!("{}", t.n)),
        ("clean accuracy", format!("{:.2}%", pct(t.clean_right, t.n))),
        (
            "robust accuracy",
            format!("{:.2}%", pct(t.robust_right, t.n)),
        ),
        (
            "success rate",
            format!(
                "{:.2}% ({} of {} attackable)",
                pct(t.successes, t.attackable),
                t.successes,
                t.attackable
            ),
        ),
        ("mean L0 (successes)", format!("{:.1}", mean(t.l0))),
        ("mean L2 (successes)", format!("{:.4}", mean(t.l2))),
        ("mean Linf (successes)", format!("{:.4}", mean(t.linf))),
        (
            "gradients per image",
            format!("{:.1}", t.gradients as f64 / t.n.max(1) as f64),
        ),
        ("degenerate gradients", format!("{} images", t.masked)),
        (
            "time",
            format!(
                "{seconds:.1} s ({:.1} images/s)",
                t.n as f64 / seconds.max(1e-9)
            ),
        ),
    ];
    print_rows(&rows);
}

/// Prints `(metric, value)` rows as a markdown table.
pub fn print_rows(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("| {:<width$} | value |", "metric");
    println!("| {:-<width$} | ----- |", "");
    for (k, v) in rows {
        println!("| {k:<width$} | {v} |");
    }
}
