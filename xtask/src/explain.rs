//! `cargo xtask explain`: one test image explained by one method or by all ten, on
//! GapCnn (every method), the oracle (the Grad-CAM family and the gradient methods: it
//! has no GAP head, so no CAM) or the MLP (gradient and perturbation methods only), as
//! one PNG strip with a table and `--json`.
//!
//! Every map is shown the same way: upsampled bilinearly to 28 x 28 where it lives on
//! the feature grid, then ReLU and min-max (the evidence for the class, as
//! pytorch-grad-cam shows it); saliency and SmoothGrad are magnitudes already.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use cam::{
    cam_model_methods, classifier_methods, feature_classifier_methods, frame_strip, write_png,
    Explainer, Frame, MapScaling, OverlayStyle, Resolution, Target, Upsampling, METHOD_NAMES,
};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
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
    /// Index of the image in the test split.
    #[arg(long)]
    pub index: usize,
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
    /// Output PNG: the image under each method's map, one panel per method.
    #[arg(long)]
    pub out: PathBuf,
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

/// Explains the image, writes the PNG (and `--json`) and prints the table.
pub fn explain(args: &ExplainArgs) -> Result<()> {
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

fn run(args: &ExplainArgs) -> Result<ExplainSummary> {
    let device = Device::Cpu;
    let splits = args.source.source().load()?;
    let (x, label) = test_image(&splits.test, args.index, &device)?;
    let file = |name: &str| args.weights_dir.join(format!("{name}.safetensors"));
    let (maps, name) = match args.model {
        ExplainedModel::Gapcnn => {
            let m = checkpoint::<GapCnn>(&file("gapcnn"), &device)?;
            {
                let methods = cam_model_methods(&m);
                let maps = explain_with(&methods, args, &x)?;
                (maps, "gapcnn")
            }
        }
        ExplainedModel::Oracle => {
            let m = checkpoint::<Oracle>(&file("oracle"), &device)?;
            {
                let methods = feature_classifier_methods(&m);
                let maps = explain_with(&methods, args, &x)?;
                (maps, "oracle")
            }
        }
        ExplainedModel::Mlp => {
            let m = checkpoint::<Mlp>(&file("mlp"), &device)?;
            {
                let methods = classifier_methods(&m);
                let maps = explain_with(&methods, args, &x)?;
                (maps, "mlp")
            }
        }
    };
    let (frames, maps): (Vec<Frame>, Vec<Explained>) = maps.into_iter().unzip();
    write_png(&frame_strip(&frames, &OverlayStyle::default())?, &args.out)?;
    Ok(ExplainSummary {
        index: args.index,
        label,
        model: name.into(),
        out: args.out.display().to_string(),
        maps,
    })
}

/// Runs the selected methods of `methods` on `x` (one image).
fn explain_with(
    methods: &[Box<dyn Explainer + '_>],
    args: &ExplainArgs,
    x: &Tensor,
) -> Result<Vec<(Frame, Explained)>> {
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
    let image: Vec<f32> = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    let mut out = Vec::with_capacity(chosen.len());
    for m in chosen {
        let t0 = Instant::now();
        let maps = m.explain(x, &target)?;
        let seconds = t0.elapsed().as_secs_f64();
        let class = maps.classes.classes_of(0)[0];
        let probability: f32 = maps.probabilities()?.get(0)?.get(class)?.to_scalar()?;
        let total = maps
            .maps
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        let shown = match m.resolution() {
            Resolution::Features => maps.upsampled((28, 28), Upsampling::Bilinear)?,
            Resolution::Input => maps,
        }
        .scaled(MapScaling::ReluMinMax)?;
        let status = shown.statuses[0];
        let frame = Frame {
            image: image.clone(),
            map: shown.maps.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
            height: 28,
            width: 28,
            caption: format!(
                "{}\nCLASS {class} P={probability:.2}",
                m.name().to_uppercase()
            ),
        };
        out.push((
            frame,
            Explained {
                method: m.name().into(),
                resolution: match m.resolution() {
                    Resolution::Features => "features".into(),
                    Resolution::Input => "input".into(),
                },
                class,
                probability,
                status: status.to_string(),
                total,
                seconds,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::parse;

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
}
