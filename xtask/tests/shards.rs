//! `reproduce --shard K/N` in separate processes, merged, against the single-process
//! run of the same configuration: every artifact the same up to timings. Also what a
//! merge refuses. A small configuration of the quick profile on the bundled fixtures,
//! with several units per sharded stage (docs/SCALE.md).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

const CONFIG: &str = "\
type2_images = 8
batch_size = 4
pgd_steps = 5
cw_images = 4
cw_steps = 20
cw_binary_steps = 2
deepfool_steps = 10
type1_iters = 20
type1_batch = 5
cam_images = 6
clever_images = 1
clever_nb = 3
clever_ns = 8
league_successes = 3
league_images = 2
league_noise_samples = 1
eval_images = 100
";

fn xtask(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args).env("RAYON_NUM_THREADS", "1");
    c
}

fn spawn(args: &[&str]) -> Child {
    xtask(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn ok(o: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{what} failed:\n{text}");
    text
}

fn failed(o: Output, what: &str) -> String {
    let text = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{what} should have been refused");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn two_shards_in_two_processes_merge_into_the_single_run() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("small.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let d = |name: &str| root.path().join(name);
    let (single, merged) = (d("single"), d("merged"));
    let shards: Vec<PathBuf> = (0..2).map(|k| d(&format!("shard{k}"))).collect();
    let base = ["reproduce", "--quick", "--config", s(&config)];

    // The two shards at the same time, in their own processes, beside the single run.
    let children: Vec<Child> = shards
        .iter()
        .enumerate()
        .map(|(k, dir)| {
            let shard = format!("{k}/2");
            let mut args = base.to_vec();
            args.extend(["--out", s(dir), "--shard", &shard]);
            spawn(&args)
        })
        .collect();
    let mut args = base.to_vec();
    args.extend(["--out", s(&single)]);
    ok(xtask(&args).output().unwrap(), "the single run");
    for (k, c) in children.into_iter().enumerate() {
        let text = ok(c.wait_with_output().unwrap(), "a shard");
        assert!(text.contains(&format!("shard {k}/2 finished")), "{text}");
    }
    // Each shard computed part of the work: its units only.
    let lines = |dir: &Path, stage: &str| {
        let path = dir.join("stages").join(format!("{stage}.units.jsonl"));
        std::fs::read_to_string(path).unwrap().lines().count() - 1
    };
    for stage in ["type2_fgsm", "type1_paper", "type1_constrained"] {
        let per: Vec<usize> = shards.iter().map(|dir| lines(dir, stage)).collect();
        assert!(per.iter().all(|&n| n >= 1), "{stage}: {per:?}");
    }
    assert_eq!(
        lines(&shards[0], "type2_fgsm") + lines(&shards[1], "type2_fgsm"),
        2,
        "8 images in batches of 4"
    );

    // The merge, shards given in any order, against the single run.
    ok(
        xtask(&["merge", s(&merged), s(&shards[1]), s(&shards[0])])
            .output()
            .unwrap(),
        "the merge",
    );
    let report = d("compare.json");
    let text = ok(
        xtask(&["compare", s(&single), s(&merged), "--json", s(&report)])
            .output()
            .unwrap(),
        "compare",
    );
    let rows = harness::compare_runs(&single, &merged).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    for needed in [
        "summary.json",
        "report.md",
        "report.html",
        "type2_cw-l2.csv",
        "type1_pairs.csv",
        "type1_constrained.csv",
        "type1_grid.png",
        "type1_7_to_1.png",
        "type2_examples.png",
        "roc.png",
    ] {
        assert!(names.contains(&needed), "{needed} not compared: {names:?}");
    }
    assert!(rows.iter().all(|r| r.same()), "{text}");
    // And the comparison sees a difference where there is one.
    let csv = merged.join("type1_pairs.csv");
    let mut bytes = std::fs::read(&csv).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'1' { b'2' } else { b'1' };
    std::fs::write(&csv, bytes).unwrap();
    let text = failed(
        xtask(&["compare", s(&single), s(&merged)])
            .output()
            .unwrap(),
        "compare of different runs",
    );
    assert!(text.contains("differ in 1 file"), "{text}");

    // Refusals, each naming what is wrong.
    let e = failed(
        xtask(&["merge", s(&d("m2")), s(&shards[0])])
            .output()
            .unwrap(),
        "a merge without shard 1",
    );
    assert!(e.contains("missing shard 1/2"), "{e}");
    let e = failed(
        xtask(&[
            "merge",
            s(&d("m3")),
            s(&shards[0]),
            s(&shards[0]),
            s(&shards[1]),
        ])
        .output()
        .unwrap(),
        "a merge with shard 0 twice",
    );
    assert!(e.contains("shard 0/2 appears twice"), "{e}");
    let e = failed(
        xtask(&["merge", s(&d("m4")), s(&shards[0]), s(&single)])
            .output()
            .unwrap(),
        "a merge with a directory that is not a shard",
    );
    assert!(
        e.contains("not a finished shard") && e.contains("single"),
        "{e}"
    );
    // A shard of another configuration.
    let other = root.path().join("other.toml");
    std::fs::write(
        &other,
        CONFIG.replace("type1_iters = 20", "type1_iters = 21"),
    )
    .unwrap();
    let odd = d("odd");
    ok(
        xtask(&[
            "reproduce",
            "--quick",
            "--config",
            s(&other),
            "--out",
            s(&odd),
            "--shard",
            "1/2",
        ])
        .output()
        .unwrap(),
        "a shard of another configuration",
    );
    let e = failed(
        xtask(&["merge", s(&d("m5")), s(&shards[0]), s(&odd)])
            .output()
            .unwrap(),
        "a merge of two configurations",
    );
    assert!(
        e.contains("different configurations") && e.contains("`type1_iters` is 21"),
        "{e}"
    );
    let e = failed(
        xtask(&["reproduce", "--quick", "--shard", "2/2"])
            .output()
            .unwrap(),
        "shard 2/2",
    );
    assert!(e.contains("must be below the count 2"), "{e}");
}
