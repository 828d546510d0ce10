//! Type I examples judged by a panel (ALGORITHMS.md sections 9 and 10), shared by
//! `cargo xtask type1` and the reproduce stage: the pairs (f1's clean label, the 9 other
//! classes), one run of an attack mode over them with each judge's verdict on the final
//! images, the summary per mode, the judges' own accuracy, and the success grid.

use candle_core::{DType, Device, D};
use mnist_data::{Dataset, PixelFormat};
use models::{Classifier, Svae};
use serde::{Deserialize, Serialize};
use vae_attack::{
    attack_then_judge, ClassMeans, Judges, LatentAttackConfig, LatentOutcome, PairVerdict, Verdicts,
};

use crate::error::Result;

/// Everything a Type I run uses: the attacked f1, the SVAE, the training class means
/// (for a start towards the target) and the panel that judges the results.
#[derive(Clone, Copy)]
pub struct PanelInputs<'a> {
    /// The attacked classifier.
    pub f1: &'a dyn Classifier,
    /// The supervised VAE.
    pub svae: &'a Svae,
    /// Mean code per class over the training images.
    pub means: &'a ClassMeans,
    /// The judges (never seen by a judge-free attack).
    pub judges: Judges<'a>,
}

/// The (image, target) pairs: each image f1 classifies correctly, towards the 9 classes
/// other than that label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Type1Pairs {
    /// Test index per pair.
    pub index: Vec<usize>,
    /// The label f1 must keep (its clean arg-max, equal to the true label).
    pub keep: Vec<u32>,
    /// Target per pair.
    pub target: Vec<u32>,
    /// Images considered.
    pub images: usize,
    /// Images left out because f1 misclassifies them.
    pub left_out: usize,
}

impl Type1Pairs {
    /// A digest of the pairs (test index, kept label, target), for checkpoint keys.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for ((&i, &k), &t) in self.index.iter().zip(&self.keep).zip(&self.target) {
            h.update((i as u64).to_le_bytes());
            h.update(k.to_le_bytes());
            h.update(t.to_le_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Pairs from the test images `indices`.
    pub fn from_f1(
        f1: &dyn Classifier,
        test: &Dataset,
        indices: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let mut pairs = Self {
            images: indices.len(),
            ..Self::default()
        };
        for chunk in indices.chunks(500) {
            let x = test
                .images_tensor(chunk, PixelFormat::Gray, device)
                .map_err(models::ModelError::from)?;
            let pred = f1.predict(&x)?;
            for (&i, &p) in chunk.iter().zip(&pred) {
                if test.label(i).map(u32::from) != Some(p) {
                    pairs.left_out += 1;
                    continue;
                }
                for t in (0..10u32).filter(|&t| t != p) {
                    pairs.index.push(i);
                    pairs.keep.push(p);
                    pairs.target.push(t);
                }
            }
        }
        Ok(pairs)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// No pair.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// One judged Type I example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRow {
    /// Test index of the image.
    pub index: usize,
    /// The label f1 had to keep.
    pub keep: u32,
    /// The target.
    pub target: u32,
    /// f1's class on the final image.
    pub f1_pred: u32,
    /// f1's probability of that class.
    pub f1_prob: f32,
    /// The standard oracle's class.
    pub standard: u32,
    /// The robust oracle's class.
    pub robust: u32,
    /// The kNN vote.
    pub knn: u32,
    /// Iterations the pair ran.
    pub iterations: usize,
    /// ||G(z*) - x||_2.
    pub l2: f32,
    /// ||G(z*) - x||_inf.
    pub linf: f32,
}

impl PairRow {
    /// The panel's verdict on this example.
    pub fn verdict(&self) -> PairVerdict {
        PairVerdict {
            f1_kept: self.f1_pred == self.keep,
            standard: self.standard == self.target,
            robust: self.robust == self.target,
            knn: self.knn == self.target,
        }
    }
}

/// A run of one attack mode over the pairs.
#[derive(Debug, Clone)]
pub struct ModeRun {
    /// One row per pair, in the pairs' order.
    pub rows: Vec<PairRow>,
    /// The final images G(z*), 784 grey values each.
    pub images: Vec<Vec<f32>>,
    /// Wall time of the attack and the verdicts.
    pub seconds: f64,
}

/// Where [`run_mode`] keeps its finished batches, so a run that is killed resumes from
/// the last finished batch: a JSON-lines file whose first line is `key` (everything the
/// results depend on: the mode's settings, the pairs, the batch size, the inputs) and
/// then one line per finished batch, appended and synced as each batch ends. A file
/// with another key is started afresh; a torn last line is recomputed.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The file.
    pub path: std::path::PathBuf,
    /// What the results depend on.
    pub key: String,
}

#[derive(Serialize, Deserialize)]
struct CheckpointHeader {
    key: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct FinishedBatch {
    pub start: usize,
    pub rows: Vec<PairRow>,
    pub images: Vec<Vec<f32>>,
    pub seconds: f64,
}

impl Checkpoint {
    /// The batches already finished under this key, in order (none when the file is
    /// missing or holds another key).
    fn load(&self, pairs: usize, batch: usize) -> Vec<FinishedBatch> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let mut lines = text.lines();
        let same_key = lines
            .next()
            .and_then(|l| serde_json::from_str::<CheckpointHeader>(l).ok())
            .is_some_and(|h| h.key == self.key);
        if !same_key {
            return Vec::new();
        }
        let mut done: Vec<FinishedBatch> = Vec::new();
        for line in lines {
            let Ok(b) = serde_json::from_str::<FinishedBatch>(line) else {
                break;
            };
            let start = done.len() * batch;
            let len = batch.min(pairs.saturating_sub(start));
            if b.start != start || len == 0 || b.rows.len() != len || b.images.len() != len {
                break;
            }
            done.push(b);
        }
        done
    }

    /// Rewrites the file with the header and `done`, then opens it for appending.
    fn open(&self, done: &[FinishedBatch]) -> Result<std::fs::File> {
        let io = |e: std::io::Error| crate::error::HarnessError::Io {
            path: self.path.clone(),
            source: e,
        };
        let mut text = json_line(&CheckpointHeader {
            key: self.key.clone(),
        });
        for b in done {
            text.push_str(&json_line(b));
        }
        crate::artifact::write_atomic(&self.path, text.as_bytes())?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)
    }

    fn append(&self, file: &mut std::fs::File, b: &FinishedBatch) -> Result<()> {
        use std::io::Write;
        let io = |e: std::io::Error| crate::error::HarnessError::Io {
            path: self.path.clone(),
            source: e,
        };
        file.write_all(json_line(b).as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)
    }
}

/// One JSON line (these plain structs always serialise; a non-finite float becomes
/// `null`, which fails to load, so that batch is recomputed).
fn json_line<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).unwrap_or_default();
    s.push('\n');
    s
}

/// One batch of an attack mode: pairs `start..start + batch` attacked, then judged.
pub(crate) fn mode_batch(
    inputs: &PanelInputs<'_>,
    test: &Dataset,
    pairs: &Type1Pairs,
    config: &LatentAttackConfig,
    start: usize,
    batch: usize,
    device: &Device,
) -> Result<FinishedBatch> {
    let t = std::time::Instant::now();
    let end = (start + batch.max(1)).min(pairs.len());
    let idx = &pairs.index[start..end];
    let keep = &pairs.keep[start..end];
    let targets = &pairs.target[start..end];
    let x = test
        .images_tensor(idx, PixelFormat::Gray, device)
        .map_err(models::ModelError::from)?;
    let (o, v) = attack_then_judge(
        inputs.svae,
        inputs.f1,
        &inputs.judges,
        &x,
        keep,
        targets,
        Some(inputs.means),
        config,
    )?;
    Ok(FinishedBatch {
        start,
        rows: judged_rows(inputs.f1, &o, &v, idx, keep, targets)?,
        images: pixel_rows(&o.images)?,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// Runs `config` over `pairs` in batches of `batch`, calling `advance` after each batch
/// with the pairs it finished (at the start, with those a checkpoint already held).
/// With a [`Checkpoint`], finished batches are kept and an interrupted run resumes;
/// the result is the same as an uninterrupted run's (every batch is attacked on its
/// own, deterministically), `seconds` summing the time of every part.
#[allow(clippy::too_many_arguments)]
pub fn run_mode(
    inputs: &PanelInputs<'_>,
    test: &Dataset,
    pairs: &Type1Pairs,
    config: &LatentAttackConfig,
    batch: usize,
    device: &Device,
    checkpoint: Option<&Checkpoint>,
    advance: &mut dyn FnMut(usize),
) -> Result<ModeRun> {
    let batch = batch.max(1);
    let t0 = std::time::Instant::now();
    let done = checkpoint.map_or_else(Vec::new, |c| c.load(pairs.len(), batch));
    let mut file = match checkpoint {
        Some(c) => Some(c.open(&done)?),
        None => None,
    };
    let mut rows = Vec::with_capacity(pairs.len());
    let mut images = Vec::with_capacity(pairs.len());
    let mut earlier = 0.0;
    for b in done {
        advance(b.rows.len());
        rows.extend(b.rows);
        images.extend(b.images);
        earlier += b.seconds;
    }
    for start in (rows.len()..pairs.len()).step_by(batch) {
        let finished = mode_batch(inputs, test, pairs, config, start, batch, device)?;
        if let (Some(c), Some(f)) = (checkpoint, file.as_mut()) {
            c.append(f, &finished)?;
        }
        advance(finished.rows.len());
        rows.extend(finished.rows);
        images.extend(finished.images);
    }
    Ok(ModeRun {
        rows,
        images,
        seconds: earlier + t0.elapsed().as_secs_f64(),
    })
}

/// One row per pair of a finished batch: f1's class and probability on the final image,
/// each judge's verdict, iterations and distances.
pub fn judged_rows(
    f1: &dyn Classifier,
    o: &LatentOutcome,
    v: &Verdicts,
    index: &[usize],
    keep: &[u32],
    targets: &[u32],
) -> Result<Vec<PairRow>> {
    let probs: Vec<Vec<f32>> = candle_nn::ops::softmax(&f1.logits(&o.images)?, D::Minus1)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    Ok((0..index.len())
        .map(|j| {
            let f1_pred = o.f1_pred[j];
            PairRow {
                index: index[j],
                keep: keep[j],
                target: targets[j],
                f1_pred,
                f1_prob: probs[j][f1_pred as usize],
                standard: v.standard[j],
                robust: v.robust[j],
                knn: v.knn[j],
                iterations: o.iterations[j],
                l2: o.l2[j],
                linf: o.linf[j],
            }
        })
        .collect())
}

/// The grey pixels of each image of a batch (`N x 1 x 28 x 28`), 784 per row.
pub fn pixel_rows(images: &candle_core::Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(images.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?)
}
