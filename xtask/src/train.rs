//! `cargo xtask train` and `cargo xtask eval`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use clap::{Args, ValueEnum};
use models::train::{
    accuracy, evaluate_svae, train_classifier, train_svae, ProgressBars, TrainConfig,
};
use models::{load_model, Architecture, Classifier, GapCnn, Mlp, Oracle, Svae};

use crate::data::SourceArgs;

/// The four models of the study.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// The attacked CNN with a GAP head (CAM-able f1).
    Gapcnn,
    /// The 784-128-10 MLP (the paper's weak f1).
    Mlp,
    /// The independent judge.
    Oracle,
    /// The oracle's architecture trained adversarially (FGSM with a random start, Linf
    /// eps 0.3): a second judge whose decisions follow the digit's shape.
    RobustOracle,
    /// The supervised VAE (with latent classifier and discriminator).
    Svae,
}

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
        cfg.adversarial = Some(models::adversarial::AdversarialTraining::mnist());
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
}

/// Prints test accuracy (SVAE: latent accuracy, reconstruction BCE and KL per image).
pub fn eval(args: &EvalArgs) -> Result<()> {
    let splits = args.source.source().load()?;
    let device = Device::Cpu;
    let test = &splits.test;
    println!("data: {} ({} test images)", splits.origin, test.len());
    let w = &args.weights;
    match args.model {
        ModelKind::Gapcnn => print_accuracy::<GapCnn>(w, test, &device)?,
        ModelKind::Mlp => print_accuracy::<Mlp>(w, test, &device)?,
        ModelKind::Oracle | ModelKind::RobustOracle => print_accuracy::<Oracle>(w, test, &device)?,
        ModelKind::Svae => {
            let svae = load_model::<Svae>(w, DType::F32, &device)?;
            for (name, value) in evaluate_svae(&svae, test, &device)? {
                println!("{name} {value:.4}");
            }
            if let Some(path) = &args.oracle {
                let oracle = load_model::<Oracle>(path, DType::F32, &device)
                    .with_context(|| format!("loading {}", path.display()))?;
                let acc = models::train::decoded_accuracy(&svae, &oracle, test, &device)?;
                println!("oracle_on_decoded_mu {acc:.4}");
            }
        }
    }
    Ok(())
}

/// Loads a classifier checkpoint and prints its accuracy on `test`.
fn print_accuracy<A: Architecture + Classifier>(
    weights: &std::path::Path,
    test: &mnist_data::Dataset,
    device: &Device,
) -> Result<()> {
    let model = load_model::<A>(weights, DType::F32, device)?;
    println!("test accuracy {:.4}", accuracy(&model, test, 1000, device)?);
    Ok(())
}
