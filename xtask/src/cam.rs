//! `cargo xtask cam`: one test image with its CAM and Grad-CAM side by side, as PNG.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cam::{
    class_activation_map, frame_strip, grad_cam, write_png, ActivationMaps, Frame, MapScaling,
    MapStatus, OverlayStyle, Target, Upsampling,
};
use candle_core::{DType, Device};
use clap::Args;
use mnist_data::PixelFormat;
use models::{load_model, GapCnn};

use crate::data::SourceArgs;

/// Flags of `cargo xtask cam`.
#[derive(Args, Debug)]
pub struct CamArgs {
    /// Index of the image in the test split.
    #[arg(long)]
    pub index: usize,
    /// Class the maps explain (default: the predicted class).
    #[arg(long)]
    pub class: Option<usize>,
    /// GapCnn checkpoint (safetensors).
    #[arg(long, default_value = "fixtures/weights/gapcnn.safetensors")]
    pub weights: PathBuf,
    /// Where the test image comes from (the bundled fixtures by default).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
}

/// One captioned panel: the map upsampled bilinearly to the image's size, ReLU then
/// min-max (pytorch-grad-cam's convention).
fn panel(name: &str, maps: &ActivationMaps, image: &[f32], size: (usize, usize)) -> Result<Frame> {
    let class = maps.classes.classes_of(0)[0];
    let probability: f32 = maps.probabilities()?.get(0)?.get(class)?.to_scalar()?;
    let scaled = maps
        .upsampled(size, Upsampling::Bilinear)?
        .scaled(MapScaling::ReluMinMax)?;
    let mut caption = format!("{name} {class} P={probability:.3}");
    if scaled.statuses[0] != MapStatus::Informative {
        eprintln!(
            "warning: the {name} map is degenerate: {}",
            scaled.statuses[0]
        );
        caption.push_str("\nDEGENERATE");
    }
    Ok(Frame {
        image: image.to_vec(),
        map: scaled.maps.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        height: size.0,
        width: size.1,
        caption,
    })
}

/// Renders the image's CAM and Grad-CAM and writes them as one PNG.
pub fn render(args: &CamArgs) -> Result<()> {
    let device = Device::Cpu;
    let splits = args.source.source().load()?;
    let test = &splits.test;
    let label = test.label(args.index).with_context(|| {
        format!(
            "--index {} is out of range: the test split has {} images",
            args.index,
            test.len()
        )
    })?;
    let model = load_model::<GapCnn>(&args.weights, DType::F32, &device)
        .with_context(|| format!("loading {}", args.weights.display()))?;
    let x = test.images_tensor(&[args.index], PixelFormat::Gray, &device)?;
    let image: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let size = (test.rows(), test.cols());
    let target = args.class.map_or(Target::Predicted, Target::Class);
    let cam_maps = class_activation_map(&model, &x, &target)?;
    let grad_maps = grad_cam(&model, &x, &target)?;
    let frames = [
        panel("CAM", &cam_maps, &image, size)?,
        panel("GRAD-CAM", &grad_maps, &image, size)?,
    ];
    let strip = frame_strip(&frames, &OverlayStyle::default())?;
    write_png(&strip, &args.out)?;
    println!(
        "test image {} (label {label}): wrote {}",
        args.index,
        args.out.display()
    );
    Ok(())
}
