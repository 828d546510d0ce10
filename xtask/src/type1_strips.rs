//! `cargo xtask type1 --index I`: the study's figure for one test image. The paper's
//! Type I attack runs towards each target (f1 keeps its clean label; the run stops when
//! the oracle sees the target, or never with `--no-early-stop`), and each pair's frames
//! are drawn by `harness::transition_strip`, the strips `reproduce` draws.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use harness::strip_path;
use harness::{stack_vertically, titled, transition_strip, FrameReading};
use models::{GapCnn, Oracle, Svae};
use serde::Serialize;
use vae_attack::{type_one_attack, Frame, LatentAttackConfig, Stop};

use crate::load::{checkpoint, probabilities, test_image, weights_file, ModelKind};
use crate::output::{fixed, write_json};
use crate::type1_args::Type1Args;

/// Frames per strip when `--frame-every` is not given.
const AUTO_FRAMES: usize = 8;

/// At most `count` of `frames`, evenly spread, the first and the last always kept.
pub fn pick_frames(frames: &[Frame], count: usize) -> Vec<Frame> {
    let n = frames.len();
    if n <= count || count < 2 {
        return frames.to_vec();
    }
    // Positions k (n-1)/(count-1) are at least 1 apart, so rounding keeps them distinct.
    (0..count)
        .map(|k| {
            let at = (k as f64 * (n - 1) as f64 / (count - 1) as f64).round() as usize;
            frames[at].clone()
        })
        .collect()
}

/// One target's run.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TargetRun {
    /// The target class.
    pub target: u32,
    /// The iteration the pair stopped at (the budget when it never stopped early).
    pub stop_iteration: usize,
    /// f1's class on the final image.
    pub f1_class: u32,
    /// f1's probability of that class.
    pub f1_probability: f32,
    /// The oracle's class on the final image.
    pub oracle: u32,
    /// f1 keeps its clean label and the oracle says the target, on the final image.
    pub success: bool,
    /// ||G(z*) - x||_2.
    pub l2: f32,
    /// What each frame of the strip shows.
    pub frames: Vec<FrameReading>,
    /// The strip's PNG.
    pub strip: String,
}

/// What `cargo xtask type1 --index` prints.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct StripsSummary {
    /// Where the test image came from.
    pub data: String,
    /// Test index.
    pub index: usize,
    /// Its label.
    pub label: u8,
    /// f1's class on the clean image, the label it must keep (= the label: images f1
    /// misclassifies are refused).
    pub f1_class: u32,
    /// f1's probability of it.
    pub f1_probability: f32,
    /// Iterations at most per pair.
    pub max_iterations: usize,
    /// Whether a pair stops when the oracle sees its target.
    pub early_stop: bool,
    /// `--frame-every`, or `null` for about 8 frames per strip.
    pub frame_every: Option<u64>,
    /// Per target, in the order given.
    pub targets: Vec<TargetRun>,
    /// Targets where f1 kept its label and the oracle said the target.
    pub successes: usize,
    /// Every strip stacked, each under a title "<label> TO <target>".
    pub combined: String,
    /// Wall time of the attack and the drawing.
    pub seconds: f64,
}

impl StripsSummary {
    /// The per-target table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| target | stop iteration | f1 class | f1 P | oracle | success | L2 | frames |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for t in &self.targets {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                t.target,
                t.stop_iteration,
                t.f1_class,
                fixed(f64::from(t.f1_probability), 4),
                t.oracle,
                if t.success { "yes" } else { "no" },
                fixed(f64::from(t.l2), 4),
                t.frames.len()
            ));
        }
        out.push_str(&format!(
            "success: {} of {} targets; {:.1} s\n",
            self.successes,
            self.targets.len(),
            self.seconds
        ));
        out
    }
}

/// Runs the attack towards every target, writes the strips and the combined PNG, prints
/// the table and writes `--json`.
pub fn strips(args: &Type1Args, index: usize) -> Result<()> {
    let s = run(args, index)?;
    print!("{}", s.table());
    println!(
        "strips in {}, all stacked in {}",
        out_dir(args)?.display(),
        s.combined
    );
    write_json(args.json.as_deref(), &s)
}

fn out_dir(args: &Type1Args) -> Result<&Path> {
    match &args.out {
        Some(dir) => Ok(dir),
        None => bail!("--index needs --out DIR for the strips"),
    }
}

fn run(args: &Type1Args, index: usize) -> Result<StripsSummary> {
    let out = out_dir(args)?;
    let device = Device::Cpu;
    let dir = &args.weights_dir;
    let f1 = checkpoint::<GapCnn>(&weights_file(dir, ModelKind::Gapcnn), &device)?;
    let oracle = checkpoint::<Oracle>(&weights_file(dir, ModelKind::Oracle), &device)?;
    let svae = checkpoint::<Svae>(&weights_file(dir, ModelKind::Svae), &device)?;
    let splits = args.source.source().load()?;
    let (x, label) = test_image(&splits.test, index, &device)?;
    let clean = probabilities(&f1, &x)?;
    let keep = argmax(&clean[0]);
    if keep != u32::from(label) {
        bail!(
            "f1 classifies test image {index} (label {label}) as {keep}: Type I pairs take \
             their targets from f1's correct clean label, so such images are left out; \
             choose another --index"
        );
    }
    let targets: Vec<u32> = args
        .targets
        .0
        .iter()
        .copied()
        .filter(|&t| t != keep)
        .collect();
    if targets.is_empty() {
        bail!("--targets names only the image's own class {label}: no target is left");
    }
    let max_iters = args.iters.unwrap_or(1000);
    let frame_every = match args.frame_every {
        Some(k) => usize::try_from(k).context("--frame-every is too large")?,
        None => 1,
    };
    let config = LatentAttackConfig {
        max_iters,
        record_every: 0,
        frame_every,
        stop: if args.no_early_stop {
            Stop::Budget
        } else {
            Stop::Oracle
        },
        ..LatentAttackConfig::type_one()
    };
    println!(
        "Type I (the paper's attack, {}) on test image {index} of {} (label {label}, f1 says \
         {keep} P={:.4}) towards {:?}, at most {max_iters} iterations",
        if args.no_early_stop {
            "every iteration"
        } else {
            "stopped when the oracle sees the target"
        },
        splits.origin,
        clean[0][keep as usize],
        targets
    );
    let start = Instant::now();
    let n = targets.len();
    let xs = x.repeat((n, 1, 1, 1))?;
    let outcome = type_one_attack(
        &svae,
        &f1,
        &oracle,
        &xs,
        &vec![keep; n],
        &targets,
        None,
        &config,
    )?;
    let last = probabilities(&f1, &outcome.images)?;
    let mut runs = Vec::with_capacity(n);
    let mut pictures = Vec::with_capacity(n);
    for (j, &t) in targets.iter().enumerate() {
        let recorded = &outcome.trajectories[j].frames;
        let frames = match args.frame_every {
            Some(_) => recorded.clone(),
            None => pick_frames(recorded, AUTO_FRAMES),
        };
        let strip = transition_strip(&f1, &oracle, &frames, args.study_map, &device)?;
        let path = strip_path(out, label, t);
        cam::write_png(&strip.image, &path)?;
        let f1_class = argmax(&last[j]);
        runs.push(TargetRun {
            target: t,
            stop_iteration: outcome.iterations[j],
            f1_class,
            f1_probability: last[j][f1_class as usize],
            oracle: outcome.oracle_pred[j],
            success: outcome.success[j],
            l2: outcome.l2[j],
            frames: strip.readings,
            strip: path.display().to_string(),
        });
        pictures.push(titled(&strip.image, &format!("{label} TO {t}"))?);
    }
    let combined = out.join(format!("type1_{label}_combined.png"));
    cam::write_png(&stack_vertically(&pictures), &combined)?;
    Ok(StripsSummary {
        data: splits.origin.to_string(),
        index,
        label,
        f1_class: keep,
        f1_probability: clean[0][keep as usize],
        max_iterations: max_iters,
        early_stop: !args.no_early_stop,
        frame_every: args.frame_every,
        successes: runs.iter().filter(|r| r.success).count(),
        targets: runs,
        combined: combined.display().to_string(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn argmax(p: &[f32]) -> u32 {
    (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::parse;

    #[test]
    fn picked_frames_spread_evenly_and_keep_both_ends() {
        let frames: Vec<Frame> = (0..=137)
            .map(|i| Frame {
                iteration: i,
                pixels: Vec::new(),
            })
            .collect();
        let picked: Vec<usize> = pick_frames(&frames, 8)
            .iter()
            .map(|f| f.iteration)
            .collect();
        assert_eq!(picked.len(), 8);
        assert_eq!((picked[0], picked[7]), (0, 137));
        let gaps: Vec<usize> = picked.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g == 19 || g == 20), "{gaps:?}");
        assert_eq!(
            pick_frames(&frames[..5], 8).len(),
            5,
            "fewer frames than asked: all"
        );
        let two: Vec<usize> = pick_frames(&frames[..9], 8)
            .iter()
            .map(|f| f.iteration)
            .collect();
        assert_eq!(two.len(), 8);
        assert!(two.windows(2).all(|w| w[0] < w[1]), "{two:?}");
    }

    fn args(line: &[&str]) -> Type1Args {
        let dir = format!("{}/../fixtures/weights", env!("CARGO_MANIFEST_DIR"));
        let mut all = vec!["type1", "--weights-dir", &dir];
        all.extend_from_slice(line);
        match parse(&all) {
            crate::Command::Type1(a) => a,
            _ => panic!("not type1"),
        }
    }

    #[test]
    fn bad_index_and_empty_targets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().display().to_string();
        let e = run(&args(&["--index", "500", "--out", &out]), 500)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--index 500") && e.contains("500 images"), "{e}");
        // Fixture test image 0 is a 7.
        let e = run(&args(&["--index", "0", "--out", &out, "--targets", "7"]), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("own class 7"), "{e}");
    }

    /// A short run: one strip per target other than the image's class, the table and
    /// the JSON give the same numbers, and each strip's last frame is the final image.
    #[test]
    fn strips_table_and_json_agree() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().display().to_string();
        let a = args(&[
            "--index",
            "0",
            "--out",
            &out,
            "--targets",
            "6..=9",
            "--iters",
            "20",
            "--no-early-stop",
        ]);
        let s = run(&a, 0).unwrap();
        assert_eq!(s.label, 7);
        let targets: Vec<u32> = s.targets.iter().map(|t| t.target).collect();
        assert_eq!(targets, [6, 8, 9], "the image's own class is skipped");
        for t in &s.targets {
            assert!(Path::new(&t.strip).is_file());
            assert_eq!(t.stop_iteration, 20, "no early stop: every iteration runs");
            assert_eq!(t.frames.len(), AUTO_FRAMES);
            let end = t.frames.last().unwrap();
            assert_eq!(end.iteration, 20);
            assert_eq!((end.f1_class, end.oracle), (t.f1_class, t.oracle));
            assert!((end.f1_probability - t.f1_probability).abs() < 1e-5);
            assert_eq!(t.success, t.f1_class == 7 && t.oracle == t.target);
        }
        assert!(Path::new(&s.combined).is_file());
        let json = serde_json::to_value(&s).unwrap();
        let table = s.table();
        for (line, t) in table
            .lines()
            .skip(2)
            .zip(json["targets"].as_array().unwrap())
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(cells[1], t["target"].to_string());
            assert_eq!(cells[2], t["stop_iteration"].to_string());
            assert_eq!(cells[3], t["f1_class"].to_string());
            let p: f64 = cells[4].parse().unwrap();
            assert!((p - t["f1_probability"].as_f64().unwrap()).abs() <= 5e-5);
            assert_eq!(cells[5], t["oracle"].to_string());
            assert_eq!(cells[6] == "yes", t["success"].as_bool().unwrap());
        }
        assert!(table.contains(&format!("success: {} of 3 targets", json["successes"])));
    }
}
