//! The quick profile on the bundled trained weights and fixtures (what
//! `cargo xtask reproduce --quick` runs): every claim of the study in the direction the
//! study states it, over the population and with the denominator the report states.

mod summary_schema;

use std::path::{Path, PathBuf};

use candle_core::Device;
use harness::{
    load_models, run_evaluation, ExperimentConfig, InputFingerprint, Provenance, Silent,
};

fn weights_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/weights")
}

/// The `success` column of the first `n` rows of `type2_<attack>.csv`.
fn successes_in_csv(out: &Path, attack: &str, n: usize) -> usize {
    let text = std::fs::read_to_string(out.join(format!("type2_{attack}.csv"))).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "success").unwrap();
    lines
        .take(n)
        .filter(|l| l.split(',').nth(col) == Some("true"))
        .count()
}

#[test]
fn the_quick_profile_shows_every_claim() {
    let dev = Device::Cpu;
    let splits = mnist_data::Source::Fixtures.load().unwrap();
    let (train, test) = (splits.train, splits.test);
    let dir = weights_dir();
    let models = load_models(&dir, &dev).unwrap();
    let provenance = Provenance {
        data: "fixtures".into(),
        weights: "bundled".into(),
        inputs: InputFingerprint::of_weights_dir(&dir, &test).unwrap(),
    };
    let out = tempfile::tempdir().unwrap();
    let config = ExperimentConfig::quick();
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

    // ROC over the whole evaluation split: every test image scored, every positive attacked.
    let positives = (0..test.len())
        .filter(|&i| test.label(i) == Some(config.positive_class as u8))
        .count();
    let r = &e.roc;
    assert_eq!(r.clean.positives + r.clean.negatives, test.len());
    assert_eq!(
        (r.clean.positives, r.type2.positives),
        (positives, positives)
    );
    assert!(
        r.type2.tpr < r.clean.tpr,
        "Type II lowers TPR: {} vs {}",
        r.type2.tpr,
        r.clean.tpr
    );
    // Type I negatives: the constrained attack's consensus successes made from positives.
    assert!(
        r.type1_examples >= 3,
        "{} Type I negatives",
        r.type1_examples
    );
    assert_eq!(r.type1.negatives, r.clean.negatives + r.type1_examples);
    assert!(r.type1.fpr > r.clean.fpr, "Type I raises FPR");
    assert_eq!(r.type1_set_fpr, 1.0, "f1 keeps the positive label on each");

    // CW-L2 works in the quick profile.
    let cw = e.type2.iter().find(|t| t.attack == "cw-l2").unwrap();
    assert_eq!(cw.summary.images, config.cw_images);
    assert!(
        cw.summary.success_rate >= 0.9,
        "CW-L2 success {}",
        cw.summary.success_rate
    );

    // Map changes over successes, with their denominators and noise controls.
    for t in &e.type2 {
        let measured = config.cam_images.min(t.summary.images);
        assert_eq!(t.cam.all.n(), measured, "{}", t.attack);
        let wins = successes_in_csv(out.path(), &t.attack, measured);
        assert_eq!(t.cam.successes.n(), wins, "{}: successes", t.attack);
        assert_eq!(t.cam.noise.n(), wins, "{}: noise control", t.attack);
        // Like with like: the noise has each perturbation's L2 norm (to 1 %; the box can
        // only shorten it).
        assert!(
            t.cam.noise_l2 <= t.cam.attack_l2 + 1e-6 && t.cam.noise_l2 > 0.99 * t.cam.attack_l2,
            "{}: noise {} vs attack {}",
            t.attack,
            t.cam.noise_l2,
            t.cam.attack_l2
        );
    }
    let c = &e.type1.cam;
    let consensus = e.type1.constrained.consensus.count;
    assert_eq!(c.vs_x.n(), consensus);
    assert_eq!(c.vs_reconstruction.n(), consensus);
    // The claim: the Type I map moves less than under every Type II attack (over successes).
    for t in &e.type2 {
        assert!(
            c.vs_x.spearman > t.cam.successes.spearman,
            "Type I Spearman {} vs {} {}",
            c.vs_x.spearman,
            t.attack,
            t.cam.successes.spearman
        );
    }
    // The study's defective map is not CAM.
    assert!(e.type1.defective_vs_real.2 > 0 && e.type1.defective_vs_real.0 < 0.5);

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    let claims = &summary["claims"];
    assert_eq!(claims["type2_lowers_tpr"], true);
    assert_eq!(claims["type1_raises_fpr"], true);
    assert_eq!(claims["type1_change_smaller_than_every_type2"], true);
    assert_eq!(claims["defective_map_differs_from_cam"], true);
    assert_eq!(summary["roc"]["type1_negatives_added"], r.type1_examples);
    assert_eq!(
        summary["cam"]["cw-l2"]["pairs"].as_u64().unwrap() as usize,
        cw.cam.successes.pairs
    );

    // CLEVER only on images f1 classifies correctly.
    let clever = std::fs::read_to_string(out.path().join("clever.csv")).unwrap();
    let indices: Vec<usize> = clever
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(indices.len(), config.clever_images);
    let x = test
        .images_tensor(&indices, mnist_data::PixelFormat::Gray, &dev)
        .unwrap();
    let pred = models::Classifier::predict(&models.gapcnn, &x).unwrap();
    for (i, p) in indices.iter().zip(pred) {
        assert_eq!(test.label(*i), Some(p as u8), "CLEVER image {i}");
    }

    // The sandwich on the same images: every certificate below what the attacks found
    // (soundness), with the counts summary.json reports.
    let w = &e.sandwich;
    let rows: Vec<usize> = w.rows.iter().map(|r| r.index).collect();
    assert_eq!(rows, indices);
    for r in &w.rows {
        for (name, b) in [("L2", &r.l2), ("Linf", &r.linf)] {
            let found = b.found.expect("an attack found a perturbation");
            assert!(
                b.certified > 0.0 && b.certified <= found,
                "image {} {name}: certified {} vs found {found}",
                r.index,
                b.certified
            );
        }
    }
    for (key, c) in [("l2", &w.l2), ("linf", &w.linf)] {
        assert_eq!(
            (c.images, c.with_found, c.certified_above_found),
            (indices.len(), indices.len(), 0)
        );
        assert_eq!(summary["sandwich"][key]["certified_above_found"], 0);
        assert_eq!(
            summary["sandwich"][key]["clever_above_found"]
                .as_u64()
                .unwrap() as usize,
            c.clever_above_found
        );
    }
    assert!(out.path().join("sandwich.png").is_file());

    // The explanation league runs every method on every population.
    let league = &e.league;
    assert_eq!(league.methods, cam::METHOD_NAMES);
    let pops = &league.table.populations;
    assert_eq!(pops.type1, e.type1.successes.len());
    assert!(
        pops.type1 >= 3,
        "Type I successes explained: {}",
        pops.type1
    );
    for attack in harness::LEAGUE_ATTACKS {
        assert_eq!(pops.type2[attack], config.league_successes, "{attack}");
    }
    for name in cam::METHOD_NAMES {
        let m = &league.table.methods[name];
        assert_eq!(m.type1.vs_reconstruction.n(), pops.type1, "{name}");
        assert!(
            m.type1.detection.attacked > 0 && m.type1.detection.control > 0,
            "{name}"
        );
        for attack in harness::LEAGUE_ATTACKS {
            assert_eq!(
                m.type2[attack].change.n(),
                config.league_successes,
                "{name} {attack}"
            );
        }
        for v in [&m.max_sensitivity, &m.deletion_auc, &m.insertion_auc] {
            assert_eq!(v.n + v.skipped, config.league_images, "{name}");
        }
        // f1 is confident on clean digits: deletion of the most important pixels first
        // loses the class faster than insertion finds it.
        assert!(
            m.deletion_auc.mean < m.insertion_auc.mean,
            "{name}: deletion {} insertion {}",
            m.deletion_auc.mean,
            m.insertion_auc.mean
        );
    }
    // The league's CAM under Type I is the Type I stage's CAM comparison: the same
    // population, the same maps, the same noise streams.
    let (league_cam, stage_cam) = (&league.table.methods["cam"].type1, &e.type1.cam);
    for (a, b) in [
        (&league_cam.vs_x, &stage_cam.vs_x),
        (&league_cam.vs_reconstruction, &stage_cam.vs_reconstruction),
        (&league_cam.noise_x, &stage_cam.noise_x),
        (
            &league_cam.noise_reconstruction,
            &stage_cam.noise_reconstruction,
        ),
    ] {
        assert_eq!(a.n(), b.n());
        assert!((a.spearman - b.spearman).abs() < 1e-6, "{a:?} vs {b:?}");
        assert!((a.ssim - b.ssim).abs() < 1e-6, "{a:?} vs {b:?}");
    }
    // On a GAP + linear head Grad-CAM = CAM / hw and HiResCAM = CAM / hw before scaling:
    // after min-max their changes are CAM's.
    let cam_row = &league.table.methods["cam"];
    for name in ["grad-cam", "hires-cam"] {
        let m = &league.table.methods[name];
        for attack in harness::LEAGUE_ATTACKS {
            let (a, b) = (&m.type2[attack].change, &cam_row.type2[attack].change);
            assert!((a.spearman - b.spearman).abs() < 1e-4, "{name} {attack}");
        }
    }
    // The verdict is the ranking's head, the ranking sorted by mean rank.
    let v = &league.table.verdict;
    assert_eq!(v.ranking.len(), 10);
    assert_eq!(v.most_robust.as_deref(), Some(v.ranking[0].method.as_str()));
    assert!(v
        .ranking
        .windows(2)
        .all(|w| w[0].mean_rank <= w[1].mean_rank));
    assert!(out.path().join("explain_league.png").is_file());

    // summary.json is what the one schema writes: it reads back into `harness::Summary`
    // and writes the same JSON again.
    let text = std::fs::read_to_string(out.path().join("summary.json")).unwrap();
    let typed: harness::Summary = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), summary);
    // docs/SUMMARY.md lists exactly the keys written, and the checker notices a row
    // missing or a key that is not written.
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/SUMMARY.md"),
    )
    .unwrap();
    let (undocumented, unwritten) = summary_schema::disagreements(&doc, &summary);
    assert!(
        undocumented.is_empty() && unwritten.is_empty(),
        "docs/SUMMARY.md: written but not listed {undocumented:?}; listed but not written {unwritten:?}"
    );
    let without_clever: String = doc
        .lines()
        .filter(|l| !l.starts_with("| `clever."))
        .map(|l| format!("{l}\n"))
        .collect();
    let (undocumented, _) = summary_schema::disagreements(&without_clever, &summary);
    assert!(
        undocumented.contains(&"clever.nb".to_string()),
        "{undocumented:?}"
    );
    let with_bogus = doc.replace("| `seed`,", "| `roc.bogus`, `seed`,");
    let (_, unwritten) = summary_schema::disagreements(&with_bogus, &summary);
    assert_eq!(unwritten, vec!["roc.bogus".to_string()]);
}
