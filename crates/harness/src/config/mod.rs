//! The experiment's configuration: plain serde structs with defaults in code, three
//! profiles (`quick`, `default`, `paper`), loadable from and printable as TOML.

use std::path::Path;

use serde::{Deserialize, Serialize};

use attacks::{Attack, CarliniWagnerL2, DeepFool, Fgsm, PgdConfig, PgdL2, PgdLinf};

use crate::error::{HarnessError, Result, Violation};

mod rules;
#[cfg(test)]
mod tests;

/// A TOML value for an error message, cut short when long.
fn shown(value: &toml::Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}

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
    /// Type I pairs attacked together (a batch; the unit a shard computes). A model
    /// computes a row to the same bits in any batch (the models' `batch_independence`
    /// tests), so the results should not depend on it; units stay whole batches all the
    /// same.
    #[serde(default = "default_type1_batch")]
    pub type1_batch: usize,
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
    /// The explanation league: the first this many successes of each Type II attack
    /// (in test-image order) are explained; Type I explains every consensus success of
    /// the constrained attack.
    pub league_successes: usize,
    /// The league's clean population: the first this many test images, for
    /// Max-Sensitivity, the Local Lipschitz Estimate and the deletion / insertion AUC.
    pub league_images: usize,
    /// Noise samples per clean image for Max-Sensitivity and the Lipschitz estimate.
    pub league_noise_samples: usize,
    /// Their Linf radius r (uniform in the ball, clipped to [0, 1]; 0.05-0.1 published).
    pub league_noise_radius: f64,
    /// Pixels removed (deletion) or added (insertion) per step of the faithfulness curves.
    pub league_pixels_per_step: usize,
}

fn default_type1_batch() -> usize {
    90
}

impl ExperimentConfig {
    /// Fixtures only, sized for CI (run times: docs/PERFORMANCE.md).
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
            type1_batch: 90,
            strip_index: 0,
            cam_images: 40,
            clever_images: 3,
            clever_nb: 20,
            clever_ns: 32,
            clever_radius_l2: 5.0,
            clever_radius_linf: 0.5,
            league_successes: 4,
            league_images: 4,
            league_noise_samples: 3,
            league_noise_radius: 0.05,
            league_pixels_per_step: 28,
        }
    }

    /// The full MNIST test set for the models, sized for one 2-core machine (run times:
    /// docs/PERFORMANCE.md).
    pub fn standard() -> Self {
        Self {
            profile: "default".into(),
            type2_images: 500,
            batch_size: 250,
            // 250: the explanation league needs >= 200 CW-L2 successes.
            cw_images: 250,
            cw_steps: 1000,
            cw_binary_steps: 9,
            type1_per_class: 5,
            type1_positive_images: 5,
            type1_iters: 1000,
            type1_batch: 90,
            cam_images: 200,
            clever_images: 10,
            clever_nb: 50,
            clever_ns: 64,
            league_successes: 250,
            league_images: 200,
            league_noise_samples: 10,
            ..Self::quick()
        }
    }

    /// The published iteration counts (many times the default profile's work).
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
            type1_batch: 90,
            clever_images: 20,
            clever_nb: 500,
            clever_ns: 1024,
            ..Self::standard()
        }
    }

    /// Reads a TOML file; keys left out take their values from `base`. The result is
    /// checked by [`Self::validate`]: a key that is not a setting, a value of the wrong
    /// type or one that breaks a rule is an error naming the file, the key, the value and
    /// the rule (every such problem at once), before any work starts.
    pub fn from_toml_file(path: &Path, base: &Self) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| HarnessError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, path, base)
    }

    /// [`Self::from_toml_file`] on text already read; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path, base: &Self) -> Result<Self> {
        let overrides: toml::Table = toml::from_str(text).map_err(|e| HarnessError::Config {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        let defaults =
            toml::Table::try_from(base).map_err(|e| HarnessError::Other(e.to_string()))?;
        let mut violations = Vec::new();
        let mut merged = defaults.clone();
        for (key, value) in overrides {
            if !defaults.contains_key(&key) {
                let mut known: Vec<&str> = defaults.keys().map(String::as_str).collect();
                known.sort_unstable();
                violations.push(Violation {
                    field: key,
                    value: shown(&value),
                    rule: format!("not a setting (the settings: {})", known.join(", ")),
                });
                continue;
            }
            // Each key is tried alone on the base, so a type error names its key.
            let mut alone = defaults.clone();
            alone.insert(key.clone(), value.clone());
            match alone.try_into::<Self>() {
                Ok(_) => {
                    merged.insert(key, value);
                }
                Err(e) => violations.push(Violation {
                    value: shown(&value),
                    rule: format!("wrong type or out of range ({})", e.message().trim()),
                    field: key,
                }),
            }
        }
        let invalid = |violations| HarnessError::InvalidConfig {
            origin: origin.display().to_string(),
            violations,
        };
        // The keys that fit their types are checked against the rules too, so one run
        // reports every problem.
        let config: Self =
            merged
                .try_into()
                .map_err(|e: toml::de::Error| HarnessError::Config {
                    path: origin.to_path_buf(),
                    message: e.to_string(),
                })?;
        for v in config.violations() {
            if !violations.iter().any(|known| known.field == v.field) {
                violations.push(v);
            }
        }
        if violations.is_empty() {
            Ok(config)
        } else {
            Err(invalid(violations))
        }
    }

    /// The configuration as TOML, for the report.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The Type II attacks this configuration runs, in the order of the report.
    pub fn type2_attacks(&self) -> Vec<Box<dyn Attack>> {
        let c = self;
        let pgd = |eps, step_size| PgdConfig {
            eps,
            step_size,
            steps: c.pgd_steps,
            random_start: true,
            restarts: 1,
            seed: c.seed,
        };
        vec![
            Box::new(Fgsm { eps: c.linf_eps }),
            Box::new(PgdLinf(pgd(c.linf_eps, c.pgd_linf_step))),
            Box::new(PgdL2(pgd(c.l2_eps, c.pgd_l2_step))),
            Box::new(CarliniWagnerL2 {
                steps: c.cw_steps,
                binary_search_steps: c.cw_binary_steps,
                ..CarliniWagnerL2::default()
            }),
            Box::new(DeepFool {
                max_steps: c.deepfool_steps,
                ..DeepFool::default()
            }),
        ]
    }
}
