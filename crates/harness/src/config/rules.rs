//! The rules a configuration must satisfy: ranges of single settings, rules between
//! settings, and the rules that need the test split's size.

use super::ExperimentConfig;
use crate::error::{HarnessError, Result, Violation};

impl ExperimentConfig {
    /// Every rule this configuration breaks (empty when it is usable): ranges of single
    /// settings and rules between settings. Rules that need the test split's size are
    /// in [`Self::violations_for_test_split`].
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut rule = |ok: bool, field: &str, value: String, rule: &str| {
            if !ok {
                out.push(Violation {
                    field: field.to_string(),
                    value,
                    rule: rule.to_string(),
                });
            }
        };
        rule(
            i64::try_from(self.seed).is_ok(),
            "seed",
            self.seed.to_string(),
            "must be at most 9223372036854775807 (TOML integers are 64-bit signed: the \
             report prints the configuration as TOML, and a configuration file must be \
             able to give the seed back)",
        );
        rule(
            self.positive_class < 10,
            "positive_class",
            self.positive_class.to_string(),
            "must be an MNIST class, 0 to 9",
        );
        for (field, value) in [
            ("type2_images", self.type2_images),
            ("batch_size", self.batch_size),
            ("pgd_steps", self.pgd_steps),
            ("cw_images", self.cw_images),
            ("cw_steps", self.cw_steps),
            ("cw_binary_steps", self.cw_binary_steps),
            ("deepfool_steps", self.deepfool_steps),
            ("type1_iters", self.type1_iters),
            ("type1_batch", self.type1_batch),
            ("cam_images", self.cam_images),
            ("clever_images", self.clever_images),
            ("clever_ns", self.clever_ns),
            ("league_successes", self.league_successes),
            ("league_images", self.league_images),
            ("league_noise_samples", self.league_noise_samples),
            ("league_pixels_per_step", self.league_pixels_per_step),
        ] {
            rule(value > 0, field, value.to_string(), "must be at least 1");
        }
        rule(
            self.clever_nb >= 3,
            "clever_nb",
            self.clever_nb.to_string(),
            "must be at least 3 (the reverse Weibull fit needs 3 batch maxima)",
        );
        for (field, value) in [
            ("linf_eps", self.linf_eps),
            ("pgd_linf_step", self.pgd_linf_step),
            ("l2_eps", self.l2_eps),
            ("pgd_l2_step", self.pgd_l2_step),
            ("clever_radius_l2", self.clever_radius_l2),
            ("clever_radius_linf", self.clever_radius_linf),
            ("league_noise_radius", self.league_noise_radius),
        ] {
            rule(
                value.is_finite() && value > 0.0,
                field,
                value.to_string(),
                "must be a finite number above 0",
            );
        }
        rule(
            !(self.linf_eps.is_finite() && self.linf_eps > 1.0),
            "linf_eps",
            self.linf_eps.to_string(),
            "must be at most 1 (pixels lie in [0, 1])",
        );
        rule(
            !(self.league_noise_radius.is_finite() && self.league_noise_radius > 1.0),
            "league_noise_radius",
            self.league_noise_radius.to_string(),
            "must be at most 1 (pixels lie in [0, 1])",
        );
        let attacks: Vec<&str> = self.type2_attacks().iter().map(|a| a.name()).collect();
        let roc_attack = attacks.contains(&self.roc_type2_attack.as_str());
        rule(
            roc_attack,
            "roc_type2_attack",
            format!("{:?}", self.roc_type2_attack),
            &format!("must name a Type II attack: one of {}", attacks.join(", ")),
        );
        rule(
            self.roc_type2_attack != "cw-l2" || self.cw_images <= self.type2_images,
            "cw_images",
            self.cw_images.to_string(),
            &format!(
                "must be at most type2_images ({}) when roc_type2_attack is cw-l2 \
                 (CW-L2 attacks the first cw_images of the Type II images)",
                self.type2_images
            ),
        );
        out
    }

    /// [`Self::violations`] and the rules that need the size of the test split the
    /// evaluation runs on: `strip_index` and `eval_images` inside it.
    pub fn violations_for_test_split(&self, test_len: usize) -> Vec<Violation> {
        let mut out = self.violations();
        if self.strip_index >= test_len {
            out.push(Violation {
                field: "strip_index".into(),
                value: self.strip_index.to_string(),
                rule: format!(
                    "must be a test image index, below the test split's {test_len} images"
                ),
            });
        }
        if self.eval_images > test_len {
            out.push(Violation {
                field: "eval_images".into(),
                value: self.eval_images.to_string(),
                rule: format!(
                    "must be at most the test split's {test_len} images (0: all of them)"
                ),
            });
        }
        out
    }

    /// Refuses a configuration that breaks a rule ([`Self::violations`]), naming every
    /// broken rule.
    pub fn validate(&self) -> Result<()> {
        self.refuse(self.violations())
    }

    /// Refuses a configuration that breaks a rule or does not fit a test split of
    /// `test_len` images ([`Self::violations_for_test_split`]): run once the data is
    /// loaded, before any stage.
    pub fn validate_for_test_split(&self, test_len: usize) -> Result<()> {
        self.refuse(self.violations_for_test_split(test_len))
    }

    fn refuse(&self, violations: Vec<Violation>) -> Result<()> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(HarnessError::InvalidConfig {
                origin: format!("the configuration (profile `{}`)", self.profile),
                violations,
            })
        }
    }
}
