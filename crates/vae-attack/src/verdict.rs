//! Judging Type I examples (ALGORITHMS.md section 10): a panel of judges, none of which
//! takes part in a judge-free attack, gives its verdict on the final images only.

use candle_core::Tensor;
use models::{Classifier, Svae};

use crate::attack::{type_one_attack, type_one_attack_judge_free, LatentOutcome};
use crate::config::{LatentAttackConfig, Stop};
use crate::error::Result;
use crate::means::ClassMeans;

/// The panel: the standard oracle, an adversarially trained oracle and a k-nearest
/// neighbour vote over the training images.
#[derive(Clone, Copy)]
pub struct Judges<'a> {
    /// The standard oracle (the study's judge; the paper's `success` uses it).
    pub standard: &'a dyn Classifier,
    /// The robust oracle.
    pub robust: &'a dyn Classifier,
    /// The kNN judge.
    pub knn: &'a dyn Classifier,
}

/// Each judge's class for each image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdicts {
    /// The standard oracle's arg-max.
    pub standard: Vec<u32>,
    /// The robust oracle's arg-max.
    pub robust: Vec<u32>,
    /// The kNN vote.
    pub knn: Vec<u32>,
}

/// The judges' verdicts on one Type I example, against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairVerdict {
    /// f1 keeps the label it gave the clean image.
    pub f1_kept: bool,
    /// The standard oracle says the target.
    pub standard: bool,
    /// The robust oracle says the target.
    pub robust: bool,
    /// The kNN vote says the target.
    pub knn: bool,
}

impl PairVerdict {
    /// The paper's success: f1 keeps its label and the standard oracle says the target.
    pub fn success(&self) -> bool {
        self.f1_kept && self.standard
    }

    /// f1 keeps its label and the robust oracle says the target.
    pub fn robust_success(&self) -> bool {
        self.f1_kept && self.robust
    }

    /// f1 keeps its label and the kNN vote says the target.
    pub fn knn_success(&self) -> bool {
        self.f1_kept && self.knn
    }

    /// The consensus: f1 keeps its label while both oracles say the target.
    pub fn consensus(&self) -> bool {
        self.f1_kept && self.standard && self.robust
    }
}

impl Judges<'_> {
    /// Every judge's class for `images`.
    pub fn judge(&self, images: &Tensor) -> Result<Verdicts> {
        Ok(Verdicts {
            standard: self.standard.predict(images)?,
            robust: self.robust.predict(images)?,
            knn: self.knn.predict(images)?,
        })
    }
}

/// Runs a Type I attack on a batch of pairs, then the panel on its final images. With
/// [`Stop::Oracle`] (the study's reproduction) the standard oracle also stops the attack,
/// as the paper's mode does; with any other stop rule the attack runs judge-free and no
/// judge is asked before it has returned.
#[allow(clippy::too_many_arguments)]
pub fn attack_then_judge(
    svae: &Svae,
    f1: &dyn Classifier,
    judges: &Judges<'_>,
    images: &Tensor,
    keep: &[u32],
    targets: &[u32],
    means: Option<&ClassMeans>,
    config: &LatentAttackConfig,
) -> Result<(LatentOutcome, Verdicts)> {
    let outcome = if config.stop == Stop::Oracle {
        type_one_attack(
            svae,
            f1,
            judges.standard,
            images,
            keep,
            targets,
            means,
            config,
        )?
    } else {
        type_one_attack_judge_free(svae, f1, images, keep, targets, means, config)?
    };
    let verdicts = judges.judge(&outcome.images)?;
    Ok((outcome, verdicts))
}
