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
        "type1_batch",
        "cam_images",
        "clever_images",
        "clever_ns",
        "league_successes",
        "league_images",
        "league_noise_samples",
        "league_pixels_per_step",
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
        "league_noise_radius",
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
    assert_eq!(
        flagged("league_noise_radius = 1.5\n"),
        ["league_noise_radius"]
    );
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

#[test]
fn a_seed_toml_cannot_hold_is_refused_and_the_largest_it_can_round_trips() {
    let largest = ExperimentConfig {
        seed: i64::MAX as u64,
        ..ExperimentConfig::quick()
    };
    assert_eq!(largest.violations(), []);
    let back: ExperimentConfig = toml::from_str(&largest.to_toml()).unwrap();
    assert_eq!(back.seed, i64::MAX as u64);
    let too_large = ExperimentConfig {
        seed: i64::MAX as u64 + 1,
        ..ExperimentConfig::quick()
    };
    let fields: Vec<String> = too_large
        .violations()
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["seed"]);
    let err = too_large.validate().unwrap_err().to_string();
    assert!(
        err.contains("`seed` = 9223372036854775808: must be at most"),
        "{err}"
    );
}

const KEYS: [&str; 32] = [
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
    "type1_batch",
    "strip_index",
    "cam_images",
    "clever_images",
    "clever_nb",
    "clever_ns",
    "clever_radius_l2",
    "clever_radius_linf",
    "league_successes",
    "league_images",
    "league_noise_samples",
    "league_noise_radius",
    "league_pixels_per_step",
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
        "linf_eps"
        | "pgd_linf_step"
        | "l2_eps"
        | "pgd_l2_step"
        | "clever_radius_l2"
        | "clever_radius_linf"
        | "league_noise_radius" => v.is_float() || v.is_integer(),
        _ => v.is_integer(),
    }
}

proptest! {
    #![proptest_config(test_support::seeded(300))]

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
