//! The experiment's configuration: plain serde structs with defaults in code, three
//! profiles (`quick`, `default`, `paper`), loadable from and printable as TOML.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};

/// Sizes and constants of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Profile name, for the report.
    pub profile: String,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// The positive class P of the ROC comparison (the seed uses 3).
    pub positive_class: u32,
    /// Test images the models are evaluated on (`0`: the whole test split).
    pub eval_images: usize,
    /// Type II attacks run on the first this many test images.
    pub type2_images: usize,
    /// Images per attack batch.
    pub batch_size: usize,
    /// FGSM / PGD-Linf radius (Madry MNIST: 0.3).
    pub linf_eps: f64,
    /// PGD-Linf step (0.01).
    pub pgd_linf_step: f64,
    /// PGD steps (40; 100 in the paper profile).
    pub pgd_steps: usize,
    /// PGD-L2 radius (2.0 for MNIST).
    pub l2_eps: f64,
    /// PGD-L2 step.
    pub pgd_l2_step: f64,
    /// CW-L2 runs on the first this many of the Type II images (it is the slow one:
    /// on MNIST it needs about 1,000 Adam steps per round to move saturated pixels).
    pub cw_images: usize,
    /// CW-L2 Adam steps per binary-search step.
    pub cw_steps: usize,
    /// CW-L2 binary-search steps (9 published).
    pub cw_binary_steps: usize,
    /// DeepFool's maximum steps (50).
    pub deepfool_steps: usize,
    /// The Type II attack whose examples replace the positives in the ROC comparison.
    pub roc_type2_attack: String,
    /// Type I attack: this many test images per class, each towards the 9 other classes
    /// (the strip image is always attacked).
    pub type1_per_class: usize,
    /// Type I attack: this many more test images of the positive class (the first ones
    /// not already chosen), so the ROC comparison has Type I examples made from positives.
    pub type1_positive_images: usize,
    /// Type I iterations at most per pair (the authors ran 20,000).
    pub type1_iters: usize,
    /// Test images whose transition strips are drawn (MNIST test image 0 is the study's 7).
    pub strip_index: usize,
    /// Images whose CAM change is measured per Type II attack.
    pub cam_images: usize,
    /// Images given a CLEVER score.
    pub clever_images: usize,
    /// CLEVER batches (Nb).
    pub clever_nb: usize,
    /// CLEVER samples per batch (Ns).
    pub clever_ns: usize,
    /// CLEVER L2 radius.
    pub clever_radius_l2: f64,
    /// CLEVER Linf radius.
    pub clever_radius_linf: f64,
}

impl ExperimentConfig {
    /// Fixtures only, minutes on 2 cores: what CI runs.
    pub fn quick() -> Self {
        Self {
            profile: "quick".into(),
            seed: 0,
            positive_class: 3,
            eval_images: 0,
            type2_images: 40,
            batch_size: 40,
            linf_eps: 0.3,
            pgd_linf_step: 0.01,
            pgd_steps: 40,
            l2_eps: 2.0,
            pgd_l2_step: 0.1,
            cw_images: 10,
            // 300 Adam steps x the published 9 rounds: 100 steps leave the saturated
            // background fixed (40 % of the 10 images broken), 300 break all 10.
            cw_steps: 300,
            cw_binary_steps: 9,
            deepfool_steps: 50,
            roc_type2_attack: "pgd-linf".into(),
            type1_per_class: 0,
            type1_positive_images: 1,
            type1_iters: 300,
            strip_index: 0,
            cam_images: 40,
            clever_images: 3,
            clever_nb: 20,
            clever_ns: 32,
            clever_radius_l2: 5.0,
            clever_radius_linf: 0.5,
        }
    }

    /// The full MNIST test set for the models, sized to finish in about 30 minutes on 2 cores.
    pub fn standard() -> Self {
        Self {
            profile: "default".into(),
            type2_images: 500,
            batch_size: 250,
            cw_images: 50,
            cw_steps: 1000,
            cw_binary_steps: 9,
            type1_per_class: 5,
            type1_positive_images: 5,
            type1_iters: 1000,
            cam_images: 200,
            clever_images: 10,
            clever_nb: 50,
            clever_ns: 64,
            ..Self::quick()
        }
    }

    /// The published iteration counts (hours on a CPU).
    pub fn paper() -> Self {
        Self {
            profile: "paper".into(),
            type2_images: 1000,
            pgd_steps: 100,
            cw_images: 1000,
            cw_steps: 1000,
            cw_binary_steps: 9,
            type1_per_class: 10,
            type1_iters: 20_000,
            clever_images: 20,
            clever_nb: 500,
            clever_ns: 1024,
            ..Self::standard()
        }
    }

    /// Reads a TOML file; keys left out take their values from `base`.
    pub fn from_toml_file(path: &Path, base: &Self) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| HarnessError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut merged =
            toml::Value::try_from(base).map_err(|e| HarnessError::Other(e.to_string()))?;
        let overrides: toml::Value = toml::from_str(&text).map_err(|e| HarnessError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let (Some(m), toml::Value::Table(o)) = (merged.as_table_mut(), overrides) {
            for (k, v) in o {
                m.insert(k, v);
            }
        }
        merged
            .try_into()
            .map_err(|e: toml::de::Error| HarnessError::Config {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }

    /// The configuration as TOML, for the report.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "type2_images = 7\npositive_class = 5\n").unwrap();
        let c = ExperimentConfig::from_toml_file(&p, &ExperimentConfig::quick()).unwrap();
        assert_eq!((c.type2_images, c.positive_class, c.pgd_steps), (7, 5, 40));
        let back: ExperimentConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        std::fs::write(&p, "no_such_key = 1\n").unwrap();
        let err = ExperimentConfig::from_toml_file(&p, &ExperimentConfig::quick())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.toml") && err.contains("no_such_key"),
            "{err}"
        );
    }
}
