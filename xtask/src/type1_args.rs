//! The flags of `cargo xtask type1`, shared by its two parts: the judged panel and the
//! class transition (`type1`), and one image's strips with `--index` (`type1_strips`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::data::SourceArgs;
use crate::load::ModelKind;

/// Which Type I attack.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The paper's objective (adaptive k capped at 1e-3), run twice: stopped by the
    /// standard oracle (the study's reproduction) and judge-free.
    Paper,
    /// f1 held as a constraint (ALGORITHMS.md section 9), judge-free; the paper's mode
    /// runs on the same pairs beside it unless `--skip-paper`.
    Constrained,
}

/// Where the constrained attack starts.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartKind {
    /// z0 = mu(x), as in the paper.
    Mu,
    /// Half-way from mu(x) to the target's mean code over the training images.
    TargetMean,
}

/// Flags of `cargo xtask type1`. Three modes: the judged panel over the first `--n`
/// images (the default), `--transition`, and `--index` (one image's strips); the flags
/// of one mode are refused with another's.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("strip").multiple(true)))]
pub struct Type1Args {
    /// Attack the first N test images, each (if f1 classifies it correctly) towards the
    /// 9 classes other than its label.
    #[arg(long, default_value_t = 100, conflicts_with = "strip")]
    pub n: usize,
    /// Draw the study's figure for this one test image instead: the paper's attack
    /// (stopped when the oracle sees the target, unless `--no-early-stop`) towards each of
    /// `--targets`, one strip per target in `--out` with f1's class and probability, the
    /// oracle's verdict and f1's CAM on every frame, plus all strips stacked in one PNG.
    #[arg(long, group = "strip", requires = "out")]
    pub index: Option<usize>,
    /// With `--index`: the target classes, a range of digits `A..B` (both ends included:
    /// `0..9` is every digit; `A..=B` means the same) or a comma list (`1,4,9`); the
    /// image's own class is skipped.
    #[arg(long, group = "strip", requires = "index", default_value = "0..9", value_parser = parse_targets)]
    pub targets: Targets,
    /// With `--index`: the directory the strips go to (`type1_<label>_to_<t>.png` and
    /// `type1_<label>_combined.png`).
    #[arg(long, group = "strip", requires = "index", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With `--index`: a frame every K iterations (and at the stop); default: about 8
    /// frames spread evenly over each pair's run, whatever its length.
    #[arg(long, group = "strip", requires = "index", value_parser = clap::value_parser!(u64).range(1..))]
    pub frame_every: Option<u64>,
    /// With `--index`: run every iteration instead of stopping when the oracle sees the
    /// target (success is then judged on the last iterate).
    #[arg(long, group = "strip", requires = "index")]
    pub no_early_stop: bool,
    /// With `--index`: a second row under each strip with the study's defective map
    /// (channel K-1 alone, for class 7 whatever the image), as `reproduce` draws it.
    #[arg(long, group = "strip", requires = "index")]
    pub study_map: bool,
    /// Which attack.
    #[arg(
        long,
        value_enum,
        default_value = "constrained",
        conflicts_with = "strip"
    )]
    pub mode: Mode,
    /// Start of the constrained attack (the paper's mode always starts at mu(x)).
    #[arg(
        long,
        value_enum,
        default_value = "target-mean",
        conflicts_with = "strip"
    )]
    pub start: StartKind,
    /// The constrained attack's logit margin kappa (default 0.5, `Constraint::default`).
    #[arg(long, conflicts_with = "strip")]
    pub kappa: Option<f64>,
    /// How far the target-mean start lies towards the target's mean code (default 0.5).
    #[arg(long, conflicts_with = "strip")]
    pub fraction: Option<f64>,
    /// The judge-free stop: f2's probability of the target (default 0.99).
    #[arg(long, conflicts_with = "strip")]
    pub stop_prob: Option<f64>,
    /// The constrained attack's image term weight, CE(f2(mu(G(z))), t) (default 1; 0
    /// turns it off; see `Constraint::image_weight`).
    #[arg(long, conflicts_with = "strip")]
    pub image_weight: Option<f64>,
    /// With `--mode constrained`: do not run the paper's mode beside it.
    #[arg(long, conflicts_with = "strip")]
    pub skip_paper: bool,
    /// Write the numbers as JSON here (every mode).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The success grid (PNG) of the first mode's examples.
    #[arg(long, default_value = "type1_grid.png", conflicts_with = "strip")]
    pub grid: PathBuf,
    /// The attacked classifier f1 (gapcnn or mlp).
    #[arg(long, value_enum, default_value = "gapcnn", conflicts_with = "strip")]
    pub f1: ModelKind,
    /// Directory with gapcnn/mlp/oracle/svae.safetensors.
    #[arg(long, default_value = "fixtures/weights")]
    pub weights_dir: PathBuf,
    /// Data (the test split is attacked).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Iterations per pair at most (default 1,000; the transition: 500).
    #[arg(long)]
    pub iters: Option<usize>,
    /// The class transition alone (no f1 term): success is the latent classifier f2
    /// saying the target.
    #[arg(long, conflicts_with_all = ["strip", "mode", "start", "kappa", "fraction", "stop_prob", "image_weight", "skip_paper", "grid", "f1"])]
    pub transition: bool,
    /// (image, target) pairs per batch.
    #[arg(long, default_value_t = 90, conflicts_with = "strip")]
    pub batch_size: usize,
    /// Run shard K of N only (K from 0): batch b of the pairs belongs to shard
    /// `harness::owner("type1", b, N)`; the tables, `--json` and `--rows-dir` then cover
    /// this shard's pairs, and the shards' rows together are the whole run's, number for
    /// number (docs/SCALE.md).
    #[arg(long, value_name = "K/N", conflicts_with_all = ["strip", "transition"])]
    pub shard: Option<harness::Shard>,
    /// Write each mode's per-pair rows (every judge's verdict, iterations, norms) as
    /// `DIR/mode<k>.csv`, k in the order the modes run.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["strip", "transition"])]
    pub rows_dir: Option<PathBuf>,
}

/// Target classes of `--targets`, in the order given, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets(pub Vec<u32>);

/// `A..B` (B excluded, as in Rust), `A..=B`, or a comma list; classes 0 to 9, each once.
pub fn parse_targets(s: &str) -> Result<Targets, String> {
    let class = |t: &str| -> Result<u32, String> {
        match t.trim().parse::<u32>() {
            Ok(c) if c < 10 => Ok(c),
            _ => Err(format!("'{}' is not a class 0 to 9", t.trim())),
        }
    };
    // A range of digits names both ends, as the study writes 0..9 for every digit;
    // `A..=B` is accepted too and means the same.
    let classes: Vec<u32> = if let Some((a, b)) = s.split_once("..") {
        let b = b.strip_prefix('=').unwrap_or(b);
        let (a, b) = (class(a)?, class(b)?);
        if a > b {
            return Err(format!("the range '{s}' holds no class"));
        }
        (a..=b).collect()
    } else {
        s.split(',').map(class).collect::<Result<_, _>>()?
    };
    let mut seen = [false; 10];
    for &c in &classes {
        if std::mem::replace(&mut seen[c as usize], true) {
            return Err(format!("class {c} is given twice in '{s}'"));
        }
    }
    Ok(Targets(classes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::try_parse;

    #[test]
    fn targets_parse_as_digit_ranges_or_lists() {
        let t = |s: &str| parse_targets(s).map(|t| t.0);
        assert_eq!(t("0..9"), Ok((0..10).collect()), "both ends are digits");
        assert_eq!(t("0..=9"), Ok((0..10).collect()));
        assert_eq!(t("3..5"), Ok(vec![3, 4, 5]));
        assert_eq!(t("5..5"), Ok(vec![5]));
        assert_eq!(t("9,1,4"), Ok(vec![9, 1, 4]));
        assert_eq!(t("5"), Ok(vec![5]));
        for (bad, says) in [
            ("7..3", "holds no class"),
            ("0..10", "'10'"),
            ("0..11", "'11'"),
            ("0..=10", "'10'"),
            ("1,x", "'x'"),
            ("1,10", "'10'"),
            ("", "''"),
            ("2,2", "class 2 is given twice"),
            ("a..3", "'a'"),
        ] {
            let e = t(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn index_mode_conflicts_with_the_panels_flags() {
        for other in [
            &["--n", "3"][..],
            &["--mode", "paper"],
            &["--transition"],
            &["--f1", "mlp"],
            &["--grid", "g.png"],
        ] {
            let mut line = vec!["type1", "--index", "0", "--out", "S"];
            line.extend_from_slice(other);
            let e = try_parse(&line).unwrap_err();
            assert!(e.contains("cannot be used with"), "{other:?}: {e}");
        }
        let e = try_parse(&["type1", "--index", "0"]).unwrap_err();
        assert!(e.contains("--out"), "{e}");
        for only in [
            &["--out", "S"][..],
            &["--targets", "1..3"],
            &["--no-early-stop"],
            &["--frame-every", "5"],
            &["--study-map"],
        ] {
            for panel in [&[][..], &["--n", "1"], &["--transition"]] {
                let mut line = vec!["type1"];
                line.extend_from_slice(panel);
                line.extend_from_slice(only);
                let e = try_parse(&line).unwrap_err();
                assert!(e.contains("--index"), "{line:?}: {e}");
            }
        }
        let e =
            try_parse(&["type1", "--index", "0", "--out", "S", "--targets", "0..11"]).unwrap_err();
        assert!(e.contains("'11'"), "{e}");
        let e =
            try_parse(&["type1", "--index", "0", "--out", "S", "--frame-every", "0"]).unwrap_err();
        assert!(e.contains("--frame-every"), "{e}");
        // The panel keeps working without --index.
        assert!(try_parse(&["type1", "--mode", "paper", "--n", "1"]).is_ok());
        assert!(try_parse(&["type1", "--transition", "--n", "1"]).is_ok());
    }
}
