//! `cargo xtask certify`: sound lower bounds on one test image's margins (IBP or CROWN)
//! and its certified radius, as a table and optionally JSON.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use certify::{certified_radius, margin_bounds, MarginBounds, Method, Network, Norm, RadiusSearch};
use clap::{Args, ValueEnum};
use mnist_data::PixelFormat;
use models::{load_model, Classifier, GapCnn, Mlp, Oracle};
use serde_json::json;

use crate::data::SourceArgs;
use crate::load::ModelKind;

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
    /// Index of the image in the test split.
    #[arg(long)]
    pub index: usize,
    /// Norm of the ball.
    #[arg(long, value_enum)]
    pub norm: NormArg,
    /// Bound method.
    #[arg(long, value_enum, default_value = "crown")]
    pub method: MethodArg,
    /// Which classifier (gapcnn, mlp, oracle, robust-oracle).
    #[arg(long, value_enum, default_value = "gapcnn")]
    pub model: ModelKind,
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
    if args.model == ModelKind::Svae {
        bail!("the SVAE is not a classifier of images; certify gapcnn, mlp or oracle");
    }
    let file = file_kind(args.model);
    let w = args
        .weights
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("fixtures/weights/{file}.safetensors")));
    let context = || format!("loading {}", w.display());
    let (net, model): (Network, Box<dyn Classifier>) = match args.model {
        ModelKind::Gapcnn => {
            let m = load_model::<GapCnn>(&w, DType::F32, device).with_context(context)?;
            (Network::from_model(&m)?, Box::new(m))
        }
        ModelKind::Mlp => {
            let m = load_model::<Mlp>(&w, DType::F32, device).with_context(context)?;
            (Network::from_model(&m)?, Box::new(m))
        }
        _ => {
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

/// Prints the margins' bounds (with `--eps`) and the certified radius; writes `--json`.
pub fn certify(args: &CertifyArgs) -> Result<()> {
    let device = Device::Cpu;
    let (net, model, weights) = network(args, &device)?;
    let splits = args.source.source().load()?;
    let test = &splits.test;
    let label = test.label(args.index).with_context(|| {
        format!(
            "--index {} is out of range: the test split has {} images",
            args.index,
            test.len()
        )
    })? as usize;
    let x: Tensor = test.images_tensor(&[args.index], PixelFormat::Gray, &device)?;
    let predicted = model.predict(&x)?[0] as usize;
    let image = x.squeeze(0)?;
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
    let crown_layers = method.crown_intermediate_layers(&net);
    println!(
        "{} ({}), test image {} of {}: label {label}, predicted {predicted}",
        file_kind(args.model),
        weights.display(),
        args.index,
        splits.origin
    );
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
            "model": file_kind(args.model),
            "weights": weights.display().to_string(),
            "source": splits.origin.to_string(),
            "index": args.index,
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

fn file_kind(m: ModelKind) -> &'static str {
    match m {
        ModelKind::Gapcnn => "gapcnn",
        ModelKind::Mlp => "mlp",
        ModelKind::Oracle => "oracle",
        ModelKind::RobustOracle => "robust-oracle",
        ModelKind::Svae => "svae",
    }
}
