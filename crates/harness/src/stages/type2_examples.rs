//! The few Type II examples kept for `type2_examples.png`: the first test images each
//! attack reached, with what f1 decides on the clean and on the attacked image and the
//! CAM of that class, so the figure is drawn from the stages'
//! results alone, also when they are loaded from the stage cache.

use attacks::AttackOutcome;
use candle_core::{DType, Tensor, D};
use models::{Classifier, GapCnn};
use serde::{Deserialize, Serialize};

use crate::cam_change::{cam_28, rows};
use crate::error::Result;

/// Test images (the first ones attacked) shown in the figure, one row each.
pub const EXAMPLE_ROWS: usize = 3;

/// What f1 decides on one image: its arg-max class, that class's probability and the
/// 28 x 28 CAM of the class (bilinear, min-max), row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// f1's arg-max class.
    pub class: u32,
    /// f1's probability of that class.
    pub probability: f32,
    /// CAM of that class, 28 x 28.
    pub map: Vec<f32>,
}

/// One adversarial example kept for the figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type2Example {
    /// Test index of the attacked image.
    pub index: usize,
    /// Its true label.
    pub label: u32,
    /// The attack flipped f1's (correct) decision.
    pub success: bool,
    /// L2 of the perturbation.
    #[serde(with = "crate::nan::float")]
    pub l2: f64,
    /// Linf of the perturbation.
    #[serde(with = "crate::nan::float")]
    pub linf: f64,
    /// The clean image, 28 x 28 grey in [0, 1], row-major.
    pub clean_pixels: Vec<f32>,
    /// The adversarial image, 28 x 28 grey in [0, 1], row-major.
    pub pixels: Vec<f32>,
    /// f1 on the clean image.
    pub clean: Decision,
    /// f1 on the adversarial image.
    pub adversarial: Decision,
}

/// The first `count` examples of one attack batch (`clean` its images, `indices` and
/// `labels` their test indices and labels), each decided by `f1`.
pub fn examples_of(
    f1: &GapCnn,
    clean: &Tensor,
    outcome: &AttackOutcome,
    indices: &[usize],
    labels: &[u32],
    count: usize,
) -> Result<Vec<Type2Example>> {
    let take = count.min(indices.len()).min(outcome.len());
    if take == 0 {
        return Ok(Vec::new());
    }
    let clean = clean.narrow(0, 0, take)?;
    let adversarial = outcome.adversarial.narrow(0, 0, take)?;
    let clean_decided = decided(f1, &clean)?;
    let adversarial_decided = decided(f1, &adversarial)?;
    let clean_pixels = rows(&clean)?;
    let pixels = rows(&adversarial)?;
    Ok(clean_decided
        .into_iter()
        .zip(adversarial_decided)
        .zip(clean_pixels.into_iter().zip(pixels))
        .enumerate()
        .map(|(j, ((c, a), (cp, p)))| Type2Example {
            index: indices[j],
            label: labels[j],
            success: outcome.success[j],
            l2: outcome.l2[j],
            linf: outcome.linf[j],
            clean_pixels: cp,
            pixels: p,
            clean: c,
            adversarial: a,
        })
        .collect())
}

/// What f1 decides on each image of `x` (`N x 1 x 28 x 28`).
fn decided(f1: &GapCnn, x: &Tensor) -> Result<Vec<Decision>> {
    let logits = f1.logits(x)?;
    let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    let probs: Vec<Vec<f32>> = candle_nn::ops::softmax(&logits, D::Minus1)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    let classes: Vec<usize> = pred.iter().map(|&c| c as usize).collect();
    let maps = rows(&cam_28(f1, x, &classes)?.maps)?;
    Ok(pred
        .iter()
        .zip(probs)
        .zip(maps)
        .map(|((&class, p), map)| Decision {
            class,
            probability: p[class as usize],
            map,
        })
        .collect())
}
