//! The whole evaluation on seeded (untrained) models and the fixtures, at toy sizes:
//! every artifact is written, a rerun reuses finished stages without rewriting them, and
//! a run with other weights or another test set recomputes them.

use std::path::Path;

use candle_core::{DType, Device};
use harness::Type2Result;
use harness::{
    load_models, run_evaluation, ExperimentConfig, InputFingerprint, Models, Provenance, Silent,
    WEIGHT_FILES,
};
use mnist_data::Dataset;
use models::{init_model, save_model, Architecture, GapCnn, Mlp, Oracle, Svae};

fn tiny() -> ExperimentConfig {
    ExperimentConfig {
        profile: "test".into(),
        eval_images: 50,
        type2_images: 20,
        batch_size: 10,
        pgd_steps: 3,
        cw_images: 5,
        cw_steps: 3,
        cw_binary_steps: 2,
        deepfool_steps: 3,
        type1_per_class: 1,
        type1_positive_images: 1,
        type1_iters: 4,
        cam_images: 10,
        clever_images: 2,
        clever_nb: 4,
        clever_ns: 4,
        ..ExperimentConfig::quick()
    }
}

fn save<A: Architecture>(seed: u64, path: &Path) {
    let (_, varmap) = init_model::<A>(seed, DType::F32, &Device::Cpu).unwrap();
    save_model::<A>(&varmap, path).unwrap();
}

/// Seeded (untrained) checkpoints of GapCnn, Mlp, oracle and SVAE written to `dir`, loaded
/// back as an evaluation loads them, with their provenance.
fn seeded(seeds: [u64; 4], dir: &Path, test: &Dataset) -> (Models, Provenance) {
    save::<GapCnn>(seeds[0], &dir.join(WEIGHT_FILES[0]));
    save::<Mlp>(seeds[1], &dir.join(WEIGHT_FILES[1]));
    save::<Oracle>(seeds[2], &dir.join(WEIGHT_FILES[2]));
    save::<Svae>(seeds[3], &dir.join(WEIGHT_FILES[3]));
    save::<Oracle>(seeds[2] + 100, &dir.join(WEIGHT_FILES[4]));
    let provenance = Provenance {
        data: "fixtures".into(),
        weights: format!("seeded init {seeds:?}"),
        inputs: InputFingerprint::of_weights_dir(dir, test).unwrap(),
    };
    (load_models(dir, &Device::Cpu).unwrap(), provenance)
}

#[test]
fn every_artifact_and_resumable_stages() {
    let dev = Device::Cpu;
    let splits = mnist_data::Source::Fixtures.load().unwrap();
    let (train, test) = (splits.train, splits.test);
    let weights = tempfile::tempdir().unwrap();
    let (models, provenance) = seeded([0, 1, 2, 3], weights.path(), &test);
    let out = tempfile::tempdir().unwrap();
    let config = tiny();
    let e = run_evaluation(
        &models,
        &train,
        &test,
        &config,
        &provenance,
        out.path(),
        &dev,
        &mut Silent,
    )
    .unwrap();
    for f in [
        "summary.json",
        "report.md",
        "report.html",
        "roc.png",
        "clever_l2.png",
        "clever.csv",
        "type1_pairs.csv",
        "type2_cw-l2.csv",
        "type2_examples.png",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    let strips = std::fs::read_dir(out.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("type1_7_to_")
        })
        .count();
    assert_eq!(strips, 9, "one strip per target of test image 0 (a 7)");
    // One image per class plus the next 3 (the positive class): 11 images x 9 targets.
    assert_eq!(e.type1.pairs, 99);
    assert_eq!(e.type2.len(), 5);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["roc"]["positive_class"], 3);
    assert!(summary["type2"]["pgd-linf"]["success_rate"].is_number());
    assert!(
        summary["cam"]["type1"]["spearman"].is_number()
            || summary["cam"]["type1"]["spearman"].is_null()
    );
    // Each CLEVER estimate says where its Lipschitz constant came from.
    let clever = std::fs::read_to_string(out.path().join("clever.csv")).unwrap();
    let mut lines = clever.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let from: Vec<usize> = ["l2_lipschitz_from", "linf_lipschitz_from"]
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap())
        .collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.len(),
        summary["clever"]["images"].as_u64().unwrap() as usize
    );
    assert!(rows.len() <= 2);
    let fallbacks = rows
        .iter()
        .flat_map(|r| from.iter().map(move |&i| r[i]))
        .inspect(|v| assert!(*v == "fit" || v.starts_with("max: "), "{v}"))
        .filter(|v| *v != "fit")
        .count();
    assert_eq!(summary["clever"]["fallbacks"], fallbacks);
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,"), "figures inlined");
    assert!(html.contains("alt=\"type2_examples.png\""));
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("![type2_examples.png](type2_examples.png)"));
    assert!(
        md.contains(&format!(
            "instead of the fitted Weibull location: {fallbacks} of 4"
        )),
        "the report counts the CLEVER fallbacks"
    );
    // Three rows of a clean panel and five attacks (224-px panels, 3 caption lines).
    let fig = image::open(out.path().join("type2_examples.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(fig.dimensions(), (6 * 228 + 4, 3 * 274));

    // A rerun (say after a kill) reuses every finished stage: the files stay untouched.
    let stage = out.path().join("stages/type1.json");
    let before = std::fs::metadata(&stage).unwrap().modified().unwrap();
    std::fs::remove_file(out.path().join("summary.json")).unwrap();
    let examples = out.path().join("type2_examples.png");
    let first_examples = std::fs::read(&examples).unwrap();
    std::fs::remove_file(&examples).unwrap();
    let again = run_evaluation(
        &models,
        &train,
        &test,
        &config,
        &provenance,
        out.path(),
        &dev,
        &mut Silent,
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&stage).unwrap().modified().unwrap(),
        before
    );
    // Compared as stored (NaN, e.g. a mean over no success, is never equal to itself).
    assert_eq!(
        serde_json::to_string(&again.type1).unwrap(),
        serde_json::to_string(&e.type1).unwrap()
    );
    assert!(out.path().join("summary.json").is_file());
    // The Type II examples figure is drawn again from the cached stages, identically.
    assert_eq!(std::fs::read(&examples).unwrap(), first_examples);
    let leftovers: Vec<_> = walk(out.path())
        .into_iter()
        .filter(|p| p.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Another configuration recomputes.
    let other = ExperimentConfig {
        type1_iters: 5,
        ..config
    };
    run_evaluation(
        &models,
        &train,
        &test,
        &other,
        &provenance,
        out.path(),
        &dev,
        &mut Silent,
    )
    .unwrap();
    assert_ne!(
        std::fs::metadata(&stage).unwrap().modified().unwrap(),
        before
    );
}

/// A Type II result without its timing, which differs on every run.
fn untimed(t: &Type2Result) -> Type2Result {
    let mut t = t.clone();
    t.summary.images_per_second = 0.0;
    t
}

fn stage_inputs(out: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(out.join("stages").join(format!("{name}.json"))).unwrap();
    let cached: serde_json::Value = serde_json::from_str(&text).unwrap();
    cached["inputs"].as_str().unwrap().to_string()
}

const STAGES: [&str; 9] = [
    "models",
    "type2_fgsm",
    "type2_pgd-linf",
    "type2_pgd-l2",
    "type2_cw-l2",
    "type2_deepfool",
    "type1",
    "clever",
    "league",
];

#[test]
fn other_weights_or_test_set_recompute_the_stages() {
    let dev = Device::Cpu;
    let splits = mnist_data::Source::Fixtures.load().unwrap();
    let (train, test) = (splits.train, splits.test);
    let config = tiny();
    let out = tempfile::tempdir().unwrap();
    let run = |models: &Models, test: &Dataset, provenance: &Provenance| {
        run_evaluation(
            models,
            &train,
            test,
            &config,
            provenance,
            out.path(),
            &dev,
            &mut Silent,
        )
        .unwrap()
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (models_a, prov_a) = seeded([0, 1, 2, 3], dir_a.path(), &test);
    let first = run(&models_a, &test, &prov_a);
    for s in STAGES {
        assert_eq!(stage_inputs(out.path(), s), prov_a.inputs.sha256(), "{s}");
    }

    // Another GapCnn (as after --train or --weights-dir), same configuration and output.
    let (models_b, prov_b) = seeded([10, 1, 2, 3], dir_b.path(), &test);
    assert_ne!(prov_a.inputs, prov_b.inputs);
    let retrained = run(&models_b, &test, &prov_b);
    for s in STAGES {
        assert_eq!(stage_inputs(out.path(), s), prov_b.inputs.sha256(), "{s}");
    }
    // Only GapCnn changed: the Mlp's accuracy is recomputed, and the same.
    assert_eq!(retrained.models.mlp, first.models.mlp);
    assert_ne!(untimed(&retrained.type2[0]), untimed(&first.type2[0]));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["inputs"]["fingerprint"], prov_b.inputs.short());
    assert_eq!(summary["inputs"]["sha256"], prov_b.inputs.sha256());
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(
        md.contains(prov_b.inputs.short()),
        "the report names the inputs"
    );

    // The same weights on another test set (as with --data-dir): every image inverted.
    let inverted = Dataset::new(
        test.pixels().iter().map(|p| 255 - p).collect(),
        test.labels().to_vec(),
        test.rows(),
        test.cols(),
    )
    .unwrap();
    let prov_c = Provenance {
        inputs: InputFingerprint::of_weights_dir(dir_b.path(), &inverted).unwrap(),
        ..prov_b.clone()
    };
    assert_ne!(prov_c.inputs, prov_b.inputs);
    let other_data = run(&models_b, &inverted, &prov_c);
    for s in STAGES {
        assert_eq!(stage_inputs(out.path(), s), prov_c.inputs.sha256(), "{s}");
    }
    assert_ne!(other_data.models, retrained.models);
    assert_ne!(untimed(&other_data.type2[0]), untimed(&retrained.type2[0]));
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    out
}
