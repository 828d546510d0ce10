//! `cargo xtask certify`: sound lower bounds on one test image's margins (IBP or CROWN)
//! and its certified radius, as a table and optionally JSON; or, with `--n`, the
//! certified radii of many test images (batch by batch, `--per-image` rows, `--shard`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use certify::{
    certified_radii, certified_radius, margin_bounds, margin_bounds_batch, MarginBounds, Method,
    Network, Norm, RadiusSearch,
};
use clap::{Args, ValueEnum};
use common::progress::{Bar, Progress};
use mnist_data::{BatchOptions, PixelFormat};
use models::{load_model, Classifier, GapCnn, Mlp, Oracle};
use serde::Serialize;
use serde_json::json;

use crate::data::SourceArgs;
use crate::load::{weights_file, ClassifierKind, FIXTURE_WEIGHTS};
use crate::output::{print_rows, write_json};

/// The ball's norm.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormArg {
    /// L2.
    #[value(name = "2")]
    L2,
    /// Linf.
    #[value(name = "inf")]
    Linf,
}

/// The bound method.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodArg {
    /// Interval bound propagation.
    Ibp,
    /// CROWN, intermediate bounds by CROWN where affordable (else IBP).
    Crown,
    /// CROWN with IBP's intermediate bounds.
    CrownIbp,
}

/// Flags of `cargo xtask certify`.
#[derive(Args, Debug)]
pub struct CertifyArgs {
    /// Index of the image in the test split (one image, every margin shown).
    #[arg(long, required_unless_present = "n", conflicts_with = "n")]
    pub index: Option<usize>,
    /// Certify N test images instead (the first N after `--skip`), batch by batch; the
    /// table then gives the radii's distribution.
    #[arg(long)]
    pub n: Option<usize>,
    /// With `--n`: skip this many test images first.
    #[arg(long, default_value_t = 0, conflicts_with = "index")]
    pub skip: usize,
    /// With `--n`: images per batch (the bisections of a batch run in lockstep; every
    /// image gets the radius it gets alone).
    #[arg(long, default_value_t = 100, conflicts_with = "index")]
    pub batch_size: usize,
    /// With `--n`: one CSV row per image (test index, label, prediction, radius, the
    /// bracket, evaluations, and the verdict at `--eps`), rewritten after every batch so
    /// an interrupted run keeps what it finished.
    #[arg(long, value_name = "FILE", conflicts_with = "index")]
    pub per_image: Option<PathBuf>,
    /// With `--n`: certify shard K of N only (K from 0): batch b belongs to shard
    /// `harness::owner("certify", b, N)`; the shards' `--per-image` rows together are the
    /// whole run's, number for number (docs/SCALE.md).
    #[arg(long, value_name = "K/N", conflicts_with = "index")]
    pub shard: Option<harness::Shard>,
    /// Norm of the ball.
    #[arg(long, value_enum)]
    pub norm: NormArg,
    /// Bound method.
    #[arg(long, value_enum, default_value = "crown")]
    pub method: MethodArg,
    /// Which classifier (gapcnn, mlp, oracle, robust-oracle).
    #[arg(long, value_enum, default_value = "gapcnn")]
    pub model: ClassifierKind,
    /// Checkpoint (default: the bundled fixtures/weights/<model>.safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Also print every margin's lower bound at this radius.
    #[arg(long)]
    pub eps: Option<f64>,
    /// Absolute width of the bisection's final bracket (default 1e-6 for Linf, 1e-5
    /// for L2; the bracket also stops at 1 % of the radius).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Where the test image comes from (the bundled fixtures by default).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The model's layer sequence as a bound network, and its logits function.
fn network(args: &CertifyArgs, device: &Device) -> Result<(Network, Box<dyn Classifier>, PathBuf)> {
    let w = args
        .weights
        .clone()
        .unwrap_or_else(|| weights_file(FIXTURE_WEIGHTS.as_ref(), args.model.into()));
    let context = || format!("loading {}", w.display());
    let (net, model): (Network, Box<dyn Classifier>) = match args.model {
        ClassifierKind::Gapcnn => {
            let m = load_model::<GapCnn>(&w, DType::F32, device).with_context(context)?;
            (Network::from_model(&m)?, Box::new(m))
        }
        ClassifierKind::Mlp => {
            let m = load_model::<Mlp>(&w, DType::F32, device).with_context(context)?;
            (Network::from_model(&m)?, Box::new(m))
        }
        ClassifierKind::Oracle | ClassifierKind::RobustOracle => {
            let m = load_model::<Oracle>(&w, DType::F32, device).with_context(context)?;
            (Network::from_model(&m)?, Box::new(m))
        }
    };
    Ok((net, model, w))
}

fn margins_json(b: &MarginBounds) -> serde_json::Value {
    json!(b
        .margins
        .iter()
        .map(|m| json!({ "class": m.other, "lower": m.lower }))
        .collect::<Vec<_>>())
}

/// The norm, method and bisection settings of the command line.
fn settings(args: &CertifyArgs, net: &Network) -> Result<(Norm, Method, RadiusSearch)> {
    let norm = match args.norm {
        NormArg::Linf => Norm::Linf,
        NormArg::L2 => Norm::L2,
    };
    let method = match args.method {
        MethodArg::Ibp => Method::Ibp,
        MethodArg::Crown => Method::crown(),
        MethodArg::CrownIbp => Method::crown_ibp(),
    };
    let mut search = RadiusSearch::default_for(norm, net.input_len());
    if let Some(t) = args.tolerance {
        if !(t.is_finite() && t > 0.0) {
            bail!("--tolerance must be > 0, got {t}");
        }
        search.tolerance = t;
    }
    if let Some(eps) = args.eps {
        if !(eps.is_finite() && eps >= 0.0) {
            bail!("--eps must be a radius >= 0, got {eps}");
        }
    }
    Ok((norm, method, search))
}

/// Prints the method and where its intermediate bounds come from.
fn print_method(net: &Network, norm: Norm, method: Method) -> Vec<usize> {
    let crown_layers = method.crown_intermediate_layers(net);
    println!(
        "method {}, norm {}; intermediate bounds: {}",
        method.name(),
        norm.name(),
        match (&method, crown_layers.is_empty()) {
            (Method::Ibp, _) => "IBP".to_string(),
            (_, true) =>
                "IBP at every layer (exact after one affine layer; CROWN over its budget elsewhere)"
                    .to_string(),
            (_, false) => format!("CROWN for the inputs of layers {crown_layers:?}, IBP elsewhere"),
        }
    );
    crown_layers
}

/// One test image (`--index`): prints the margins' bounds (with `--eps`) and the
/// certified radius, and writes `--json`; or many (`--n`): see [`certify_many`].
pub fn certify(args: &CertifyArgs) -> Result<()> {
    let Some(index) = args.index else {
        let summary = certify_many(args)?;
        print_rows(&summary.rows());
        return write_json(args.json.as_deref(), &summary);
    };
    let device = Device::Cpu;
    let (net, model, weights) = network(args, &device)?;
    let (norm, method, search) = settings(args, &net)?;
    let splits = args.source.source().load()?;
    let test = &splits.test;
    let label = test.label(index).with_context(|| {
        format!(
            "--index {index} is out of range: the test split has {} images",
            test.len()
        )
    })? as usize;
    let x: Tensor = test.images_tensor(&[index], PixelFormat::Gray, &device)?;
    let predicted = model.predict(&x)?[0] as usize;
    let image = x.squeeze(0)?;
    println!(
        "{} ({}), test image {index} of {}: label {label}, predicted {predicted}",
        args.model.name(),
        weights.display(),
        splits.origin
    );
    let crown_layers = print_method(&net, norm, method);

    let mut at_eps = None;
    if let Some(eps) = args.eps {
        let start = Instant::now();
        let b = margin_bounds(&net, &image, label, norm, eps, method)?;
        let seconds = start.elapsed().as_secs_f64();
        println!("\nlower bounds on Z_{label} - Z_j at eps {eps} ({seconds:.3} s):");
        println!("{:>5} {:>14}", "j", "bound");
        for m in &b.margins {
            println!("{:>5} {:>14.6}", m.other, m.lower);
        }
        println!(
            "certified at eps {eps}: {}",
            if b.certified() { "yes" } else { "no" }
        );
        at_eps = Some((b, seconds));
    }

    let start = Instant::now();
    let r = certified_radius(&net, &image, label, norm, method, search)?;
    let seconds = start.elapsed().as_secs_f64();
    println!();
    if !r.certified_at_zero {
        println!(
            "certified radius: 0 (the image itself is not certified as {label}: predicted {predicted})"
        );
    } else {
        println!(
            "certified radius (L{}): {:.7}  (bisection on [0, {}] to max({}, {} x radius): not certified at {:.7})",
            norm.name(),
            r.radius,
            search.upper,
            search.tolerance,
            search.relative,
            r.not_certified,
        );
    }
    println!(
        "{} bound evaluations, {seconds:.3} s ({:.3} s each)",
        r.evaluations,
        seconds / r.evaluations as f64
    );

    if let Some(path) = &args.json {
        let value = json!({
            "model": args.model.name(),
            "weights": weights.display().to_string(),
            "source": splits.origin.to_string(),
            "index": index,
            "label": label,
            "predicted": predicted,
            "norm": norm.name(),
            "method": method.name(),
            "crown_intermediate_layers": crown_layers,
            "eps": at_eps.as_ref().map(|(b, _)| b.eps),
            "margins_at_eps": at_eps.as_ref().map(|(b, _)| margins_json(b)),
            "certified_at_eps": at_eps.as_ref().map(|(b, _)| b.certified()),
            "seconds_at_eps": at_eps.as_ref().map(|(_, s)| *s),
            "radius": r.radius,
            "certified_at_zero": r.certified_at_zero,
            "not_certified": r.not_certified,
            "tolerance": search.tolerance,
            "relative_tolerance": search.relative,
            "search_upper": search.upper,
            "evaluations": r.evaluations,
            "seconds_radius": seconds,
            "margins_at_radius": margins_json(&r.at_radius),
        });
        let text = serde_json::to_string_pretty(&value)?;
        harness::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Columns of `certify --n --per-image`.
const CSV_HEADER: &str =
    "index,label,predicted,certified_at_zero,radius,not_certified,evaluations,certified_at_eps\n";

/// What `certify --n` measured: the radii's distribution over the images.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct CertifySummary {
    /// The certified model.
    pub model: String,
    /// Its checkpoint.
    pub weights: String,
    /// Where the images came from.
    pub data: String,
    /// Test index of the first image (`--skip`).
    pub first_index: usize,
    /// The shard (`K/N`) these numbers cover, if sharded.
    pub shard: Option<String>,
    /// `2` or `inf`.
    pub norm: String,
    /// The bound method.
    pub method: String,
    /// Images certified (this shard's, when sharded).
    pub images: usize,
    /// Of them, classified as labelled (`predicted == label`).
    pub correct: usize,
    /// Of them, certified at radius 0 (the bounds prove the label at the image itself).
    pub certified_at_zero: usize,
    /// Mean certified radius over all `images` (0 where not certified at 0: the
    /// average certified radius of Zhai et al. 2020).
    pub mean_radius: Option<f64>,
    /// Median certified radius over all `images` (0 where not certified at 0).
    pub median_radius: Option<f64>,
    /// `--eps`, if given.
    pub eps: Option<f64>,
    /// Images whose margins are all proved positive at `eps` (verified robust).
    pub certified_at_eps: Option<usize>,
    /// `certified_at_eps / images`: the verified accuracy at `eps`.
    pub verified_accuracy: Option<f64>,
    /// Bound evaluations over all images (each image's bisection counted alone).
    pub evaluations: usize,
    /// Wall time.
    pub seconds: f64,
}

impl CertifySummary {
    /// The table's rows: every rate with its denominator.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let of = |k: usize| {
            format!(
                "{:.2}% ({k} of {})",
                100.0 * k as f64 / self.images.max(1) as f64,
                self.images
            )
        };
        let radius = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.6}"));
        let mut rows = vec![
            ("model", self.model.clone()),
            ("data", self.data.clone()),
            ("images", self.images.to_string()),
            ("norm", self.norm.clone()),
            ("method", self.method.clone()),
            ("clean accuracy", of(self.correct)),
            ("certified at radius 0", of(self.certified_at_zero)),
            (
                "mean certified radius",
                format!(
                    "{} (over all {} images)",
                    radius(self.mean_radius),
                    self.images
                ),
            ),
            (
                "median certified radius",
                format!(
                    "{} (over all {} images)",
                    radius(self.median_radius),
                    self.images
                ),
            ),
        ];
        if let (Some(eps), Some(k)) = (self.eps, self.certified_at_eps) {
            rows.push(("verified accuracy", format!("{} at eps {eps}", of(k))));
        }
        rows.push(("bound evaluations", self.evaluations.to_string()));
        rows.push(("seconds", format!("{:.2}", self.seconds)));
        if let Some(shard) = &self.shard {
            rows.insert(0, ("shard", shard.clone()));
        }
        rows
    }
}

/// `--n` images, batch by batch (this shard's batches only, with `--shard`): each
/// image's certified radius for its label (0 where the bounds do not prove the label at
/// the image itself), and with `--eps` whether every margin is proved positive there.
fn certify_many(args: &CertifyArgs) -> Result<CertifySummary> {
    let n = args.n.unwrap_or(0);
    if n == 0 || args.batch_size == 0 {
        bail!("--n and --batch-size must be at least 1");
    }
    let device = Device::Cpu;
    let (net, model, weights) = network(args, &device)?;
    let (norm, method, search) = settings(args, &net)?;
    let splits = args.source.source().load()?;
    let available = splits.test.len();
    if args.skip >= available {
        bail!(
            "--skip {} leaves no test images ({available} in {})",
            args.skip,
            splits.origin
        );
    }
    let indices: Vec<usize> = (args.skip..available.min(args.skip + n)).collect();
    let test = splits.test.select(&indices)?;
    println!(
        "{} ({}), test images {}..{} of {}",
        args.model.name(),
        weights.display(),
        indices[0],
        indices[indices.len() - 1] + 1,
        splits.origin
    );
    print_method(&net, norm, method);
    let options = BatchOptions {
        batch_size: args.batch_size,
        ..Default::default()
    };
    let batches = test.len().div_ceil(args.batch_size);
    let mut bar = Bar::started("certify", batches as u64, "batches");
    let start = Instant::now();
    let mut csv = String::from(CSV_HEADER);
    let mut radii = Vec::new();
    let (mut correct, mut at_zero, mut at_eps, mut evaluations) = (0, 0, 0, 0);
    for (b, batch) in test.batches(&options, &device).enumerate() {
        if !args.shard.is_none_or(|s| s.owns("certify", b)) {
            bar.advance(1);
            continue;
        }
        let batch = batch?;
        let labels: Vec<usize> = batch
            .labels
            .to_vec1::<u32>()?
            .into_iter()
            .map(|l| l as usize)
            .collect();
        let predicted = model.predict(&batch.images)?;
        let found = certified_radii(&net, &batch.images, &labels, norm, method, search)
            .with_context(|| format!("batch {b}"))?;
        let verdicts: Option<Vec<bool>> = match args.eps {
            Some(eps) => Some(
                margin_bounds_batch(
                    &net,
                    &batch.images,
                    &labels,
                    norm,
                    &vec![eps; labels.len()],
                    method,
                )?
                .iter()
                .map(MarginBounds::certified)
                .collect(),
            ),
            None => None,
        };
        let first = args.skip + b * args.batch_size;
        for (i, r) in found.iter().enumerate() {
            let verdict = verdicts.as_ref().map(|v| v[i]);
            correct += usize::from(predicted[i] as usize == labels[i]);
            at_zero += usize::from(r.certified_at_zero);
            at_eps += usize::from(verdict == Some(true));
            evaluations += r.evaluations;
            radii.push(r.radius);
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                first + i,
                labels[i],
                predicted[i],
                r.certified_at_zero,
                r.radius,
                r.not_certified,
                r.evaluations,
                verdict.map_or(String::new(), |v| v.to_string())
            ));
        }
        if let Some(path) = &args.per_image {
            harness::write_atomic(path, csv.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        bar.set_message(&format!("{at_zero} of {} certified at 0", radii.len()));
        bar.advance(1);
    }
    bar.finish();
    let images = radii.len();
    let mean_radius = (images > 0).then(|| radii.iter().sum::<f64>() / images as f64);
    radii.sort_by(f64::total_cmp);
    let median_radius = (images > 0).then(|| {
        if images % 2 == 1 {
            radii[images / 2]
        } else {
            0.5 * (radii[images / 2 - 1] + radii[images / 2])
        }
    });
    Ok(CertifySummary {
        model: args.model.name().into(),
        weights: weights.display().to_string(),
        data: splits.origin.to_string(),
        first_index: args.skip,
        shard: args.shard.map(|s| s.to_string()),
        norm: norm.name().into(),
        method: method.name().into(),
        images,
        correct,
        certified_at_zero: at_zero,
        mean_radius,
        median_radius,
        eps: args.eps,
        certified_at_eps: args.eps.map(|_| at_eps),
        verified_accuracy: args.eps.map(|_| at_eps as f64 / images.max(1) as f64),
        evaluations,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, try_parse, weights};

    fn many(extra: &[&str], csv: &std::path::Path) -> CertifySummary {
        let w = weights("mlp.safetensors");
        let p = csv.display().to_string();
        let mut line = vec![
            "certify",
            "--model",
            "mlp",
            "--weights",
            &w,
            "--norm",
            "inf",
            "--n",
            "7",
            "--skip",
            "3",
            "--batch-size",
            "2",
            "--eps",
            "0.02",
            "--per-image",
            &p,
        ];
        line.extend_from_slice(extra);
        let crate::Command::Certify(args) = parse(&line) else {
            panic!("not certify")
        };
        certify_many(&args).unwrap()
    }

    /// CROWN on the MLP over 7 fixture images in batches of 2: every row is what the
    /// one-image functions give that image alone (radius, bracket, evaluations, verdict
    /// at eps); the table's counts and radii are the rows'; and 3 shards certify disjoint
    /// batches whose rows together are the whole run's, byte for byte.
    #[test]
    fn rows_are_each_images_own_and_shards_together_write_the_whole_runs_rows() {
        let dir = tempfile::tempdir().unwrap();
        let whole = many(&[], &dir.path().join("all.csv"));
        let text = std::fs::read_to_string(dir.path().join("all.csv")).unwrap();
        let rows: Vec<Vec<String>> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        assert_eq!(rows.len(), 7);
        assert_eq!(whole.images, 7);

        let device = Device::Cpu;
        let model = load_model::<Mlp>(
            std::path::Path::new(&weights("mlp.safetensors")),
            DType::F32,
            &device,
        )
        .unwrap();
        let net = Network::from_model(&model).unwrap();
        let test = mnist_data::Source::Fixtures.load().unwrap().test;
        let search = RadiusSearch::default_for(Norm::Linf, net.input_len());
        let (mut at_zero, mut at_eps, mut radii) = (0, 0, Vec::new());
        for (i, row) in rows.iter().enumerate() {
            let index = 3 + i;
            assert_eq!(row[0], index.to_string());
            let label = test.label(index).unwrap() as usize;
            assert_eq!(row[1], label.to_string());
            let x = test
                .images_tensor(&[index], PixelFormat::Gray, &device)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let alone =
                certified_radius(&net, &x, label, Norm::Linf, Method::crown(), search).unwrap();
            assert_eq!(row[3], alone.certified_at_zero.to_string(), "image {index}");
            assert_eq!(row[4], alone.radius.to_string(), "image {index}");
            assert_eq!(row[5], alone.not_certified.to_string(), "image {index}");
            assert_eq!(row[6], alone.evaluations.to_string(), "image {index}");
            let verdict = margin_bounds(&net, &x, label, Norm::Linf, 0.02, Method::crown())
                .unwrap()
                .certified();
            assert_eq!(row[7], verdict.to_string(), "image {index}");
            at_zero += usize::from(alone.certified_at_zero);
            at_eps += usize::from(verdict);
            radii.push(alone.radius);
        }
        assert!(
            at_zero > 0,
            "the MLP certifies some fixture image at radius 0"
        );
        assert_eq!(whole.certified_at_zero, at_zero);
        assert_eq!(whole.certified_at_eps, Some(at_eps));
        assert_eq!(whole.verified_accuracy, Some(at_eps as f64 / 7.0));
        assert_eq!(whole.mean_radius, Some(radii.iter().sum::<f64>() / 7.0));
        radii.sort_by(f64::total_cmp);
        assert_eq!(whole.median_radius, Some(radii[3]));

        let mut shard_rows: Vec<String> = Vec::new();
        let mut images = 0;
        for k in 0..3 {
            let csv = dir.path().join(format!("s{k}.csv"));
            let s = many(&["--shard", &format!("{k}/3")], &csv);
            assert_eq!(s.rows()[0], ("shard", format!("{k}/3")));
            images += s.images;
            let t = std::fs::read_to_string(csv).unwrap();
            shard_rows.extend(t.lines().skip(1).map(str::to_string));
        }
        assert_eq!(images, 7, "each image in exactly one shard");
        shard_rows.sort_by_key(|r| r.split(',').next().unwrap().parse::<usize>().unwrap());
        let expected: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
        assert_eq!(shard_rows, expected);
    }

    #[test]
    fn one_image_or_many_not_both_and_the_many_flags_need_n() {
        let err = try_parse(&["certify", "--norm", "2"]).unwrap_err();
        assert!(err.contains("--index") && err.contains("--n"), "{err}");
        let err = try_parse(&["certify", "--norm", "2", "--index", "0", "--n", "3"]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        for flag in ["--shard", "--per-image", "--batch-size", "--skip"] {
            let value = if flag == "--shard" { "0/2" } else { "1" };
            let err =
                try_parse(&["certify", "--norm", "2", "--index", "0", flag, value]).unwrap_err();
            assert!(
                err.contains(&format!("'{flag}"))
                    && err.contains("'--index")
                    && err.contains("cannot be used with"),
                "{flag}: {err}"
            );
        }
        let w = weights("mlp.safetensors");
        let line = [
            "certify",
            "--norm",
            "inf",
            "--n",
            "2",
            "--model",
            "mlp",
            "--weights",
            &w,
            "--eps=-0.5",
        ];
        let crate::Command::Certify(args) = parse(&line) else {
            panic!("not certify")
        };
        let msg = certify_many(&args).unwrap_err().to_string();
        assert!(
            msg.contains("--eps must be a radius >= 0, got -0.5"),
            "{msg}"
        );
    }
}
