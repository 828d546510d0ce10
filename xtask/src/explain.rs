//! `cargo xtask explain`: one test image explained by one method or by all ten, on
//! GapCnn (every method), the oracle (the Grad-CAM family and the gradient methods: it
//! has no GAP head, so no CAM) or the MLP (gradient and perturbation methods only), as
//! one PNG strip with a table and `--json`; or, with `--n`, many test images batch by
//! batch (`--per-image` rows, a strip per image under `--out DIR`, `--shard`).
//!
//! Every map is shown the same way: upsampled bilinearly to 28 x 28 where it lives on
//! the feature grid, then ReLU and min-max (the evidence for the class, as
//! pytorch-grad-cam shows it); saliency and SmoothGrad are magnitudes already.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cam::{
    cam_model_methods, classifier_methods, feature_classifier_methods, frame_strip, write_png,
    Explainer, Frame, MapScaling, OverlayStyle, Resolution, Target, Upsampling, METHOD_NAMES,
};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use common::progress::{Bar, Progress};
use mnist_data::BatchOptions;
use models::{GapCnn, Mlp, Oracle};
use serde::Serialize;

use crate::data::SourceArgs;
use crate::load::{checkpoint, test_image, FIXTURE_WEIGHTS};

/// The models a method can explain here.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExplainedModel {
    /// f1, the CNN with a GAP head: every method.
    Gapcnn,
    /// The oracle (no GAP head): every method but CAM.
    Oracle,
    /// The MLP (no feature map): gradient and perturbation methods.
    Mlp,
}

/// Flags of `cargo xtask explain`.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The method (`cam`, `grad-cam`, `grad-cam++`, `hires-cam`, `score-cam`, `saliency`,
    /// `gradient-x-input`, `integrated-gradients`, `smoothgrad`, `occlusion`), or `all`:
    /// every method the model supports.
    #[arg(long, value_parser = method_name)]
    pub method: String,
    /// Index of the image in the test split (one image).
    #[arg(long, required_unless_present = "n", conflicts_with = "n")]
    pub index: Option<usize>,
    /// Explain N test images instead (the first N after `--skip`), batch by batch; the
    /// table then counts each method's informative maps.
    #[arg(long)]
    pub n: Option<usize>,
    /// With `--n`: skip this many test images first.
    #[arg(long, default_value_t = 0, conflicts_with = "index")]
    pub skip: usize,
    /// With `--n`: images per batch.
    #[arg(long, default_value_t = 50, conflicts_with = "index")]
    pub batch_size: usize,
    /// With `--n`: one CSV row per image and method (test index, label, method, class,
    /// probability, status, the signed map's sum), rewritten after every batch so an
    /// interrupted run keeps what it finished.
    #[arg(long, value_name = "FILE", conflicts_with = "index")]
    pub per_image: Option<PathBuf>,
    /// With `--n`: explain shard K of N only (K from 0): batch b belongs to shard
    /// `harness::owner("explain", b, N)`; the shards' `--per-image` rows together are the
    /// whole run's, number for number (docs/SCALE.md).
    #[arg(long, value_name = "K/N", conflicts_with = "index")]
    pub shard: Option<harness::Shard>,
    /// The explained model.
    #[arg(long, value_enum, default_value = "gapcnn")]
    pub model: ExplainedModel,
    /// Class the maps explain (default: the model's predicted class).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..10))]
    pub class: Option<u32>,
    /// Directory with the checkpoints (`gapcnn.safetensors`, `oracle.safetensors`,
    /// `mlp.safetensors`).
    #[arg(long, default_value = FIXTURE_WEIGHTS, value_name = "DIR")]
    pub weights_dir: PathBuf,
    /// Where the test image comes from (the bundled fixtures by default).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output PNG: the image under each method's map, one panel per method. With `--n`,
    /// a directory (optional) that gets one such strip per image, `<index>.png`.
    #[arg(long, required_unless_present = "n")]
    pub out: Option<PathBuf>,
    /// Also write the table as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn method_name(s: &str) -> std::result::Result<String, String> {
    if s == "all" || METHOD_NAMES.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!("one of {} or all", METHOD_NAMES.join(", ")))
    }
}

/// One method's map of the image.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Explained {
    /// The method.
    pub method: String,
    /// Where its map lives (`features`: upsampled for the picture; `input`).
    pub resolution: String,
    /// The class it explains.
    pub class: usize,
    /// The model's probability of that class.
    pub probability: f32,
    /// `informative`, or why the shown map is degenerate.
    pub status: String,
    /// Sum of the signed map (at its own resolution).
    pub total: f64,
    /// Wall time of the method on this one image.
    pub seconds: f64,
}

/// What `cargo xtask explain` prints.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ExplainSummary {
    /// Test index.
    pub index: usize,
    /// Its label.
    pub label: u8,
    /// The explained model.
    pub model: String,
    /// The PNG written.
    pub out: String,
    /// One entry per method, in table order.
    pub maps: Vec<Explained>,
}

/// Explains the image, writes the PNG (and `--json`) and prints the table; with `--n`,
/// the many-image run ([`run_many`]).
pub fn explain(args: &ExplainArgs) -> Result<()> {
    if args.index.is_none() {
        let s = run_many(args)?;
        println!(
            "{} test images from {} on {}{}",
            s.images,
            s.first_index,
            s.model,
            s.shard
                .as_ref()
                .map_or(String::new(), |k| format!(" (shard {k})"))
        );
        println!("| method | informative maps | degenerate | seconds per image |");
        println!("| --- | --- | --- | --- |");
        for m in &s.methods {
            println!(
                "| {} | {:.1}% ({} of {}) | {} | {:.4} |",
                m.method,
                100.0 * m.informative as f64 / s.images.max(1) as f64,
                m.informative,
                s.images,
                if m.degenerate.is_empty() {
                    "-".to_string()
                } else {
                    m.degenerate
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                m.seconds_per_image
            );
        }
        return crate::output::write_json(args.json.as_deref(), &s);
    }
    let s = run(args)?;
    println!(
        "test image {} (label {}) on {}: wrote {}",
        s.index, s.label, s.model, s.out
    );
    println!("| method | map | class | P | status | sum | seconds |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for m in &s.maps {
        println!(
            "| {} | {} | {} | {:.3} | {} | {:.4} | {:.3} |",
            m.method, m.resolution, m.class, m.probability, m.status, m.total, m.seconds
        );
    }
    crate::output::write_json(args.json.as_deref(), &s)
}

/// Calls `f` with the methods `--model` offers (loaded from `--weights-dir`) and the
/// model's name.
// The `let r = ..; r` keeps the methods (which borrow the model) dropped before the
// model: as a tail expression the temporaries would outlive it.
#[allow(clippy::let_and_return)]
fn with_methods<T>(
    args: &ExplainArgs,
    device: &Device,
    mut f: impl FnMut(&[Box<dyn Explainer + '_>], &'static str) -> Result<T>,
) -> Result<T> {
    let file = |name: &str| args.weights_dir.join(format!("{name}.safetensors"));
    match args.model {
        ExplainedModel::Gapcnn => {
            let m = checkpoint::<GapCnn>(&file("gapcnn"), device)?;
            let methods = cam_model_methods(&m);
            let r = f(&methods, "gapcnn");
            r
        }
        ExplainedModel::Oracle => {
            let m = checkpoint::<Oracle>(&file("oracle"), device)?;
            let methods = feature_classifier_methods(&m);
            let r = f(&methods, "oracle");
            r
        }
        ExplainedModel::Mlp => {
            let m = checkpoint::<Mlp>(&file("mlp"), device)?;
            let methods = classifier_methods(&m);
            let r = f(&methods, "mlp");
            r
        }
    }
}

fn run(args: &ExplainArgs) -> Result<ExplainSummary> {
    let (Some(index), Some(out)) = (args.index, args.out.as_ref()) else {
        bail!("explain needs --index and --out (or --n)");
    };
    let device = Device::Cpu;
    let splits = args.source.source().load()?;
    let (x, label) = test_image(&splits.test, index, &device)?;
    let (mut maps, name) = with_methods(args, &device, |methods, name| {
        Ok((explain_batch(methods, args, &x)?, name))
    })?;
    let (frames, maps): (Vec<Frame>, Vec<Explained>) = maps.remove(0).into_iter().unzip();
    write_png(&frame_strip(&frames, &OverlayStyle::default())?, out)?;
    Ok(ExplainSummary {
        index,
        label,
        model: name.into(),
        out: out.display().to_string(),
        maps,
    })
}

/// One method over the images of `explain --n`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MethodTally {
    /// The method.
    pub method: String,
    /// Images whose shown map is informative (of `images`).
    pub informative: usize,
    /// The other maps, by status.
    pub degenerate: std::collections::BTreeMap<String, usize>,
    /// Wall time of the method per image (its batches' time over the images).
    pub seconds_per_image: f64,
}

/// What `cargo xtask explain --n` measured.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ExplainManySummary {
    /// The explained model.
    pub model: String,
    /// Where the images came from.
    pub data: String,
    /// Test index of the first image (`--skip`).
    pub first_index: usize,
    /// The shard (`K/N`) these numbers cover, if sharded.
    pub shard: Option<String>,
    /// Images explained (this shard's, when sharded).
    pub images: usize,
    /// One entry per method, in table order.
    pub methods: Vec<MethodTally>,
    /// Wall time.
    pub seconds: f64,
}

/// Columns of `explain --n --per-image`.
const CSV_HEADER: &str = "index,label,method,class,probability,status,total\n";

/// `--n` images, batch by batch (this shard's batches only, with `--shard`), under every
/// chosen method: a row per image and method, a strip per image under `--out DIR`.
fn run_many(args: &ExplainArgs) -> Result<ExplainManySummary> {
    let n = args.n.unwrap_or(0);
    if n == 0 || args.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    let device = Device::Cpu;
    let splits = args.source.source().load()?;
    let available = splits.test.len();
    if args.skip >= available {
        bail!(
            "--skip {} leaves no test images ({available} in {})",
            args.skip,
            splits.origin
        );
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the --out directory {}", dir.display()))?;
    }
    let indices: Vec<usize> = (args.skip..available.min(args.skip + n)).collect();
    let test = splits.test.select(&indices)?;
    let options = BatchOptions {
        batch_size: args.batch_size,
        ..Default::default()
    };
    let batches = test.len().div_ceil(args.batch_size);
    let start = Instant::now();
    let (methods, model) = with_methods(args, &device, |methods, name| {
        let mut bar = Bar::started("explain", batches as u64, "batches");
        let mut csv = String::from(CSV_HEADER);
        let mut tallies: Vec<MethodTally> = Vec::new();
        let mut images = 0;
        for (b, batch) in test.batches(&options, &device).enumerate() {
            if !args.shard.is_none_or(|s| s.owns("explain", b)) {
                bar.advance(1);
                continue;
            }
            let batch = batch?;
            let labels: Vec<u32> = batch.labels.to_vec1()?;
            let per_image = explain_batch(methods, args, &batch.images)
                .with_context(|| format!("batch {b}"))?;
            let first = args.skip + b * args.batch_size;
            for (i, maps) in per_image.into_iter().enumerate() {
                let index = first + i;
                if tallies.is_empty() {
                    tallies = maps
                        .iter()
                        .map(|(_, e)| MethodTally {
                            method: e.method.clone(),
                            informative: 0,
                            degenerate: Default::default(),
                            seconds_per_image: 0.0,
                        })
                        .collect();
                }
                for ((_, e), t) in maps.iter().zip(tallies.iter_mut()) {
                    csv.push_str(&format!(
                        "{index},{},{},{},{},{},{}\n",
                        labels[i], e.method, e.class, e.probability, e.status, e.total
                    ));
                    if e.status == "informative" {
                        t.informative += 1;
                    } else {
                        *t.degenerate.entry(e.status.clone()).or_default() += 1;
                    }
                    t.seconds_per_image += e.seconds;
                }
                if let Some(dir) = &args.out {
                    let frames: Vec<Frame> = maps.into_iter().map(|(f, _)| f).collect();
                    write_png(
                        &frame_strip(&frames, &OverlayStyle::default())?,
                        &dir.join(format!("{index}.png")),
                    )?;
                }
                images += 1;
            }
            if let Some(path) = &args.per_image {
                harness::write_atomic(path, csv.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            bar.advance(1);
        }
        bar.finish();
        for t in &mut tallies {
            t.seconds_per_image /= images.max(1) as f64;
        }
        Ok(((tallies, images), name))
    })?;
    let (methods, images) = methods;
    Ok(ExplainManySummary {
        model: model.into(),
        data: splits.origin.to_string(),
        first_index: args.skip,
        shard: args.shard.map(|s| s.to_string()),
        images,
        methods,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Runs the selected methods of `methods` on the images `x` (`N x 1 x 28 x 28`): per
/// image, a frame and a table entry per method (`seconds`: the method's time on the
/// batch over `N`).
fn explain_batch(
    methods: &[Box<dyn Explainer + '_>],
    args: &ExplainArgs,
    x: &Tensor,
) -> Result<Vec<Vec<(Frame, Explained)>>> {
    let chosen: Vec<&Box<dyn Explainer + '_>> = methods
        .iter()
        .filter(|m| args.method == "all" || m.name() == args.method)
        .collect();
    if chosen.is_empty() {
        let offered: Vec<&str> = methods.iter().map(|m| m.name()).collect();
        bail!(
            "--method {} does not run on --model {:?}: it offers {}",
            args.method,
            args.model,
            offered.join(", ")
        );
    }
    let target = args
        .class
        .map_or(Target::Predicted, |c| Target::Class(c as usize));
    let n = x.dim(0)?;
    let images: Vec<Vec<f32>> = x.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?;
    let mut out: Vec<Vec<(Frame, Explained)>> = (0..n).map(|_| Vec::new()).collect();
    for m in chosen {
        let t0 = Instant::now();
        let maps = m.explain(x, &target)?;
        let seconds = t0.elapsed().as_secs_f64() / n as f64;
        let probabilities: Vec<Vec<f32>> = maps.probabilities()?.to_vec2()?;
        let totals: Vec<f64> = maps
            .maps
            .to_dtype(DType::F64)?
            .flatten_from(1)?
            .sum(1)?
            .to_vec1()?;
        let resolution = m.resolution();
        let shown = match resolution {
            Resolution::Features => maps.upsampled((28, 28), Upsampling::Bilinear)?,
            Resolution::Input => maps.clone(),
        }
        .scaled(MapScaling::ReluMinMax)?;
        let shown_maps: Vec<Vec<f32>> = shown
            .maps
            .flatten_from(1)?
            .to_dtype(DType::F32)?
            .to_vec2()?;
        for (i, slot) in out.iter_mut().enumerate() {
            let class = maps.classes.classes_of(i)[0];
            let probability = probabilities[i][class];
            let frame = Frame {
                image: images[i].clone(),
                map: shown_maps[i].clone(),
                height: 28,
                width: 28,
                caption: format!(
                    "{}\nCLASS {class} P={probability:.2}",
                    m.name().to_uppercase()
                ),
            };
            slot.push((
                frame,
                Explained {
                    method: m.name().into(),
                    resolution: match resolution {
                        Resolution::Features => "features".into(),
                        Resolution::Input => "input".into(),
                    },
                    class,
                    probability,
                    status: shown.statuses[i].to_string(),
                    total: totals[i],
                    seconds,
                },
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, try_parse};

    fn args(extra: &[&str], out: &std::path::Path) -> ExplainArgs {
        let w = format!("{}/../fixtures/weights", env!("CARGO_MANIFEST_DIR"));
        let o = out.display().to_string();
        let mut v = vec!["explain", "--weights-dir", &w, "--out", &o];
        v.extend_from_slice(extra);
        match parse(&v) {
            crate::Command::Explain(a) => a,
            _ => panic!("not explain"),
        }
    }

    #[test]
    fn each_model_offers_its_methods_and_the_cam_sum_is_the_logit_less_bias() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("e.png");
        // Every method but the three slow ones, on each model that has it.
        for (model, expected) in [
            ("gapcnn", &METHOD_NAMES[..]),
            ("oracle", &METHOD_NAMES[1..]),
            ("mlp", &METHOD_NAMES[5..]),
        ] {
            for method in expected {
                if ["score-cam", "integrated-gradients", "smoothgrad"].contains(method) {
                    continue;
                }
                let s = run(&args(
                    &["--method", method, "--index", "0", "--model", model],
                    &out,
                ))
                .unwrap();
                assert_eq!(s.maps.len(), 1);
                assert_eq!(s.maps[0].method, *method);
                assert_eq!(s.label, 7, "fixture test image 0 is a 7");
                assert_eq!(s.maps[0].class, 7, "{model} {method} explains its decision");
            }
        }
        assert!(out.is_file());
        // CAM's signed map sums to h w (logit - bias) over its 7 x 7 grid / (h w) ...
        // i.e. CAM summed over the grid is h w times the class's pooled logit term.
        let s = run(&args(&["--method", "cam", "--index", "0"], &out)).unwrap();
        let m = checkpoint::<GapCnn>(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/weights/gapcnn.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let test = mnist_data::Source::Fixtures.load().unwrap().test;
        let (x, _) = test_image(&test, 0, &Device::Cpu).unwrap();
        let logit: f32 = models::Classifier::logits(&m, &x)
            .unwrap()
            .get(0)
            .unwrap()
            .get(7)
            .unwrap()
            .to_scalar()
            .unwrap();
        let bias: f32 = models::CamModel::head(&m)
            .1
            .get(7)
            .unwrap()
            .to_scalar()
            .unwrap();
        let expected = 49.0 * f64::from(logit - bias);
        assert!(
            (s.maps[0].total - expected).abs() < 1e-3 * expected.abs().max(1.0),
            "CAM sum {} vs 49 (logit - bias) {expected}",
            s.maps[0].total
        );
    }

    #[test]
    fn a_method_the_model_lacks_or_an_unknown_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("e.png");
        let err = run(&args(
            &["--method", "cam", "--index", "0", "--model", "mlp"],
            &out,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--method cam") && err.contains("saliency"),
            "{err}"
        );
        let err = crate::tests::try_parse(&[
            "explain", "--method", "lime", "--index", "0", "--out", "x.png",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("occlusion"), "{err}");
    }

    fn many(extra: &[&str]) -> ExplainArgs {
        let w = format!("{}/../fixtures/weights", env!("CARGO_MANIFEST_DIR"));
        let mut v = vec!["explain", "--weights-dir", &w, "--n", "7", "--skip", "2"];
        v.extend_from_slice(extra);
        match parse(&v) {
            crate::Command::Explain(a) => a,
            _ => panic!("not explain"),
        }
    }

    /// Every MLP method over 7 fixture images in batches of 3: each image's rows are what
    /// the one-image run gives it (class, status; the map's sum to 1e-5), a strip per
    /// image is written, the tallies count the rows; and 3 shards explain disjoint
    /// batches whose rows together are the whole run's, byte for byte.
    #[test]
    fn many_images_rows_are_each_images_own_and_shards_together_write_the_whole_runs_rows() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("all.csv");
        let strips = dir.path().join("strips");
        let (c, o) = (csv.display().to_string(), strips.display().to_string());
        let common = [
            "--method",
            "all",
            "--model",
            "mlp",
            "--batch-size",
            "3",
            "--per-image",
        ];
        let mut line = common.to_vec();
        line.extend([c.as_str(), "--out", o.as_str()]);
        let whole = run_many(&many(&line)).unwrap();
        assert_eq!(whole.images, 7);
        let text = std::fs::read_to_string(&csv).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(rows.len(), 7 * whole.methods.len());
        assert_eq!(
            whole.methods.len(),
            METHOD_NAMES.len() - 5,
            "the MLP's methods"
        );
        for t in &whole.methods {
            let shown = rows.iter().filter(|r| r[2] == t.method).count();
            assert_eq!(t.informative + t.degenerate.values().sum::<usize>(), shown);
            let informative = rows
                .iter()
                .filter(|r| r[2] == t.method && r[5] == "informative")
                .count();
            assert_eq!(t.informative, informative, "{}", t.method);
        }
        for index in [2usize, 5, 8] {
            assert!(strips.join(format!("{index}.png")).is_file());
            let one = run(&args(
                &[
                    "--method",
                    "all",
                    "--model",
                    "mlp",
                    "--index",
                    &index.to_string(),
                ],
                &dir.path().join("one.png"),
            ))
            .unwrap();
            for m in &one.maps {
                let row = rows
                    .iter()
                    .find(|r| r[0] == index.to_string() && r[2] == m.method)
                    .unwrap();
                assert_eq!(row[1], one.label.to_string());
                assert_eq!(row[3], m.class.to_string(), "{index} {}", m.method);
                assert_eq!(row[5], m.status, "{index} {}", m.method);
                let total: f64 = row[6].parse().unwrap();
                assert!(
                    (total - m.total).abs() <= 1e-5 * m.total.abs().max(1.0),
                    "{index} {}: {total} in the batch, {} alone",
                    m.method,
                    m.total
                );
            }
        }

        let mut shard_rows: Vec<String> = Vec::new();
        let mut images = 0;
        for k in 0..3 {
            let path = dir.path().join(format!("s{k}.csv"));
            let p = path.display().to_string();
            let shard = format!("{k}/3");
            let mut line = common.to_vec();
            line.extend([p.as_str(), "--shard", shard.as_str()]);
            let s = run_many(&many(&line)).unwrap();
            assert_eq!(s.shard.as_deref(), Some(shard.as_str()));
            images += s.images;
            let t = std::fs::read_to_string(path).unwrap();
            shard_rows.extend(t.lines().skip(1).map(str::to_string));
        }
        assert_eq!(images, 7, "each image in exactly one shard");
        // Stable sort by index keeps each image's rows in method order.
        shard_rows.sort_by_key(|r| r.split(',').next().unwrap().parse::<usize>().unwrap());
        let expected: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
        assert_eq!(shard_rows, expected);
    }

    #[test]
    fn one_image_needs_out_and_the_many_flags_need_n() {
        let err = try_parse(&["explain", "--method", "cam", "--index", "0"]).unwrap_err();
        assert!(err.contains("--out"), "{err}");
        let err = try_parse(&[
            "explain", "--method", "cam", "--index", "0", "--n", "2", "--out", "x.png",
        ])
        .unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        let err = try_parse(&[
            "explain", "--method", "cam", "--index", "0", "--out", "x.png", "--shard", "0/2",
        ])
        .unwrap_err();
        assert!(
            err.contains("'--shard")
                && err.contains("'--index")
                && err.contains("cannot be used with"),
            "{err}"
        );
    }
}
