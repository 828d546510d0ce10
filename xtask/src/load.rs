//! Loading what the commands share: the models of the study ([`ModelKind`]), checkpoints
//! (with the file named in every error) and one test image by index (an index outside
//! the split is refused, naming the split's size).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::ValueEnum;
use mnist_data::{Dataset, PixelFormat};
use models::{load_model, Architecture, Classifier, GapCnn, Mlp, Oracle};

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

/// The image classifiers among the study's models (every one but the SVAE): what
/// `attack`, `clever` and `certify` take, so that `--model svae` is refused by the
/// command line with the values it accepts.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassifierKind {
    /// The attacked CNN with a GAP head (CAM-able f1).
    Gapcnn,
    /// The 784-128-10 MLP (the paper's weak f1).
    Mlp,
    /// The independent judge.
    Oracle,
    /// The oracle's architecture trained adversarially (FGSM with a random start, Linf
    /// eps 0.3): a second judge whose decisions follow the digit's shape.
    RobustOracle,
}

impl ClassifierKind {
    /// The name the command line and the checkpoint file use (`robust-oracle`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ClassifierKind::Gapcnn => "gapcnn",
            ClassifierKind::Mlp => "mlp",
            ClassifierKind::Oracle => "oracle",
            ClassifierKind::RobustOracle => "robust-oracle",
        }
    }
}

impl ModelKind {
    /// The classifier this model is, `None` for the SVAE.
    pub fn as_classifier(self) -> Option<ClassifierKind> {
        match self {
            ModelKind::Gapcnn => Some(ClassifierKind::Gapcnn),
            ModelKind::Mlp => Some(ClassifierKind::Mlp),
            ModelKind::Oracle => Some(ClassifierKind::Oracle),
            ModelKind::RobustOracle => Some(ClassifierKind::RobustOracle),
            ModelKind::Svae => None,
        }
    }
}

impl From<ClassifierKind> for ModelKind {
    fn from(kind: ClassifierKind) -> Self {
        match kind {
            ClassifierKind::Gapcnn => ModelKind::Gapcnn,
            ClassifierKind::Mlp => ModelKind::Mlp,
            ClassifierKind::Oracle => ModelKind::Oracle,
            ClassifierKind::RobustOracle => ModelKind::RobustOracle,
        }
    }
}

/// The bundled checkpoints.
pub const FIXTURE_WEIGHTS: &str = "fixtures/weights";

/// A checkpoint of architecture `A`, f32 on `device`.
pub fn checkpoint<A: Architecture>(path: &Path, device: &Device) -> Result<A> {
    load_model::<A>(path, DType::F32, device).with_context(|| format!("loading {}", path.display()))
}

/// The checkpoint file of `kind` in a weights directory (`gapcnn.safetensors`, ...).
pub fn weights_file(dir: &Path, kind: ModelKind) -> PathBuf {
    let name = kind.as_classifier().map_or("svae", ClassifierKind::name);
    dir.join(format!("{name}.safetensors"))
}

/// One of the image classifiers from its checkpoint.
pub fn classifier(
    kind: ClassifierKind,
    path: &Path,
    device: &Device,
) -> Result<Box<dyn Classifier>> {
    Ok(match kind {
        ClassifierKind::Gapcnn => Box::new(checkpoint::<GapCnn>(path, device)?),
        ClassifierKind::Mlp => Box::new(checkpoint::<Mlp>(path, device)?),
        ClassifierKind::Oracle | ClassifierKind::RobustOracle => {
            Box::new(checkpoint::<Oracle>(path, device)?)
        }
    })
}

/// Test image `index` as a `1 x 1 x 28 x 28` tensor in [0, 1], with its label.
pub fn test_image(test: &Dataset, index: usize, device: &Device) -> Result<(Tensor, u8)> {
    let Some(label) = test.label(index) else {
        bail!(
            "--index {index} is out of range: the test split has {} images (0..{})",
            test.len(),
            test.len()
        );
    };
    let x = test.images_tensor(&[index], PixelFormat::Gray, device)?;
    Ok((x, label))
}

/// A classifier's class probabilities (softmax of its logits, in f64), one row per image.
pub fn probabilities<M: Classifier + ?Sized>(model: &M, x: &Tensor) -> Result<Vec<Vec<f32>>> {
    let logits: Vec<Vec<f64>> = model.logits(x)?.to_dtype(DType::F64)?.to_vec2()?;
    Ok(logits
        .iter()
        .map(|row| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|l| (l - max).exp()).collect();
            let total: f64 = e.iter().sum();
            e.iter().map(|v| (v / total) as f32).collect()
        })
        .collect())
}
