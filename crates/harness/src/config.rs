//! The experiment's configuration: plain serde structs with defaults in code, three
//! profiles (`quick`, `default`, `paper`), loadable from and printable as TOML.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};

/// One rule a configuration breaks: the setting, its value and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The setting (the TOML key).
    pub field: String,
    /// Its value, as written.
    pub value: String,
    /// What it must be.
    pub rule: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` = {}: {}", self.field, self.value, self.rule)
    }
}

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
            ("cam_images", self.cam_images),
            ("clever_images", self.clever_images),
            ("clever_ns", self.clever_ns),
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
        let attacks: Vec<&str> = crate::runner::type2_attacks(self)
            .iter()
            .map(|a| a.name())
            .collect();
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

    /// The configuration as TOML, for the report.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(text: &str) -> Result<ExperimentConfig> {
        ExperimentConfig::from_toml_str(text, Path::new("bad.toml"), &ExperimentConfig::quick())
    }

    /// The settings a loading error flags, in order.
    fn flagged(text: &str) -> Vec<String> {
        match load(text) {
            Err(HarnessError::InvalidConfig { origin, violations }) => {
                assert_eq!(origin, "bad.toml");
                violations.into_iter().map(|v| v.field).collect()
            }
            other => panic!("{text:?} gave {other:?}, expected an invalid configuration"),
        }
    }

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
            err.contains("c.toml") && err.contains("no_such_key") && err.contains("not a setting"),
            "{err}"
        );
        let err = ExperimentConfig::from_toml_file(&dir.path().join("nope.toml"), &c)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.toml"), "{err}");
    }

    #[test]
    fn the_profiles_are_valid() {
        for c in [
            ExperimentConfig::quick(),
            ExperimentConfig::standard(),
            ExperimentConfig::paper(),
        ] {
            assert_eq!(c.violations(), [], "{}", c.profile);
            // The fixtures' test split has 500 images, full MNIST's 10,000.
            assert_eq!(c.violations_for_test_split(500), [], "{}", c.profile);
        }
    }

    #[test]
    fn each_range_is_checked_and_named() {
        let err = load("positive_class = 12\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "bad.toml: invalid configuration: `positive_class` = 12: must be an MNIST class, 0 to 9"
        );
        assert_eq!(load("positive_class = 9\n").unwrap().positive_class, 9);
        for key in [
            "type2_images",
            "batch_size",
            "pgd_steps",
            "cw_images",
            "cw_steps",
            "cw_binary_steps",
            "deepfool_steps",
            "type1_iters",
            "cam_images",
            "clever_images",
            "clever_ns",
        ] {
            assert_eq!(flagged(&format!("{key} = 0\n")), [key]);
            assert!(load(&format!("{key} = 1\n")).is_ok(), "{key} = 1");
        }
        // Zero means "all" or "none" for these.
        for key in ["eval_images", "type1_per_class", "type1_positive_images"] {
            assert!(load(&format!("{key} = 0\n")).is_ok(), "{key} = 0");
        }
        assert_eq!(flagged("clever_nb = 2\n"), ["clever_nb"]);
        assert_eq!(load("clever_nb = 3\n").unwrap().clever_nb, 3);
        for key in [
            "linf_eps",
            "pgd_linf_step",
            "l2_eps",
            "pgd_l2_step",
            "clever_radius_l2",
            "clever_radius_linf",
        ] {
            for bad in ["0.0", "-0.1", "nan", "inf", "-inf"] {
                assert_eq!(flagged(&format!("{key} = {bad}\n")), [key], "{key} = {bad}");
            }
            assert!(load(&format!("{key} = 0.5\n")).is_ok(), "{key} = 0.5");
        }
        let err = load("linf_eps = nan\n").unwrap_err().to_string();
        assert!(
            err.contains("`linf_eps` = NaN: must be a finite number above 0"),
            "{err}"
        );
        assert_eq!(flagged("linf_eps = 1.5\n"), ["linf_eps"]);
        let err = load("roc_type2_attack = \"pgd\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`roc_type2_attack` = \"pgd\"")
                && err.contains("fgsm, pgd-linf, pgd-l2, cw-l2, deepfool"),
            "{err}"
        );
    }

    #[test]
    fn cross_field_rules_and_several_at_once() {
        // CW on more images than the Type II attacks is refused only where the ROC uses
        // CW's examples.
        assert!(load("type2_images = 5\ncw_images = 6\n").is_ok());
        let err = load("type2_images = 5\ncw_images = 6\nroc_type2_attack = \"cw-l2\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "`cw_images` = 6: must be at most type2_images (5) when roc_type2_attack is cw-l2"
            ),
            "{err}"
        );
        assert!(load("type2_images = 6\ncw_images = 6\nroc_type2_attack = \"cw-l2\"\n").is_ok());
        // Every problem is listed, in the rules' order.
        assert_eq!(
            flagged("positive_class = 10\ntype2_images = 0\nl2_eps = -1.0\n"),
            ["positive_class", "type2_images", "l2_eps"]
        );
    }

    #[test]
    fn types_and_unknown_keys_are_named() {
        let err = load("positive_class = -1\n").unwrap_err().to_string();
        assert!(
            err.contains("`positive_class` = -1: wrong type or out of range"),
            "{err}"
        );
        let err = load("type2_images = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("`type2_images` = \"many\""), "{err}");
        assert_eq!(
            flagged("seed = 1.5\nbatch_size = true\ncw_step = 3\n"),
            ["batch_size", "cw_step", "seed"]
        );
        // Range problems are reported beside type problems.
        assert_eq!(
            flagged("type2_images = \"many\"\nlinf_eps = nan\n"),
            ["type2_images", "linf_eps"]
        );
        // Integers are taken for real-valued settings.
        assert_eq!(load("l2_eps = 1\n").unwrap().l2_eps, 1.0);
        // Not TOML at all: the parser's message, with the file and the line.
        match load("positive_class = = 3\n") {
            Err(HarnessError::Config { path, message }) => {
                assert_eq!(path, Path::new("bad.toml"));
                assert!(message.contains("line 1"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_test_split_bounds_the_indices() {
        let c = ExperimentConfig {
            strip_index: 500,
            eval_images: 501,
            ..ExperimentConfig::quick()
        };
        assert_eq!(c.violations(), []);
        let fields: Vec<String> = c
            .violations_for_test_split(500)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["strip_index", "eval_images"]);
        assert_eq!(c.violations_for_test_split(502), []);
        let err = c.validate_for_test_split(500).unwrap_err().to_string();
        assert!(
            err.starts_with("the configuration (profile `quick`): invalid configuration: `strip_index` = 500: must be a test image index, below the test split's 500 images"),
            "{err}"
        );
        assert!(ExperimentConfig::quick().validate().is_ok());
    }

    const KEYS: [&str; 26] = [
        "profile",
        "seed",
        "positive_class",
        "eval_images",
        "type2_images",
        "batch_size",
        "linf_eps",
        "pgd_linf_step",
        "pgd_steps",
        "l2_eps",
        "pgd_l2_step",
        "cw_images",
        "cw_steps",
        "cw_binary_steps",
        "deepfool_steps",
        "roc_type2_attack",
        "type1_per_class",
        "type1_positive_images",
        "type1_iters",
        "strip_index",
        "cam_images",
        "clever_images",
        "clever_nb",
        "clever_ns",
        "clever_radius_l2",
        "clever_radius_linf",
    ];

    #[test]
    fn the_key_list_is_every_setting() {
        let table = toml::Table::try_from(ExperimentConfig::quick()).unwrap();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut expected = KEYS.to_vec();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    fn value() -> impl Strategy<Value = toml::Value> {
        let leaf = prop_oneof![
            (-3i64..20).prop_map(toml::Value::Integer),
            any::<i64>().prop_map(toml::Value::Integer),
            (-0.5f64..2.0).prop_map(toml::Value::Float),
            any::<f64>().prop_map(toml::Value::Float),
            Just(toml::Value::Float(f64::NAN)),
            Just(toml::Value::Float(f64::INFINITY)),
            any::<bool>().prop_map(toml::Value::Boolean),
            prop::sample::select(vec!["cw-l2", "pgd-linf", "fgsm", "", "quick"])
                .prop_map(|s| toml::Value::String(s.into())),
            ".{0,12}".prop_map(toml::Value::String),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
                prop::collection::btree_map("[a-z_]{1,6}", inner, 0..3)
                    .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(KEYS.to_vec()).prop_map(String::from),
            1 => "[a-z_]{1,14}",
        ]
    }

    /// Whether a TOML value has the kind a setting takes (the range aside).
    fn kind_fits(key: &str, v: &toml::Value) -> bool {
        match key {
            "profile" | "roc_type2_attack" => v.is_str(),
            "linf_eps" | "pgd_linf_step" | "l2_eps" | "pgd_l2_step" | "clever_radius_l2"
            | "clever_radius_linf" => v.is_float() || v.is_integer(),
            _ => v.is_integer(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            match load(&text) {
                Ok(c) => prop_assert_eq!(c.violations(), []),
                Err(e) => prop_assert!(e.to_string().starts_with("bad.toml: "), "{}", e),
            }
        }

        #[test]
        fn toml_like_text_never_panics(
            lines in prop::collection::vec(
                (key(), prop::sample::select(vec![" = ", "=", " == ", " = [", "."]), ".{0,10}"),
                0..6,
            )
        ) {
            let text: String = lines.iter().map(|(k, eq, v)| format!("{k}{eq}{v}\n")).collect();
            match load(&text) {
                Ok(c) => prop_assert_eq!(c.violations(), []),
                Err(e) => prop_assert!(e.to_string().starts_with("bad.toml: "), "{}", e),
            }
        }

        #[test]
        fn tables_of_the_real_keys_load_or_name_the_problem(
            table in prop::collection::btree_map(key(), value(), 0..6)
        ) {
            let table: toml::Table = table.into_iter().collect();
            let text = toml::to_string(&table);
            prop_assume!(text.is_ok());
            let text = text.unwrap();
            match load(&text) {
                Ok(c) => {
                    prop_assert_eq!(c.violations(), []);
                    // Every override was applied as written.
                    let got = toml::Table::try_from(&c).unwrap();
                    for (k, v) in &table {
                        let g = &got[k];
                        match (g, v) {
                            (toml::Value::Float(a), toml::Value::Integer(b)) => {
                                prop_assert_eq!(*a, *b as f64)
                            }
                            _ => prop_assert_eq!(g, v, "{}", k),
                        }
                    }
                }
                Err(HarnessError::InvalidConfig { origin, violations }) => {
                    prop_assert_eq!(origin, "bad.toml");
                    prop_assert!(!violations.is_empty());
                    for v in &violations {
                        prop_assert!(
                            table.contains_key(&v.field) || KEYS.contains(&v.field.as_str()),
                            "{}", v
                        );
                        prop_assert!(!v.rule.is_empty());
                    }
                    // A key that is not a setting, or a value of the wrong kind, is named.
                    for (k, v) in &table {
                        if !KEYS.contains(&k.as_str()) || !kind_fits(k, v) {
                            prop_assert!(
                                violations.iter().any(|x| &x.field == k),
                                "{} = {} not flagged in {:?}", k, v, violations
                            );
                        }
                    }
                }
                Err(e) => prop_assert!(false, "unexpected error kind: {}", e),
            }
        }
    }
}
