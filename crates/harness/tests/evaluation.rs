//! The whole evaluation on seeded (untrained) models and the fixtures, at toy sizes:
//! every artifact is written, and a rerun reuses finished stages without rewriting them.

use candle_core::{DType, Device};
use harness::{run_evaluation, ExperimentConfig, Models, Provenance, Silent};
use models::init_model;

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

#[test]
fn every_artifact_and_resumable_stages() {
    let dev = Device::Cpu;
    let models = Models {
        gapcnn: init_model(0, DType::F32, &dev).unwrap().0,
        mlp: init_model(1, DType::F32, &dev).unwrap().0,
        oracle: init_model(2, DType::F32, &dev).unwrap().0,
        svae: init_model(3, DType::F32, &dev).unwrap().0,
    };
    let test = mnist_data::Source::Fixtures.load().unwrap().test;
    let out = tempfile::tempdir().unwrap();
    let provenance = Provenance {
        data: "fixtures".into(),
        weights: "seeded init".into(),
    };
    let config = tiny();
    let e = run_evaluation(
        &models,
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
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("data:image/png;base64,"), "figures inlined");
    assert!(html.contains("alt=\"type2_examples.png\""));
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("![type2_examples.png](type2_examples.png)"));
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
    assert_eq!(again.type1, e.type1);
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
