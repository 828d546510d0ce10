//! `cargo xtask train` and `cargo xtask eval`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use clap::Args;
use models::train::{
    accuracy, evaluate_svae, train_classifier, train_svae, ProgressBars, TrainConfig,
};
use models::{GapCnn, Mlp, Oracle, Svae};
use serde::Serialize;

use crate::data::SourceArgs;
use crate::load::{checkpoint, classifier, ModelKind};

/// Flags of `cargo xtask train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Which model.
    #[arg(long, value_enum)]
    pub model: ModelKind,
    /// Data to train on (the train split; the test split is held out).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Epochs (for the SVAE: epochs of its first stage).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Epochs of the SVAE's discriminator stage.
    #[arg(long, default_value_t = 1)]
    pub disc_epochs: usize,
    /// Seed of the weights, the batch order and the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output checkpoint (safetensors); `<out>.state` holds the optimiser state.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the checkpoint at `--out` if there is one.
    #[arg(long)]
    pub resume: bool,
    /// Learning rate (default: Adam 1e-3 for classifiers, 2e-4 for the SVAE); with
    /// `--resume`, a lower rate for the last epochs is a learning-rate drop.
    #[arg(long)]
    pub lr: Option<f64>,
    /// With `--model robust-oracle`: the last training images held out for the PGD check
    /// that picks the best epoch (default 1,000; fewer for small training splits such as
    /// the fixtures' 500).
    #[arg(long)]
    pub pgd_check_images: Option<usize>,
}

/// Trains one model, printing progress and the final held-out figures.
pub fn train(args: &TrainArgs) -> Result<()> {
    let splits = args.source.source().load()?;
    println!(
        "data: {} ({} train, {} test)",
        splits.origin,
        splits.train.len(),
        splits.test.len()
    );
    let device = Device::Cpu;
    let mut bars = ProgressBars::default();
    let t0 = Instant::now();
    let (tr, te) = (&splits.train, &splits.test);
    let mut cfg = TrainConfig::classifier(args.epochs, args.seed);
    if let Some(lr) = args.lr {
        cfg.adam.lr = lr;
    }
    if args.model == ModelKind::RobustOracle {
        let mut adv = models::adversarial::AdversarialTraining::mnist();
        if let Some(n) = args.pgd_check_images {
            adv.check.images = n;
        }
        cfg.adversarial = Some(adv);
    } else if args.pgd_check_images.is_some() {
        return Err(anyhow::anyhow!(
            "--pgd-check-images applies to --model robust-oracle only"
        ));
    }
    match args.model {
        ModelKind::Gapcnn => drop(train_classifier::<GapCnn>(
            tr,
            te,
            &cfg,
            &args.out,
            args.resume,
            &device,
            &mut bars,
        )?),
        ModelKind::Mlp => drop(train_classifier::<Mlp>(
            tr,
            te,
            &cfg,
            &args.out,
            args.resume,
            &device,
            &mut bars,
        )?),
        ModelKind::Oracle | ModelKind::RobustOracle => drop(train_classifier::<Oracle>(
            tr,
            te,
            &cfg,
            &args.out,
            args.resume,
            &device,
            &mut bars,
        )?),
        ModelKind::Svae => {
            let mut cfg = TrainConfig::svae(args.epochs, args.seed);
            if let Some(lr) = args.lr {
                cfg.adam.lr = lr;
            }
            drop(train_svae(
                tr,
                te,
                &cfg,
                args.disc_epochs,
                &args.out,
                args.resume,
                &device,
                &mut bars,
            )?)
        }
    }
    println!(
        "wrote {} in {:.0} s",
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Flags of `cargo xtask eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Which model.
    #[arg(long, value_enum)]
    pub model: ModelKind,
    /// Its checkpoint.
    #[arg(long)]
    pub weights: PathBuf,
    /// Data (the test split is evaluated).
    #[command(flatten)]
    pub source: SourceArgs,
    /// With `--model svae`: an oracle checkpoint that judges decode(mu(x)).
    #[arg(long)]
    pub oracle: Option<PathBuf>,
    /// Also write the printed figures as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// What `cargo xtask eval` prints.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct EvalSummary {
    /// Where the test split came from.
    pub data: String,
    /// Which model.
    pub model: String,
    /// Its checkpoint.
    pub weights: String,
    /// Test images evaluated.
    pub test_images: usize,
    /// The figures as printed, by name: `test_accuracy` for a classifier; for the SVAE
    /// `latent_accuracy`, `reconstruction_bce`, `kl` (per image) and, with `--oracle`,
    /// `oracle_on_decoded_mu`. A JSON object, in the printed order.
    #[serde(serialize_with = "in_order")]
    pub metrics: Vec<(String, f64)>,
}

impl EvalSummary {
    /// The printed lines: `data: ...`, then one `name value` line per figure.
    pub fn text(&self) -> String {
        let mut out = format!("data: {} ({} test images)\n", self.data, self.test_images);
        for (name, value) in &self.metrics {
            // Printed as before: "test accuracy" for a classifier.
            let name = if name == "test_accuracy" {
                "test accuracy"
            } else {
                name
            };
            out.push_str(&format!("{name} {value:.4}\n"));
        }
        out
    }
}

fn in_order<S: serde::Serializer>(m: &[(String, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (k, v)))
}

/// Prints test accuracy (SVAE: latent accuracy, reconstruction BCE and KL per image),
/// and writes `--json`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let summary = evaluate(args)?;
    print!("{}", summary.text());
    crate::output::write_json(args.json.as_deref(), &summary)
}

fn evaluate(args: &EvalArgs) -> Result<EvalSummary> {
    let splits = args.source.source().load()?;
    let device = Device::Cpu;
    let test = &splits.test;
    let w = &args.weights;
    let mut metrics = Vec::new();
    match args.model.as_classifier() {
        None => {
            let svae = checkpoint::<Svae>(w, &device)?;
            metrics.extend(evaluate_svae(&svae, test, &device)?);
            if let Some(path) = &args.oracle {
                let oracle = checkpoint::<Oracle>(path, &device)?;
                let acc = models::train::decoded_accuracy(&svae, &oracle, test, &device)?;
                metrics.push(("oracle_on_decoded_mu".into(), acc));
            }
        }
        Some(kind) => {
            let model = classifier(kind, w, &device)?;
            metrics.push((
                "test_accuracy".into(),
                accuracy(model.as_ref(), test, 1000, &device)?,
            ));
        }
    }
    Ok(EvalSummary {
        data: splits.origin.to_string(),
        model: format!("{:?}", args.model).to_lowercase(),
        weights: w.display().to_string(),
        test_images: test.len(),
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, weights};

    #[test]
    fn eval_json_holds_the_printed_accuracy() {
        let w = weights("gapcnn.safetensors");
        let crate::Command::Eval(args) =
            parse(&["eval", "--model", "gapcnn", "--weights", &w, "--fixtures"])
        else {
            panic!("not eval")
        };
        let s = evaluate(&args).unwrap();
        // An independent count of the right answers.
        let device = Device::Cpu;
        let test = mnist_data::Source::Fixtures.load().unwrap().test;
        let (x, y) = test
            .to_tensors(mnist_data::PixelFormat::Gray, &device)
            .unwrap();
        let model = checkpoint::<GapCnn>(std::path::Path::new(&w), &device).unwrap();
        let pred = models::Classifier::predict(&model, &x).unwrap();
        let labels: Vec<u32> = y.to_vec1().unwrap();
        let right = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
        let json = serde_json::to_value(&s).unwrap();
        let acc = json["metrics"]["test_accuracy"].as_f64().unwrap();
        assert_eq!(acc, right as f64 / 500.0);
        assert_eq!(json["test_images"], 500);
        let printed: f64 = s
            .text()
            .lines()
            .find_map(|l| l.strip_prefix("test accuracy "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((printed - acc).abs() <= 5e-5, "{printed} vs {acc}");
    }

    #[test]
    fn svae_figures_keep_their_printed_order() {
        let s = EvalSummary {
            data: "d".into(),
            model: "svae".into(),
            weights: "w".into(),
            test_images: 1,
            metrics: vec![("b".into(), 1.0), ("a".into(), 2.0)],
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""metrics":{"b":1.0,"a":2.0}"#), "{text}");
        assert!(s.text().ends_with("b 1.0000\na 2.0000\n"));
    }
}
