//! Fuzz harness of the TOML configuration (issue #24), through the public API only
//! (`ExperimentConfig::from_toml_str`, `to_toml`, `violations`, `validate`): random
//! valid configurations; override files over random valid bases that mix valid values
//! with wrong types, out-of-range, negative, huge, NaN and infinite values, unknown and
//! duplicated keys; a valid configuration's own TOML put through byte edits (the shared
//! `test_support::ByteEdit`); and arbitrary bytes read as text.
//!
//! The properties: never a panic; a valid configuration passes its own rules and
//! round-trips through `to_toml` and `from_toml_str` to an equal one. Any text the TOML
//! parser reads as a table is judged by an independent statement of the rules (each
//! setting's type and range, the cross-setting rule): it is accepted exactly when they
//! find nothing, and then as the base with the text's settings applied (which again
//! passes every rule and round-trips); otherwise refused as an invalid configuration of
//! the file, naming exactly the offending settings, each once. Text that is not TOML is
//! refused naming the file and the line; a duplicated key is named.
//!
//! CI runs a bounded number of cases from a fixed seed (`test_support::fuzz_config`):
//! `FUZZ_CASES` raises the count for a long local run,
//! `FUZZ_CASES=100000 cargo test --release -p harness --test fuzz_config`, and
//! `FUZZ_SEED` changes the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use harness::{ExperimentConfig, HarnessError, Violation};
use proptest::prelude::*;
use test_support::{byte_edit, fuzz_config, no_panic};

const ORIGIN: &str = "fuzz.toml";
const ATTACKS: [&str; 5] = ["fgsm", "pgd-linf", "pgd-l2", "cw-l2", "deepfool"];

// ---- The rules, stated independently of the code under test ----------------------------

/// The type and range of a setting.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// Any string.
    Text,
    /// One of [`ATTACKS`].
    Attack,
    /// A `u64`.
    Seed,
    /// A `u32` below 10.
    Class,
    /// A `usize` at least this.
    AtLeast(i64),
    /// A finite number above 0 (and at most 1 when `unit`); integers are taken.
    Positive { unit: bool },
}

const SETTINGS: [(&str, Rule); 32] = [
    ("profile", Rule::Text),
    ("seed", Rule::Seed),
    ("positive_class", Rule::Class),
    ("eval_images", Rule::AtLeast(0)),
    ("type2_images", Rule::AtLeast(1)),
    ("batch_size", Rule::AtLeast(1)),
    ("linf_eps", Rule::Positive { unit: true }),
    ("pgd_linf_step", Rule::Positive { unit: false }),
    ("pgd_steps", Rule::AtLeast(1)),
    ("l2_eps", Rule::Positive { unit: false }),
    ("pgd_l2_step", Rule::Positive { unit: false }),
    ("cw_images", Rule::AtLeast(1)),
    ("cw_steps", Rule::AtLeast(1)),
    ("cw_binary_steps", Rule::AtLeast(1)),
    ("deepfool_steps", Rule::AtLeast(1)),
    ("roc_type2_attack", Rule::Attack),
    ("type1_per_class", Rule::AtLeast(0)),
    ("type1_positive_images", Rule::AtLeast(0)),
    ("type1_iters", Rule::AtLeast(1)),
    ("type1_batch", Rule::AtLeast(1)),
    ("strip_index", Rule::AtLeast(0)),
    ("cam_images", Rule::AtLeast(1)),
    ("clever_images", Rule::AtLeast(1)),
    ("clever_nb", Rule::AtLeast(3)),
    ("clever_ns", Rule::AtLeast(1)),
    ("clever_radius_l2", Rule::Positive { unit: false }),
    ("clever_radius_linf", Rule::Positive { unit: false }),
    ("league_successes", Rule::AtLeast(1)),
    ("league_images", Rule::AtLeast(1)),
    ("league_noise_samples", Rule::AtLeast(1)),
    ("league_noise_radius", Rule::Positive { unit: true }),
    ("league_pixels_per_step", Rule::AtLeast(1)),
];

fn rule_of(key: &str) -> Option<Rule> {
    SETTINGS.iter().find(|(k, _)| *k == key).map(|(_, r)| *r)
}

/// Whether a TOML value has the setting's type (`None`: it has not), and then whether
/// it is in range.
fn judge(rule: Rule, v: &toml::Value) -> Option<bool> {
    use toml::Value::*;
    match (rule, v) {
        (Rule::Text, String(_)) => Some(true),
        (Rule::Attack, String(s)) => Some(ATTACKS.contains(&s.as_str())),
        (Rule::Seed, Integer(i)) => (*i >= 0).then_some(true),
        (Rule::Class, Integer(i)) => u32::try_from(*i).ok().map(|c| c < 10),
        (Rule::AtLeast(min), Integer(i)) => (*i >= 0).then_some(*i >= min),
        (Rule::Positive { unit }, Integer(i)) => Some(*i > 0 && (!unit || *i <= 1)),
        (Rule::Positive { unit }, Float(f)) => {
            Some(f.is_finite() && *f > 0.0 && (!unit || *f <= 1.0))
        }
        _ => None,
    }
}

/// The configuration as a TOML table (every setting).
fn table(c: &ExperimentConfig) -> toml::Table {
    toml::Table::try_from(c).unwrap()
}

/// What loading `overrides` over `base` must give: the configuration, or the settings
/// the refusal must name.
fn oracle(
    base: &ExperimentConfig,
    overrides: &toml::Table,
) -> Result<ExperimentConfig, BTreeSet<String>> {
    let mut flagged = BTreeSet::new();
    let mut merged = table(base);
    for (k, v) in overrides {
        let Some(rule) = rule_of(k) else {
            flagged.insert(k.clone());
            continue;
        };
        let Some(in_range) = judge(rule, v) else {
            flagged.insert(k.clone());
            continue;
        };
        let v = match (rule, v) {
            (Rule::Positive { .. }, toml::Value::Integer(i)) => toml::Value::Float(*i as f64),
            (_, v) => v.clone(),
        };
        merged.insert(k.clone(), v);
        if !in_range {
            flagged.insert(k.clone());
        }
    }
    let c: ExperimentConfig = merged.try_into().unwrap();
    // The cross-setting rule: CW-L2 on at most the Type II images when the ROC uses it.
    if c.roc_type2_attack == "cw-l2" && c.cw_images > c.type2_images {
        flagged.insert("cw_images".into());
    }
    if flagged.is_empty() {
        Ok(c)
    } else {
        Err(flagged)
    }
}

// ---- The properties --------------------------------------------------------------------

fn load(text: &str, base: &ExperimentConfig) -> Result<ExperimentConfig, HarnessError> {
    ExperimentConfig::from_toml_str(text, Path::new(ORIGIN), base)
}

/// An accepted configuration: no rule broken, and a TOML round trip to itself over any
/// base.
fn sound(c: &ExperimentConfig, other_base: &ExperimentConfig) -> Result<(), TestCaseError> {
    prop_assert_eq!(c.violations(), Vec::<Violation>::new());
    prop_assert!(c.validate().is_ok());
    let text = c.to_toml();
    prop_assert!(!text.is_empty());
    let back = load(&text, other_base).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    prop_assert_eq!(&back, c, "{}", text);
    // The split-size rules hold exactly when the indices fit the split.
    for len in [1usize, 500, 10_000] {
        let fields: Vec<String> = c
            .violations_for_test_split(len)
            .into_iter()
            .map(|v| v.field)
            .collect();
        let mut want = Vec::new();
        if c.strip_index >= len {
            want.push("strip_index");
        }
        if c.eval_images > len {
            want.push("eval_images");
        }
        prop_assert_eq!(fields, want);
    }
    Ok(())
}

/// A refusal names the file and exactly the settings `want`, each once, each with its
/// rule.
fn refused_naming(
    text: &str,
    violations: &[Violation],
    want: &BTreeSet<String>,
) -> Result<(), TestCaseError> {
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    let set: BTreeSet<String> = fields.iter().map(|f| f.to_string()).collect();
    prop_assert_eq!(
        set.len(),
        fields.len(),
        "a setting named twice: {:?}",
        fields
    );
    prop_assert_eq!(&set, want, "{:?}", text);
    for v in violations {
        prop_assert!(!v.rule.is_empty());
        prop_assert!(v.to_string().contains(&format!("`{}`", v.field)), "{}", v);
    }
    Ok(())
}

/// `text` loaded over `base`, checked: never a panic; when it is TOML, the oracle's
/// verdict (the configuration it gives, or a refusal naming exactly its settings); when
/// it is not, an error naming the file and a line of the text.
fn check_text(
    text: &str,
    base: &ExperimentConfig,
    other_base: &ExperimentConfig,
) -> Result<(), TestCaseError> {
    let got = no_panic(|| format!("{text:?}"), || load(text, base))?;
    match (&got, toml::from_str::<toml::Table>(text)) {
        (_, Ok(overrides)) => match (&got, oracle(base, &overrides)) {
            (Ok(c), Ok(want)) => {
                prop_assert_eq!(c, &want, "{:?}", text);
                sound(c, other_base)?;
            }
            (Err(HarnessError::InvalidConfig { origin, violations }), Err(want)) => {
                prop_assert_eq!(origin.as_str(), ORIGIN);
                refused_naming(text, violations, &want)?;
            }
            (got, want) => prop_assert!(false, "{:?}: got {:?}, expected {:?}", text, got, want),
        },
        (Err(HarnessError::Config { path, message }), Err(_)) => {
            prop_assert_eq!(path.as_path(), Path::new(ORIGIN));
            let lines = text.lines().count().max(1);
            let named = (1..=lines + 1).any(|n| message.contains(&format!("line {n}")));
            prop_assert!(named, "no line of {:?} named in {}", text, message);
        }
        (got, Err(e)) => prop_assert!(false, "{:?}: got {:?}, not TOML: {}", text, got, e),
    }
    Ok(())
}

// ---- Generators ----------------------------------------------------------------------

/// A configuration that breaks no rule, its sizes anywhere up to what TOML can hold.
fn valid_config() -> impl Strategy<Value = ExperimentConfig> {
    let size = || prop_oneof![1usize..100, 1usize..=i64::MAX as usize];
    let any_count = || prop_oneof![0usize..100, 0usize..=i64::MAX as usize];
    let positive = || {
        prop_oneof![
            0.001f64..10.0,
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(f64::MAX),
            Just(1.0),
            1e-300f64..1e300,
        ]
    };
    let unit = || prop_oneof![0.001f64..=1.0, Just(1.0), Just(5e-324)];
    (
        (
            ".*",
            0u64..=i64::MAX as u64,
            0u32..10,
            any_count(),
            size(),
            size(),
        ),
        (unit(), positive(), size(), positive(), positive()),
        (
            size(),
            size(),
            size(),
            size(),
            prop::sample::select(ATTACKS.to_vec()),
        ),
        (any_count(), any_count(), size(), any_count(), size()),
        (
            size(),
            prop_oneof![3usize..100, 3usize..=i64::MAX as usize],
            size(),
            positive(),
            positive(),
        ),
        (size(), size(), size(), unit(), size()),
    )
        .prop_map(
            |(
                (profile, seed, positive_class, eval_images, type2_images, batch_size),
                (linf_eps, pgd_linf_step, pgd_steps, l2_eps, pgd_l2_step),
                (cw_images, cw_steps, cw_binary_steps, deepfool_steps, roc),
                (type1_per_class, type1_positive_images, type1_iters, strip_index, cam_images),
                (clever_images, clever_nb, clever_ns, clever_radius_l2, clever_radius_linf),
                (
                    league_successes,
                    league_images,
                    league_noise_samples,
                    league_noise_radius,
                    league_pixels_per_step,
                ),
            )| {
                // Field by field over a profile: a setting added later keeps its value.
                let mut c = ExperimentConfig::quick();
                c.profile = profile;
                c.seed = seed;
                c.positive_class = positive_class;
                c.eval_images = eval_images;
                c.type2_images = type2_images;
                c.batch_size = batch_size;
                c.linf_eps = linf_eps;
                c.pgd_linf_step = pgd_linf_step;
                c.pgd_steps = pgd_steps;
                c.l2_eps = l2_eps;
                c.pgd_l2_step = pgd_l2_step;
                // The cross-setting rule.
                c.cw_images = if roc == "cw-l2" {
                    cw_images.min(type2_images)
                } else {
                    cw_images
                };
                c.cw_steps = cw_steps;
                c.cw_binary_steps = cw_binary_steps;
                c.deepfool_steps = deepfool_steps;
                c.roc_type2_attack = roc.into();
                c.type1_per_class = type1_per_class;
                c.type1_positive_images = type1_positive_images;
                c.type1_iters = type1_iters;
                c.strip_index = strip_index;
                c.cam_images = cam_images;
                c.clever_images = clever_images;
                c.clever_nb = clever_nb;
                c.clever_ns = clever_ns;
                c.clever_radius_l2 = clever_radius_l2;
                c.clever_radius_linf = clever_radius_linf;
                c.league_successes = league_successes;
                c.league_images = league_images;
                c.league_noise_samples = league_noise_samples;
                c.league_noise_radius = league_noise_radius;
                c.league_pixels_per_step = league_pixels_per_step;
                c
            },
        )
}

/// A TOML value: mostly of a setting's type, near its bounds and beyond, sometimes of
/// another type, an array or a table.
fn value() -> impl Strategy<Value = toml::Value> {
    use toml::Value;
    let leaf = prop_oneof![
        4 => (-3i64..20).prop_map(Value::Integer),
        1 => prop::sample::select(vec![
            i64::MIN, -1, 0, 1, 2, 3, 9, 10, u32::MAX as i64, u32::MAX as i64 + 1, i64::MAX,
        ])
        .prop_map(Value::Integer),
        1 => any::<i64>().prop_map(Value::Integer),
        3 => (-0.5f64..2.0).prop_map(Value::Float),
        1 => prop::sample::select(vec![
            f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 5e-324, 1.0,
            1.0 + f64::EPSILON, f64::MAX,
        ])
        .prop_map(Value::Float),
        1 => any::<f64>().prop_map(Value::Float),
        1 => any::<bool>().prop_map(Value::Boolean),
        2 => prop::sample::select(vec![
            "cw-l2", "pgd-linf", "fgsm", "pgd-l2", "deepfool", "", "PGD-LINF", "quick", "3",
        ])
        .prop_map(|s| Value::String(s.into())),
        1 => ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A value for `key`: half the time on or next to the edges of its rule (a bound, one
/// below it, one above; zero, the smallest subnormal, 1 and the next float; NaN and
/// infinity; the attack names), half the time any [`value`].
fn keyed_value(key: String) -> impl Strategy<Value = (String, toml::Value)> {
    use toml::Value::{Float, Integer, String as Text};
    let edges = match rule_of(&key) {
        Some(Rule::AtLeast(min)) => vec![Integer(min - 1), Integer(min), Integer(min + 1)],
        Some(Rule::Class) => vec![Integer(-1), Integer(0), Integer(9), Integer(10)],
        Some(Rule::Seed) => vec![Integer(-1), Integer(0), Integer(i64::MAX)],
        Some(Rule::Positive { .. }) => vec![
            Float(0.0),
            Float(-0.0),
            Float(5e-324),
            Float(1.0),
            Float(1.0 + f64::EPSILON),
            Float(f64::NAN),
            Float(f64::INFINITY),
            Integer(0),
            Integer(1),
            Integer(2),
        ],
        Some(Rule::Attack) => ATTACKS
            .iter()
            .chain(&["", "CW-L2", "pgd"])
            .map(|a| Text(a.to_string()))
            .collect(),
        Some(Rule::Text) | None => vec![Text(String::new()), Integer(0)],
    };
    (Just(key), prop_oneof![prop::sample::select(edges), value()])
}

/// 0 to 5 settings, each written once.
fn overrides() -> impl Strategy<Value = BTreeMap<String, toml::Value>> {
    prop::collection::vec(key().prop_flat_map(keyed_value), 0..6)
        .prop_map(|kv| kv.into_iter().collect())
}

/// A key: mostly a setting, sometimes a near miss or anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(SETTINGS.iter().map(|(k, _)| *k).collect::<Vec<_>>())
            .prop_map(String::from),
        1 => "[a-z_]{1,14}",
        1 => prop::sample::select(vec!["Seed", "seed ", "cw_step", "linf-eps", "__proto__", ""])
            .prop_map(String::from),
    ]
}

/// A `key = value` line; the key quoted when it is not a bare TOML key.
fn line(k: &str, v: &toml::Value) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let k = if bare {
        k.to_string()
    } else {
        toml::Value::String(k.into()).to_string()
    };
    format!("{k} = {v}\n")
}

/// The rule list above is every setting of the configuration, no more.
#[test]
fn the_rules_cover_every_setting() {
    let mut keys: Vec<String> = table(&ExperimentConfig::quick()).keys().cloned().collect();
    let mut ours: Vec<String> = SETTINGS.iter().map(|(k, _)| k.to_string()).collect();
    keys.sort();
    ours.sort();
    assert_eq!(
        keys, ours,
        "a setting was added or renamed: update SETTINGS"
    );
    for c in [
        ExperimentConfig::quick(),
        ExperimentConfig::standard(),
        ExperimentConfig::paper(),
    ] {
        assert_eq!(
            oracle(&c, &toml::Table::new()),
            Ok(c.clone()),
            "{}",
            c.profile
        );
    }
}

proptest! {
    #![proptest_config(fuzz_config(500))]

    /// A valid configuration passes its rules and round-trips through TOML over any base.
    #[test]
    fn fuzz_config_valid_round_trip(c in valid_config(), other in valid_config()) {
        sound(&c, &other)?;
        prop_assert_eq!(load(&c.to_toml(), &ExperimentConfig::paper()).unwrap(), c);
    }
}

proptest! {
    #![proptest_config(fuzz_config(1000))]

    /// Override files over a valid base: the oracle's verdict, exactly.
    #[test]
    fn fuzz_config_overrides(
        base in valid_config(),
        other in valid_config(),
        overrides in overrides(),
    ) {
        let text: String = overrides.iter().map(|(k, v)| line(k, v)).collect();
        // TOML by construction: judged by the oracle, never a parse error.
        prop_assert!(toml::from_str::<toml::Table>(&text).is_ok(), "{:?}", text);
        check_text(&text, &base, &other)?;
    }

    /// A valid configuration's own TOML with 1 to 3 byte edits: the oracle's verdict on
    /// what still parses, the file and a line named on what does not.
    #[test]
    fn fuzz_config_mutated_text(
        c in valid_config(),
        base in valid_config(),
        edits in prop::collection::vec(byte_edit(8), 1..4),
    ) {
        let mut bytes = c.to_toml().into_bytes();
        for e in &edits {
            e.apply(&mut bytes);
        }
        check_text(&String::from_utf8_lossy(&bytes), &base, &c)?;
    }
}

proptest! {
    #![proptest_config(fuzz_config(300))]

    /// A key written twice is a TOML error naming the file and the key.
    #[test]
    fn fuzz_config_duplicated_keys(
        base in valid_config(),
        overrides in overrides().prop_filter("a key to repeat", |o| !o.is_empty()),
        which in any::<prop::sample::Index>(),
        again in value(),
    ) {
        let keys: Vec<&String> = overrides.keys().collect();
        let k = keys[which.index(keys.len())];
        let mut text: String = overrides.iter().map(|(k, v)| line(k, v)).collect();
        text.push_str(&line(k, &again));
        match no_panic(|| format!("{text:?}"), || load(&text, &base))? {
            Err(e @ HarnessError::Config { .. }) => {
                let e = e.to_string();
                prop_assert!(e.starts_with(ORIGIN), "{}", e);
                prop_assert!(e.contains("duplicate key") && e.contains(k.as_str()), "{:?}: {}", text, e);
            }
            other => prop_assert!(false, "{:?} gave {:?}", text, other),
        }
    }
}

proptest! {
    #![proptest_config(fuzz_config(500))]

    /// Arbitrary bytes, read as text the way a file would be (lossy UTF-8).
    #[test]
    fn fuzz_config_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let quick = ExperimentConfig::quick();
        check_text(&String::from_utf8_lossy(&bytes), &quick, &quick)?;
    }
}
