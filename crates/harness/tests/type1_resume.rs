//! A Type I run killed part-way resumes from its checkpoint: the finished batches are
//! read back, not recomputed, the rest is attacked, and the result equals an
//! uninterrupted run's; a checkpoint of other settings is ignored.

use std::path::Path;

use candle_core::Device;
use harness::{run_mode, Checkpoint, PanelInputs, Type1Pairs};
use models::Knn;
use vae_attack::{ClassMeans, Judges, LatentAttackConfig};

#[test]
fn a_killed_type1_run_resumes_from_its_finished_batches() {
    let dev = Device::Cpu;
    let splits = mnist_data::Source::Fixtures.load().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/weights");
    let models = harness::load_models(&dir, &dev).unwrap();
    let knn = Knn::new(&splits.train, 3, &dev).unwrap();
    let means = ClassMeans::from_training(&models.svae, &splits.train, &dev).unwrap();
    let inputs = PanelInputs {
        f1: &models.gapcnn,
        svae: &models.svae,
        means: &means,
        judges: Judges {
            standard: &models.oracle,
            robust: &models.robust_oracle,
            knn: &knn,
        },
    };
    let pairs = Type1Pairs::from_f1(&models.gapcnn, &splits.test, &[0, 1, 2], &dev).unwrap();
    assert_eq!(pairs.len(), 27);
    let config = LatentAttackConfig {
        max_iters: 4,
        record_every: 0,
        frame_every: 0,
        ..LatentAttackConfig::constrained()
    };
    let batch = 4; // 7 batches, the last of 3 pairs
    let tmp = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint {
        path: tmp.path().join("mode0.partial.jsonl"),
        key: "constrained, 4 iterations".into(),
    };
    let run = |c: Option<&Checkpoint>, advanced: &mut Vec<usize>| {
        run_mode(
            &inputs,
            &splits.test,
            &pairs,
            &config,
            batch,
            &dev,
            c,
            &mut |n| advanced.push(n),
        )
        .unwrap()
    };

    let mut steps = Vec::new();
    let whole = run(None, &mut steps);
    assert_eq!(steps, [4, 4, 4, 4, 4, 4, 3]);
    let mut steps = Vec::new();
    let first = run(Some(&checkpoint), &mut steps);
    assert_eq!(
        (first.rows.clone(), first.images.clone()),
        (whole.rows.clone(), whole.images.clone())
    );
    let text = std::fs::read_to_string(&checkpoint.path).unwrap();
    assert_eq!(
        text.lines().count(),
        1 + 7,
        "a header and one line per batch"
    );

    // Killed after 3 batches, mid-way through writing the 4th; the second batch's stored
    // iterations are marked so a reread can be told from a recomputation.
    let lines: Vec<&str> = text.lines().collect();
    let marked = lines[2].replace("\"iterations\":", "\"iterations\":1000");
    assert_ne!(marked, lines[2]);
    let torn = &lines[4][..lines[4].len() / 2];
    std::fs::write(
        &checkpoint.path,
        format!("{}\n{}\n{marked}\n{}\n{torn}", lines[0], lines[1], lines[3]),
    )
    .unwrap();
    let mut steps = Vec::new();
    let resumed = run(Some(&checkpoint), &mut steps);
    assert_eq!(steps, [4, 4, 4, 4, 4, 4, 3]);
    assert_eq!(resumed.images, whole.images);
    assert_eq!(resumed.rows[..4], whole.rows[..4]);
    assert_eq!(resumed.rows[8..], whole.rows[8..]);
    for (r, w) in resumed.rows[4..8].iter().zip(&whole.rows[4..8]) {
        assert_eq!(
            r.iterations,
            w.iterations + 1000 * 10usize.pow(digits(w.iterations))
        );
    }
    // The file is whole again: a rerun reads everything (the mark included).
    let mut steps = Vec::new();
    let reread = run(Some(&checkpoint), &mut steps);
    assert_eq!(reread.rows, resumed.rows);

    // Other settings: the file is ignored and rewritten.
    let other = Checkpoint {
        key: "constrained, other settings".into(),
        ..checkpoint.clone()
    };
    let mut steps = Vec::new();
    let fresh = run(Some(&other), &mut steps);
    assert_eq!(fresh.rows, whole.rows);
    let text = std::fs::read_to_string(&other.path).unwrap();
    assert!(text.lines().next().unwrap().contains("other settings"));
}

/// Decimal digits of `n` (the marked value is "1000" written before them).
fn digits(n: usize) -> u32 {
    n.to_string().len() as u32
}
