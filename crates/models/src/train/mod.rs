//! Training loops: seeded batches, Adam with the published settings, progress events,
//! an atomic checkpoint after every epoch and exact resumption from it.
//!
//! A run writes two files: the weights (`out`, PyTorch state-dict names only) and
//! beside it `<out>.state` (optimiser moments and the epoch reached), both through a
//! temporary file and a rename, so killing a run never leaves a half-written file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use mnist_data::{BatchOptions, Dataset, PixelFormat};
use rand::{rngs::StdRng, SeedableRng};

use crate::adam::{Adam, AdamConfig};
use crate::adversarial::{pgd_accuracy, training_examples, AdversarialTraining};
use crate::error::{ModelError, Result};
use crate::params::{
    check_tensors, init_varmap, read_safetensors, save_tensors, varmap_tensors, vars_named,
    Architecture,
};
use crate::svae::{part_names, Svae};
use crate::traits::Classifier;

mod events;

pub use events::{Observer, ProgressBars, TrainEvent};

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Epochs to reach (a resumed run continues up to this number).
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Seed of the initial weights, the batch order (seed + epoch) and the noise.
    pub seed: u64,
    /// Optimiser.
    pub adam: AdamConfig,
    /// Classifiers only: train on adversarial examples instead of the clean images.
    pub adversarial: Option<AdversarialTraining>,
}

impl TrainConfig {
    /// Classifiers: Adam lr 1e-3, batch 128.
    pub fn classifier(epochs: usize, seed: u64) -> Self {
        Self {
            epochs,
            batch_size: 128,
            seed,
            adam: AdamConfig::default(),
            adversarial: None,
        }
    }

    /// The SVAE's published settings: Adam lr 2e-4, beta1 0.5, batch 64.
    pub fn svae(epochs: usize, seed: u64) -> Self {
        Self {
            epochs,
            batch_size: 64,
            seed,
            adam: AdamConfig::svae(),
            adversarial: None,
        }
    }
}

/// Where the optimiser state of a checkpoint lives: `<weights>.state`.
pub fn state_path(weights: &Path) -> PathBuf {
    let mut s = weights.as_os_str().to_owned();
    s.push(".state");
    PathBuf::from(s)
}

/// Accuracy of `model` on `data` (grey pixels), in batches of `batch_size`.
pub fn accuracy<M: Classifier + ?Sized>(
    model: &M,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    if data.is_empty() {
        return Err(ModelError::InvalidInput(
            "accuracy of an empty dataset".into(),
        ));
    }
    Ok(correct_count(model, data, batch_size, device)? as f64 / data.len() as f64)
}

/// How many images of `data` `model` classifies as labelled (batches of `batch_size`).
pub fn correct_count<M: Classifier + ?Sized>(
    model: &M,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<usize> {
    let options = BatchOptions {
        batch_size,
        ..Default::default()
    };
    let mut correct = 0usize;
    for batch in data.batches(&options, device) {
        let batch = batch?;
        let pred = model.predict(&batch.images)?;
        let labels: Vec<u32> = batch.labels.to_vec1()?;
        correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    }
    Ok(correct)
}

/// Saves weights (only the parameters of `A`) and the optimiser state with the epoch.
fn save_checkpoint<A: Architecture>(
    varmap: &VarMap,
    adams: &[&Adam],
    stage: &str,
    epoch: usize,
    out: &Path,
) -> Result<()> {
    let weights = varmap_tensors(varmap)?;
    let meta = HashMap::from([("kind".to_string(), A::KIND.to_string())]);
    save_tensors(&weights, &meta, out)?;
    let mut state = HashMap::new();
    let mut steps = Vec::new();
    for adam in adams {
        let (moments, step) = adam.state()?;
        state.extend(moments);
        steps.push(step.to_string());
    }
    let meta = HashMap::from([
        ("kind".to_string(), A::KIND.to_string()),
        ("stage".to_string(), stage.to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("steps".to_string(), steps.join(",")),
    ]);
    save_tensors(&state, &meta, &state_path(out))
}

/// Reads a checkpoint's weights into `varmap` and returns the state tensors and metadata.
fn resume_from<A: Architecture>(
    varmap: &VarMap,
    out: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bad = |message: String| ModelError::Checkpoint {
        path: out.to_path_buf(),
        message,
    };
    let weights = read_safetensors(out, device)?;
    check_tensors::<A>(&weights).map_err(bad)?;
    {
        let data = varmap.data();
        let data = data
            .lock()
            .map_err(|_| bad("var map lock poisoned".into()))?;
        for (name, var) in data.iter() {
            if let Some(t) = weights.get(name) {
                var.set(&t.to_dtype(var.dtype())?)?;
            }
        }
    }
    let sp = state_path(out);
    let state = read_safetensors(&sp, device)?;
    let bytes = std::fs::read(&sp).map_err(|source| ModelError::Io {
        path: sp.clone(),
        source,
    })?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| ModelError::Checkpoint {
            path: sp.clone(),
            message: e.to_string(),
        })?;
    Ok((state, meta.metadata().clone().unwrap_or_default()))
}

fn meta_usize(meta: &HashMap<String, String>, key: &str, path: &Path) -> Result<Vec<usize>> {
    meta.get(key)
        .map(|v| {
            v.split(',')
                .map(|s| s.parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
        })
        .transpose()
        .ok()
        .flatten()
        .ok_or_else(|| ModelError::Checkpoint {
            path: state_path(path),
            message: format!("metadata `{key}` missing or not a number"),
        })
}

/// Trains a classifier of architecture `A` on `train` with cross-entropy, evaluating on
/// `heldout` after every epoch and checkpointing to `out`. With `resume`, an existing
/// checkpoint at `out` is continued from its epoch (same result as an uninterrupted run).
pub fn train_classifier<A: Architecture + Classifier>(
    train: &Dataset,
    heldout: &Dataset,
    config: &TrainConfig,
    out: &Path,
    resume: bool,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<A> {
    let varmap = init_varmap::<A>(config.seed, DType::F32, device)?;
    let names: Vec<String> = A::param_specs().into_iter().map(|s| s.name).collect();
    let mut adam = Adam::new(vars_named(&varmap, &names)?, config.adam)?;
    let mut start = 1;
    if resume && out.is_file() {
        let (state, meta) = resume_from::<A>(&varmap, out, device)?;
        let epoch = meta_usize(&meta, "epoch", out)?[0];
        let steps = meta_usize(&meta, "steps", out)?[0];
        adam.load_state(&state, steps)
            .map_err(|message| ModelError::Checkpoint {
                path: state_path(out),
                message,
            })?;
        start = epoch + 1;
    }
    let model = A::from_varbuilder(&VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    // Adversarial runs hold the last training images out for their PGD check (the test
    // split never picks a checkpoint).
    let (train, validation) = match &config.adversarial {
        Some(adv) if adv.check.images > 0 => {
            let n = train.len();
            if adv.check.images >= n {
                return Err(ModelError::InvalidInput(format!(
                    "the PGD check holds out {} images but the training split has {n}",
                    adv.check.images
                )));
            }
            let cut = n - adv.check.images;
            let kept: Vec<usize> = (0..cut).collect();
            let held: Vec<usize> = (cut..n).collect();
            (train.select(&kept)?, Some(train.select(&held)?))
        }
        _ => (train.clone(), None),
    };
    let best = best_path(out);
    if start == 1 && config.adversarial.is_some() && best.is_file() {
        // A fresh run never compares itself with a stale run's best epoch.
        std::fs::remove_file(&best).map_err(|source| ModelError::Io {
            path: best.clone(),
            source,
        })?;
    }
    for epoch in start..=config.epochs {
        let t0 = Instant::now();
        let options = BatchOptions {
            batch_size: config.batch_size,
            shuffle_seed: Some(config.seed.wrapping_add(epoch as u64)),
            drop_last: false,
            format: PixelFormat::Gray,
        };
        let batches = train.batches(&options, device);
        let num_batches = batches.num_batches();
        observer.event(&TrainEvent::EpochStart {
            stage: "train",
            epoch,
            batches: num_batches,
        });
        let mut rng = StdRng::seed_from_u64(config.seed ^ (0xad7e_0000 + epoch as u64));
        let (mut sum, mut n) = (0.0, 0usize);
        for (i, batch) in batches.enumerate() {
            let batch = batch?;
            let images = match &config.adversarial {
                Some(adv) => {
                    let progress = (epoch - 1) as f64 + i as f64 / num_batches as f64;
                    let eps = adv.eps_at(progress);
                    training_examples(&model, &batch.images, &batch.labels, adv, eps, &mut rng)?
                        .detach()
                }
                None => batch.images,
            };
            let logits = model.logits(&images)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &batch.labels)?;
            adam.step(&loss.backward()?)?;
            let l = f64::from(loss.to_scalar::<f32>()?);
            sum += l;
            n += 1;
            observer.event(&TrainEvent::Step { loss: l });
        }
        save_checkpoint::<A>(&varmap, &[&adam], "train", epoch, out)?;
        let acc = accuracy(&model, heldout, 1000, device)?;
        let mut figures = vec![("accuracy".into(), acc)];
        if let (Some(adv), Some(val)) = (&config.adversarial, &validation) {
            let (clean, robust) = pgd_accuracy(&model, val, &adv.check, config.seed, device)?;
            figures.push(("validation_accuracy".into(), clean));
            figures.push(("validation_pgd_accuracy".into(), robust));
            // The best epoch by held-out PGD accuracy is kept beside the last one, so a
            // catastrophic overfit late in a run loses nothing.
            let previous = best_score(&best);
            if previous.is_none_or(|p| robust > p) {
                let weights = varmap_tensors(&varmap)?;
                let meta = HashMap::from([
                    ("kind".to_string(), A::KIND.to_string()),
                    ("epoch".to_string(), epoch.to_string()),
                    ("validation_pgd_accuracy".to_string(), robust.to_string()),
                ]);
                save_tensors(&weights, &meta, &best)?;
            }
        }
        observer.event(&TrainEvent::EpochEnd {
            stage: "train",
            epoch,
            loss: sum / n.max(1) as f64,
            heldout: figures,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(model)
}

/// Where an adversarial run keeps its best epoch by held-out PGD accuracy:
/// `<out stem>.best.safetensors` beside `out`.
pub fn best_path(out: &Path) -> PathBuf {
    out.with_extension("best.safetensors")
}

/// The held-out PGD accuracy recorded in a best-epoch checkpoint, if there is one.
fn best_score(path: &Path) -> Option<f64> {
    let bytes = std::fs::read(path).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    meta.metadata()
        .as_ref()?
        .get("validation_pgd_accuracy")?
        .parse()
        .ok()
}

/// The SVAE's terms for a batch of binarised images: (CE of f2, KL, BCE), each a mean
/// over the batch as ALGORITHMS.md section 3 defines them, with z drawn as mu + sigma*e.
pub fn svae_terms(
    svae: &Svae,
    x: &Tensor,
    y: &Tensor,
    noise: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (mu, sigma) = svae.encode(x)?;
    let z = match noise {
        Some(e) => (&mu + (&sigma * e)?)?,
        None => mu.clone(),
    };
    let ce = candle_nn::loss::cross_entropy(&svae.classify_latent(&z)?, y)?;
    let s2 = sigma.sqr()?;
    let kl = ((mu.sqr()? + &s2)? - (s2 + 1e-6)?.log()?)?
        .affine(1.0, -1.0)?
        .sum(D::Minus1)?
        .affine(0.5, 0.0)?
        .mean_all()?;
    let xh = svae.decode(&z)?.clamp(1e-6, 1.0 - 1e-6)?;
    let ll = ((x * xh.log()?)? + (x.affine(-1.0, 1.0)? * xh.affine(-1.0, 1.0)?.log()?)?)?;
    let bce = ll.sum_all()?.neg()?.affine(1.0 / x.dim(0)? as f64, 0.0)?;
    Ok((ce, kl, bce))
}

/// An SVAE's held-out sums over some images (in batches of 500, binarised): what
/// [`evaluate_svae`] divides by the image count. Sums of disjoint parts of a dataset, added
/// in order, are the whole dataset's when every part but the last holds a multiple of 500.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SvaeSums {
    /// Images.
    pub images: usize,
    /// Images whose latent class f2(mu(x)) is the label.
    pub latent_correct: usize,
    /// Reconstruction BCE (z = mu), summed over the images.
    pub bce: f64,
    /// KL, summed over the images.
    pub kl: f64,
}

impl SvaeSums {
    /// The figures [`evaluate_svae`] reports: latent accuracy, BCE and KL per image.
    pub fn figures(&self) -> Vec<(String, f64)> {
        let n = self.images.max(1) as f64;
        vec![
            ("latent_accuracy".into(), self.latent_correct as f64 / n),
            ("reconstruction_bce".into(), self.bce / n),
            ("kl".into(), self.kl / n),
        ]
    }

    /// `self` followed by `other` (the sums accumulate in batch order).
    pub fn then(mut self, other: &SvaeSums) -> SvaeSums {
        self.images += other.images;
        self.latent_correct += other.latent_correct;
        self.bce += other.bce;
        self.kl += other.kl;
        self
    }
}

/// The [`SvaeSums`] of `data`.
pub fn svae_sums(svae: &Svae, data: &Dataset, device: &Device) -> Result<SvaeSums> {
    let options = BatchOptions {
        batch_size: 500,
        format: PixelFormat::Binarized,
        ..Default::default()
    };
    let mut sums = SvaeSums {
        images: data.len(),
        ..Default::default()
    };
    for batch in data.batches(&options, device) {
        let batch = batch?;
        let n = batch.indices.len() as f64;
        let (mu, _) = svae.encode(&batch.images)?;
        let pred: Vec<u32> = svae.classify_latent(&mu)?.argmax(1)?.to_vec1()?;
        let labels: Vec<u32> = batch.labels.to_vec1()?;
        sums.latent_correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
        let (_, k, b) = svae_terms(svae, &batch.images, &batch.labels, None)?;
        sums.bce += f64::from(b.to_scalar::<f32>()?) * n;
        sums.kl += f64::from(k.to_scalar::<f32>()?) * n;
    }
    Ok(sums)
}

/// Held-out figures of an SVAE: latent-classifier accuracy of f2(mu(x)), reconstruction
/// BCE per image and KL per image (z = mu for the reconstruction).
pub fn evaluate_svae(svae: &Svae, data: &Dataset, device: &Device) -> Result<Vec<(String, f64)>> {
    Ok(svae_sums(svae, data, device)?.figures())
}

/// The fraction of `data` whose reconstruction decode(mu(x)) (from the binarised image)
/// `judge` assigns the true label: whether decoded codes are recognisable digits.
pub fn decoded_accuracy(
    svae: &Svae,
    judge: &dyn Classifier,
    data: &Dataset,
    device: &Device,
) -> Result<f64> {
    Ok(decoded_correct(svae, judge, data, device)? as f64 / data.len().max(1) as f64)
}

/// How many images of `data` `judge` assigns the label after decode(mu(x)).
pub fn decoded_correct(
    svae: &Svae,
    judge: &dyn Classifier,
    data: &Dataset,
    device: &Device,
) -> Result<usize> {
    let options = BatchOptions {
        batch_size: 500,
        format: PixelFormat::Binarized,
        ..Default::default()
    };
    let mut correct = 0usize;
    for batch in data.batches(&options, device) {
        let batch = batch?;
        let (mu, _) = svae.encode(&batch.images)?;
        let pred = judge.predict(&svae.decode(&mu)?)?;
        let labels: Vec<u32> = batch.labels.to_vec1()?;
        correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    }
    Ok(correct)
}

/// Trains the SVAE in two stages (ALGORITHMS.md section 3): `svae_epochs` of the VAE with
/// its latent classifier (CE + KL + BCE), then `disc_epochs` of the discriminator alone
/// with the rest frozen. Checkpoints after every epoch; `resume` continues a run.
#[allow(clippy::too_many_arguments)]
pub fn train_svae(
    train: &Dataset,
    heldout: &Dataset,
    config: &TrainConfig,
    disc_epochs: usize,
    out: &Path,
    resume: bool,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<Svae> {
    let varmap = init_varmap::<Svae>(config.seed, DType::F32, device)?;
    let vae_names = part_names(&["encoder.", "decoder.", "latent_classifier."]);
    let disc_names = part_names(&["discriminator."]);
    let mut vae_adam = Adam::new(vars_named(&varmap, &vae_names)?, config.adam)?;
    let mut disc_adam = Adam::new(vars_named(&varmap, &disc_names)?, config.adam)?;
    // Epochs are counted across both stages: 1..=svae_epochs, then the discriminator's.
    let mut start = 1;
    if resume && out.is_file() {
        let (state, meta) = resume_from::<Svae>(&varmap, out, device)?;
        start = meta_usize(&meta, "epoch", out)?[0] + 1;
        let steps = meta_usize(&meta, "steps", out)?;
        let bad = |message| ModelError::Checkpoint {
            path: state_path(out),
            message,
        };
        vae_adam.load_state(&state, steps[0]).map_err(bad)?;
        disc_adam
            .load_state(&state, *steps.get(1).unwrap_or(&0))
            .map_err(bad)?;
    }
    let svae = Svae::from_varbuilder(&VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let total = config.epochs + disc_epochs;
    for epoch in start..=total {
        let t0 = Instant::now();
        let stage = if epoch <= config.epochs {
            "svae"
        } else {
            "discriminator"
        };
        let options = BatchOptions {
            batch_size: config.batch_size,
            shuffle_seed: Some(config.seed.wrapping_add(epoch as u64)),
            drop_last: false,
            format: PixelFormat::Binarized,
        };
        let mut rng = StdRng::seed_from_u64(config.seed ^ (0x5eed_0000 + epoch as u64));
        let batches = train.batches(&options, device);
        observer.event(&TrainEvent::EpochStart {
            stage,
            epoch,
            batches: batches.num_batches(),
        });
        let (mut sum, mut n) = (0.0, 0usize);
        for batch in batches {
            let batch = batch?;
            let b = batch.indices.len();
            let e = crate::random::normal(&mut rng, (b, crate::svae::DIM_Z), DType::F32, device)?;
            let loss = if stage == "svae" {
                let (ce, kl, bce) = svae_terms(&svae, &batch.images, &batch.labels, Some(&e))?;
                let loss = ((ce + kl)? + bce)?;
                vae_adam.step(&loss.backward()?)?;
                loss
            } else {
                let (mu, sigma) = svae.encode(&batch.images)?;
                let zq = (mu + (sigma * &e)?)?.detach();
                let zp =
                    crate::random::normal(&mut rng, (b, crate::svae::DIM_Z), DType::F32, device)?;
                // BCE with logits: target 1 -> softplus(-l), target 0 -> softplus(l).
                let lq = crate::layers::softplus(&svae.discriminate(&zq)?.neg()?)?.mean_all()?;
                let lp = crate::layers::softplus(&svae.discriminate(&zp)?)?.mean_all()?;
                let loss = ((lq + lp)? * 0.5)?;
                disc_adam.step(&loss.backward()?)?;
                loss
            };
            let l = f64::from(loss.to_scalar::<f32>()?);
            sum += l;
            n += 1;
            observer.event(&TrainEvent::Step { loss: l });
        }
        save_checkpoint::<Svae>(&varmap, &[&vae_adam, &disc_adam], stage, epoch, out)?;
        let heldout = if stage == "svae" {
            evaluate_svae(&svae, heldout, device)?
        } else {
            vec![("discriminator_loss".into(), sum / n.max(1) as f64)]
        };
        observer.event(&TrainEvent::EpochEnd {
            stage,
            epoch,
            loss: sum / n.max(1) as f64,
            heldout,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(svae)
}
