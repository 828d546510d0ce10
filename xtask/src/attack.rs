//! `cargo xtask attack`: one Type II attack over the first `n` test images, with a
//! table of success rate, robust accuracy and mean norms.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use attacks::{
    Attack, AttackOutcome, CarliniWagnerL2, DeepFool, Fgsm, PgdConfig, PgdL2, PgdLinf, Targeting,
};
use candle_core::Device;
use clap::{Args, ValueEnum};
use common::progress::{Bar, Progress};
use mnist_data::BatchOptions;
use serde::Serialize;

use crate::data::SourceArgs;
use crate::load::ClassifierKind;
use crate::output::{print_rows, write_json};

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
    pub model: ClassifierKind,
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
    /// Seed of the random starts: test image i's start draws from (seed, i) alone, so a
    /// run split with `--skip` or another `--batch-size` draws what the whole run draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Attack shard K of N only (K from 0): batch b of the run belongs to shard
    /// `harness::owner("attack", b, N)`; the table, `--json` and `--per-image` then cover
    /// this shard's images, and the shards' `--per-image` rows together are the whole
    /// run's, number for number (docs/SCALE.md).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<harness::Shard>,
    /// Also write the table's numbers as JSON here (rates as fractions, not percent).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn build(args: &AttackArgs) -> Box<dyn Attack> {
    let linf_eps = args.eps.unwrap_or(0.3);
    let pgd = |eps: f64, default_step: f64| PgdConfig {
        eps,
        step_size: args.step_size.unwrap_or(default_step),
        steps: args.steps.unwrap_or(40),
        random_start: true,
        restarts: args.restarts,
        seed: args.seed,
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

/// Runs the attack batch by batch under a progress bar, then prints the table (and
/// writes `--json`).
pub fn attack(args: &AttackArgs) -> Result<()> {
    let summary = run(args)?;
    print_rows(&summary.rows());
    write_json(args.json.as_deref(), &summary)
}

/// The attack over the requested images.
fn run(args: &AttackArgs) -> Result<AttackSummary> {
    if args.n == 0 || args.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    let device = Device::Cpu;
    let model = crate::load::classifier(args.model, &args.weights, &device)?;
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
    let attack = build(args);
    let name = attack.name();
    println!(
        "{name} on {} test images ({}..{}) of {} ({})",
        test.len(),
        indices[0],
        indices[indices.len() - 1] + 1,
        splits.origin,
        args.weights.display()
    );
    let mut bar = Bar::started(name, batches as u64, "batches");
    let start = Instant::now();
    let mut tally = Tally::default();
    let mut csv = String::from(CSV_HEADER);
    let owned = |b: usize| args.shard.is_none_or(|s| s.owns("attack", b));
    for (b, batch) in test.batches(&options, &device).enumerate() {
        if !owned(b) {
            bar.advance(1);
            continue;
        }
        let batch = batch?;
        let labels: Vec<u32> = batch.labels.to_vec1()?;
        let targeting = if args.targeted {
            Targeting::Targeted(labels.iter().map(|&l| (l + 1) % 10).collect())
        } else {
            Targeting::Untargeted
        };
        let first = args.skip + b * args.batch_size;
        let ids: Vec<u64> = (first..first + labels.len()).map(|i| i as u64).collect();
        let outcome = attack
            .run_examples(model.as_ref(), &batch.images, &labels, &targeting, &ids)
            .with_context(|| format!("batch {b}"))?;
        tally.add(&outcome);
        if let Some(path) = &args.per_image {
            append_rows(&mut csv, first, &outcome);
            harness::write_atomic(path, csv.as_bytes())?;
        }
        bar.set_message(&format!(
            "success {:.1}%",
            100.0 * tally.successes as f64 / tally.attackable.max(1) as f64
        ));
        bar.advance(1);
    }
    bar.finish();
    Ok(AttackSummary::new(
        &tally,
        name,
        &splits.origin.to_string(),
        args,
        start.elapsed().as_secs_f64(),
    ))
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

/// The numbers of one run: the table and `--json` both come from here.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct AttackSummary {
    /// The attack's name.
    pub attack: String,
    /// Where the images came from.
    pub data: String,
    /// The attacked checkpoint.
    pub weights: String,
    /// Test index of the first image of the run (`--skip`).
    pub first_index: usize,
    /// The shard (`K/N`) these numbers cover, if sharded.
    pub shard: Option<String>,
    /// Images attacked.
    pub images: usize,
    /// Fraction f1 classifies correctly before the attack.
    pub clean_accuracy: f64,
    /// Fraction f1 classifies correctly after it.
    pub robust_accuracy: f64,
    /// Images the attack could try (classified correctly, or targeted).
    pub attackable: usize,
    /// Successful attacks.
    pub successes: usize,
    /// `successes / attackable`.
    pub success_rate: f64,
    /// Mean L0 of the successful perturbations (`null` without successes).
    pub mean_l0: Option<f64>,
    /// Mean L2 of the successful perturbations.
    pub mean_l2: Option<f64>,
    /// Mean Linf of the successful perturbations.
    pub mean_linf: Option<f64>,
    /// Gradient evaluations per image.
    pub gradients_per_image: f64,
    /// Images whose gradient was degenerate (all zero) somewhere.
    pub degenerate_gradients: usize,
    /// Wall time of the attack.
    pub seconds: f64,
}

impl AttackSummary {
    fn new(t: &Tally, attack: &str, data: &str, args: &AttackArgs, seconds: f64) -> Self {
        let frac = |a: usize, b: usize| a as f64 / b.max(1) as f64;
        let mean = |s: f64| (t.successes > 0).then(|| s / t.successes as f64);
        Self {
            attack: attack.to_string(),
            data: data.to_string(),
            weights: args.weights.display().to_string(),
            first_index: args.skip,
            shard: args.shard.map(|s| s.to_string()),
            images: t.n,
            clean_accuracy: frac(t.clean_right, t.n),
            robust_accuracy: frac(t.robust_right, t.n),
            attackable: t.attackable,
            successes: t.successes,
            success_rate: frac(t.successes, t.attackable),
            mean_l0: mean(t.l0),
            mean_l2: mean(t.l2),
            mean_linf: mean(t.linf),
            gradients_per_image: frac(t.gradients, t.n),
            degenerate_gradients: t.masked,
            seconds,
        }
    }

    /// The printed table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let pct = |v: f64| format!("{:.2}%", 100.0 * v);
        let opt = |v: Option<f64>, d: usize| v.map_or("NaN".to_string(), |v| format!("{v:.d$}"));
        let mut rows = vec![
            ("images", self.images.to_string()),
            ("clean accuracy", pct(self.clean_accuracy)),
            ("robust accuracy", pct(self.robust_accuracy)),
            (
                "success rate",
                format!(
                    "{} ({} of {} attackable)",
                    pct(self.success_rate),
                    self.successes,
                    self.attackable
                ),
            ),
            ("mean L0 (successes)", opt(self.mean_l0, 1)),
            ("mean L2 (successes)", opt(self.mean_l2, 4)),
            ("mean Linf (successes)", opt(self.mean_linf, 4)),
            (
                "gradients per image",
                format!("{:.1}", self.gradients_per_image),
            ),
            (
                "degenerate gradients",
                format!("{} images", self.degenerate_gradients),
            ),
            (
                "time",
                format!(
                    "{:.1} s ({:.1} images/s)",
                    self.seconds,
                    self.images as f64 / self.seconds.max(1e-9)
                ),
            ),
        ];
        if let Some(shard) = &self.shard {
            rows.insert(0, ("shard", shard.clone()));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, weights};

    /// PGD-Linf (random starts) on 10 fixture images in batches of 3, whole and as 3
    /// shards: the shards attack disjoint batches, and their `--per-image` rows together
    /// are the whole run's, byte for byte.
    #[test]
    fn shards_together_write_the_whole_runs_rows() {
        let dir = tempfile::tempdir().unwrap();
        let w = weights("gapcnn.safetensors");
        let run_to = |file: &str, shard: Option<&str>| {
            let path = dir.path().join(file);
            let mut line = vec![
                "attack",
                "--attack",
                "pgd-linf",
                "--steps",
                "3",
                "--n",
                "10",
                "--skip",
                "4",
                "--batch-size",
                "3",
                "--weights",
                &w,
                "--per-image",
            ];
            let p = path.to_str().unwrap().to_string();
            line.push(&p);
            if let Some(s) = shard {
                line.extend(["--shard", s]);
            }
            let crate::Command::Attack(args) = parse(&line) else {
                panic!("not attack")
            };
            let summary = run(&args).unwrap();
            (summary, std::fs::read_to_string(path).unwrap())
        };
        let (whole, all_rows) = run_to("all.csv", None);
        let mut rows: Vec<String> = Vec::new();
        let mut images = 0;
        for k in 0..3 {
            let (s, text) = run_to(&format!("s{k}.csv"), Some(&format!("{k}/3")));
            assert_eq!(s.shard.as_deref(), Some(format!("{k}/3").as_str()));
            assert_eq!(s.rows()[0], ("shard", format!("{k}/3")));
            images += s.images;
            rows.extend(text.lines().skip(1).map(str::to_string));
        }
        assert_eq!(images, whole.images, "each image in exactly one shard");
        rows.sort_by_key(|r| r.split(',').next().unwrap().parse::<usize>().unwrap());
        let expected: Vec<String> = all_rows.lines().skip(1).map(str::to_string).collect();
        assert_eq!(rows, expected);
    }

    /// FGSM on 20 fixture images: the counts are consistent, every success moved some
    /// pixel by eps (and none by more), and the table prints the JSON's numbers.
    #[test]
    fn fgsm_summary_and_its_json_agree() {
        let w = weights("gapcnn.safetensors");
        let crate::Command::Attack(args) =
            parse(&["attack", "--attack", "fgsm", "--n", "20", "--weights", &w])
        else {
            panic!("not attack")
        };
        let s = run(&args).unwrap();
        assert_eq!(s.images, 20);
        assert!(s.successes <= s.attackable && s.attackable <= 20);
        assert_eq!(s.success_rate, s.successes as f64 / s.attackable as f64);
        assert_eq!(s.gradients_per_image, 1.0, "FGSM takes one gradient");
        if s.successes > 0 {
            assert!(
                (s.mean_linf.unwrap() - 0.3).abs() < 1e-4,
                "{:?}",
                s.mean_linf
            );
        }
        let json = serde_json::to_value(&s).unwrap();
        let rows = s.rows();
        let cell = |k: &str| rows.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        let pct =
            |k: &str| -> f64 { cell(k).split('%').next().unwrap().parse::<f64>().unwrap() / 100.0 };
        for (row, key) in [
            ("clean accuracy", "clean_accuracy"),
            ("robust accuracy", "robust_accuracy"),
            ("success rate", "success_rate"),
        ] {
            assert!(
                (pct(row) - json[key].as_f64().unwrap()).abs() <= 5e-5,
                "{row}"
            );
        }
        assert!(cell("success rate").contains(&format!(
            "({} of {} attackable)",
            json["successes"], json["attackable"]
        )));
        assert_eq!(cell("images"), json["images"].to_string());
    }
}
