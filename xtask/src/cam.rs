//! `cargo xtask cam`: one test image with its CAM and Grad-CAM side by side, as PNG.

use std::path::PathBuf;

use anyhow::Result;
use cam::{
    class_activation_map, frame_strip, grad_cam, write_png, ActivationMaps, Frame, MapScaling,
    MapStatus, OverlayStyle, Target, Upsampling,
};
use candle_core::{DType, Device};
use clap::Args;
use models::GapCnn;
use serde::Serialize;

use crate::data::SourceArgs;
use crate::load::{checkpoint, test_image};

/// Flags of `cargo xtask cam`.
#[derive(Args, Debug)]
pub struct CamArgs {
    /// Index of the image in the test split.
    #[arg(long)]
    pub index: usize,
    /// Class the maps explain (default: the predicted class).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..10))]
    pub class: Option<u32>,
    /// GapCnn checkpoint (safetensors).
    #[arg(long, default_value = "fixtures/weights/gapcnn.safetensors")]
    pub weights: PathBuf,
    /// Where the test image comes from (the bundled fixtures by default).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the image's label and each map's class, probability and status as
    /// JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// One map of the picture.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MapSummary {
    /// `CAM` or `GRAD-CAM`.
    pub method: String,
    /// The class it explains.
    pub class: usize,
    /// f1's probability of that class.
    pub probability: f32,
    /// Whether the map says anything (`informative`) or is degenerate.
    pub status: String,
}

/// What `cargo xtask cam` prints.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct CamSummary {
    /// Test index.
    pub index: usize,
    /// Its label.
    pub label: u8,
    /// The PNG written.
    pub out: String,
    /// CAM, then Grad-CAM.
    pub maps: Vec<MapSummary>,
}

/// One captioned panel: the map upsampled bilinearly to the image's size, ReLU then
/// min-max (pytorch-grad-cam's convention).
fn panel(
    name: &str,
    maps: &ActivationMaps,
    image: &[f32],
    size: (usize, usize),
) -> Result<(Frame, MapSummary)> {
    let class = maps.classes.classes_of(0)[0];
    let probability: f32 = maps.probabilities()?.get(0)?.get(class)?.to_scalar()?;
    let scaled = maps
        .upsampled(size, Upsampling::Bilinear)?
        .scaled(MapScaling::ReluMinMax)?;
    let mut caption = format!("{name} {class} P={probability:.3}");
    let status = scaled.statuses[0];
    if status != MapStatus::Informative {
        eprintln!("warning: the {name} map is degenerate: {status}");
        caption.push_str("\nDEGENERATE");
    }
    let frame = Frame {
        image: image.to_vec(),
        map: scaled.maps.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        height: size.0,
        width: size.1,
        caption,
    };
    let summary = MapSummary {
        method: name.to_string(),
        class,
        probability,
        status: status.to_string(),
    };
    Ok((frame, summary))
}

/// Renders the image's CAM and Grad-CAM and writes them as one PNG (and `--json`).
pub fn render(args: &CamArgs) -> Result<()> {
    let summary = draw(args)?;
    println!(
        "test image {} (label {}): wrote {}",
        summary.index, summary.label, summary.out
    );
    for m in &summary.maps {
        println!(
            "{}: class {}, P={:.3}, {}",
            m.method, m.class, m.probability, m.status
        );
    }
    crate::output::write_json(args.json.as_deref(), &summary)
}

fn draw(args: &CamArgs) -> Result<CamSummary> {
    let device = Device::Cpu;
    let splits = args.source.source().load()?;
    let test = &splits.test;
    let (x, label) = test_image(test, args.index, &device)?;
    let model = checkpoint::<GapCnn>(&args.weights, &device)?;
    let image: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let size = (test.rows(), test.cols());
    let target = args
        .class
        .map_or(Target::Predicted, |c| Target::Class(c as usize));
    let cam_maps = class_activation_map(&model, &x, &target)?;
    let grad_maps = grad_cam(&model, &x, &target)?;
    let (a, sa) = panel("CAM", &cam_maps, &image, size)?;
    let (b, sb) = panel("GRAD-CAM", &grad_maps, &image, size)?;
    let strip = frame_strip(&[a, b], &OverlayStyle::default())?;
    write_png(&strip, &args.out)?;
    Ok(CamSummary {
        index: args.index,
        label,
        out: args.out.display().to_string(),
        maps: vec![sa, sb],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, weights};

    fn args(index: &str, out: &std::path::Path) -> CamArgs {
        let w = weights("gapcnn.safetensors");
        let o = out.display().to_string();
        match parse(&["cam", "--index", index, "--weights", &w, "--out", &o]) {
            crate::Command::Cam(a) => a,
            _ => panic!("not cam"),
        }
    }

    #[test]
    fn json_names_the_predicted_class_and_its_probability() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("c.png");
        let s = draw(&args("0", &out)).unwrap();
        assert!(out.is_file());
        assert_eq!(s.label, 7, "fixture test image 0 is MNIST's first 7");
        let device = Device::Cpu;
        let model = checkpoint::<GapCnn>(
            std::path::Path::new(&weights("gapcnn.safetensors")),
            &device,
        )
        .unwrap();
        let test = mnist_data::Source::Fixtures.load().unwrap().test;
        let (x, _) = test_image(&test, 0, &device).unwrap();
        let probs = crate::load::probabilities(&model, &x).unwrap().remove(0);
        let top = (0..10)
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap();
        for m in &s.maps {
            assert_eq!(m.class, top);
            assert!((m.probability - probs[top]).abs() < 1e-5);
        }
    }

    #[test]
    fn an_index_outside_the_split_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = draw(&args("500", &dir.path().join("c.png")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--index 500") && err.contains("500 images"),
            "{err}"
        );
    }
}
