//! The transition strips: the frames of one Type I run, each with f1's CAM of the class it
//! decides there and, for the study's figure, the study's defective map below.

use std::path::{Path, PathBuf};

use cam::{Frame, OverlayStyle, SingleChannelAblation};
use candle_core::{Device, Tensor};
use metrics::{pearson_correlation, spearman_correlation};
use mnist_data::Dataset;
use models::{Classifier, GapCnn};
use serde::{Deserialize, Serialize};

use super::StripFrames;
use crate::bundle::Models;
use crate::cam_change::{cam_28, rows};
use crate::config::ExperimentConfig;
use crate::error::Result;

/// Paths of the transition strips.
pub fn strip_path(out: &Path, from: u8, to: u32) -> PathBuf {
    out.join(format!("type1_{from}_to_{to}.png"))
}

/// One strip per target for the strip image: the frames with the real CAM (f1's
/// arg-max class) on the top row and the study's defective map below; returns the
/// defective map's mean (Spearman, Pearson) with the real class-7 CAM and the frames seen.
pub(super) fn draw_strips(
    models: &Models,
    test: &Dataset,
    config: &ExperimentConfig,
    strips: &[&StripFrames],
    out: &Path,
    device: &Device,
) -> Result<(f64, f64, usize)> {
    let from = test.label(config.strip_index).unwrap_or(0);
    let (mut sp, mut pe, mut frames_seen) = (0.0, 0.0, 0usize);
    for s in strips {
        if s.frames.is_empty() {
            continue;
        }
        let frames: Vec<vae_attack::Frame> = s
            .frames
            .iter()
            .map(|(iteration, pixels)| vae_attack::Frame {
                iteration: *iteration,
                pixels: pixels.clone(),
            })
            .collect();
        let strip = transition_strip(&models.gapcnn, &models.oracle, &frames, true, device)?;
        for &(s, p) in &strip.study_map_agreement {
            sp += s;
            pe += p;
            frames_seen += 1;
        }
        cam::write_png(&strip.image, &strip_path(out, from, s.target))?;
    }
    let n = frames_seen.max(1) as f64;
    Ok((sp / n, pe / n, frames_seen))
}

/// What f1 and the oracle read on one frame of a transition strip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameReading {
    /// The attack's iteration.
    pub iteration: usize,
    /// f1's arg-max class (the class its CAM on the frame explains).
    pub f1_class: u32,
    /// f1's probability of that class.
    pub f1_probability: f32,
    /// The oracle's arg-max class.
    pub oracle: u32,
}

/// One pair's transition strip, drawn by [`transition_strip`].
#[derive(Debug, Clone)]
pub struct TransitionStrip {
    /// The frames in order, each with f1's CAM of its arg-max class and a caption
    /// (iteration, f1's class and probability, the oracle's class); with the study map, a
    /// second row of the study's defective map below.
    pub image: image::RgbImage,
    /// Per frame, what the captions say.
    pub readings: Vec<FrameReading>,
    /// With the study map: per frame whose maps are not constant, the Spearman and
    /// Pearson correlation of the defective map with the real class-7 CAM.
    pub study_map_agreement: Vec<(f64, f64)>,
}

/// Draws the frames of one Type I (or transition) run: on every frame f1's class and
/// probability, the oracle's class and f1's CAM of its class (min-max, bilinear); with
/// `study_map`, a second row with the study's defective map
/// ([`cam::SingleChannelAblation`]: channel K-1, class 7, whatever the image).
pub fn transition_strip(
    f1: &GapCnn,
    oracle: &dyn Classifier,
    frames: &[vae_attack::Frame],
    study_map: bool,
    device: &Device,
) -> Result<TransitionStrip> {
    if frames.is_empty() {
        return Err(crate::HarnessError::Other(
            "a transition strip needs at least one frame".into(),
        ));
    }
    let pixels: Vec<f32> = frames.iter().flat_map(|f| f.pixels.clone()).collect();
    let x = Tensor::from_vec(pixels, (frames.len(), 1, 28, 28), device)?;
    let logits = f1.logits(&x)?;
    let pred: Vec<u32> = logits.argmax(candle_core::D::Minus1)?.to_vec1()?;
    let probs = candle_nn::ops::softmax(&logits, candle_core::D::Minus1)?.to_vec2::<f32>()?;
    let verdicts = oracle.predict(&x)?;
    let real = cam_28(
        f1,
        &x,
        &pred.iter().map(|&c| c as usize).collect::<Vec<_>>(),
    )?;
    let real_rows = rows(&real.maps)?;
    let readings: Vec<FrameReading> = frames
        .iter()
        .enumerate()
        .map(|(f, frame)| FrameReading {
            iteration: frame.iteration,
            f1_class: pred[f],
            f1_probability: probs[f][pred[f] as usize],
            oracle: verdicts[f],
        })
        .collect();
    let top: Vec<Frame> = frames
        .iter()
        .zip(&readings)
        .zip(real_rows)
        .map(|((frame, r), map)| Frame {
            image: frame.pixels.clone(),
            map,
            height: 28,
            width: 28,
            caption: format!(
                "IT {}\nF1 {} P={:.2}\nORACLE {}\nCAM {}",
                r.iteration, r.f1_class, r.f1_probability, r.oracle, r.f1_class
            ),
        })
        .collect();
    let style = OverlayStyle::default();
    let a = cam::frame_strip(&top, &style)?;
    if !study_map {
        return Ok(TransitionStrip {
            image: a,
            readings,
            study_map_agreement: Vec::new(),
        });
    }
    let real7 = rows(&cam_28(f1, &x, &vec![7; frames.len()])?.maps)?;
    let ablation = SingleChannelAblation::default();
    let defective = rows(
        &cam::single_channel_ablation_map(f1, &x, &ablation)?
            .upsampled((28, 28), SingleChannelAblation::STUDY_UPSAMPLING)?
            .scaled(SingleChannelAblation::STUDY_SCALING)?
            .maps,
    )?;
    let bottom: Vec<Frame> = frames
        .iter()
        .zip(&defective)
        .map(|(frame, map)| Frame {
            image: frame.pixels.clone(),
            map: map.clone(),
            height: 28,
            width: 28,
            caption: "STUDY MAP\nCH. K-1 CLASS 7".into(),
        })
        .collect();
    let study_map_agreement = real7
        .iter()
        .zip(&defective)
        .filter_map(|(r, d)| {
            Some((
                spearman_correlation(r, d).ok()?,
                pearson_correlation(r, d).ok()?,
            ))
        })
        .collect();
    let b = cam::frame_strip(&bottom, &style)?;
    Ok(TransitionStrip {
        image: stack_vertically(&[a, b]),
        readings,
        study_map_agreement,
    })
}

/// `image` under a white band with `title` in black (the captions' font, twice their size).
pub fn titled(image: &image::RgbImage, title: &str) -> Result<image::RgbImage> {
    let scale = 2 * OverlayStyle::default().caption_scale;
    let band = (cam::GLYPH_HEIGHT + 2) * scale;
    let width = image.width().max(cam::text_width(title, scale) + 2 * scale);
    let mut out =
        image::RgbImage::from_pixel(width, band + image.height(), image::Rgb([255, 255, 255]));
    cam::draw_text(&mut out, scale, scale, title, scale, [0, 0, 0])?;
    image::imageops::replace(&mut out, image, 0, i64::from(band));
    Ok(out)
}

/// The images one below the other, left-aligned, on white (as wide as the widest).
pub fn stack_vertically(images: &[image::RgbImage]) -> image::RgbImage {
    let width = images.iter().map(|i| i.width()).max().unwrap_or(0);
    let height = images.iter().map(|i| i.height()).sum();
    let mut out = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut y = 0i64;
    for i in images {
        image::imageops::replace(&mut out, i, 0, y);
        y += i64::from(i.height());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use mnist_data::PixelFormat;
    use models::{load_model, Oracle};

    fn weights(file: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/weights")
            .join(file)
    }

    #[test]
    fn stack_vertically_puts_each_image_below_the_last() {
        let a = image::RgbImage::from_pixel(3, 2, image::Rgb([1, 1, 1]));
        let b = image::RgbImage::from_pixel(5, 1, image::Rgb([2, 2, 2]));
        let s = stack_vertically(&[a, b]);
        assert_eq!(s.dimensions(), (5, 3));
        assert_eq!(s.get_pixel(2, 1).0, [1, 1, 1]);
        assert_eq!(
            s.get_pixel(4, 1).0,
            [255, 255, 255],
            "white beside the narrower"
        );
        assert_eq!(s.get_pixel(4, 2).0, [2, 2, 2]);
    }

    #[test]
    fn a_title_goes_above_the_image() {
        let a = image::RgbImage::from_pixel(200, 10, image::Rgb([9, 9, 9]));
        let t = titled(&a, "7 TO 9").unwrap();
        let band = t.height() - 10;
        assert_eq!(t.width(), 200);
        assert_eq!(t.get_pixel(0, band).0, [9, 9, 9]);
        let dark = (0..band)
            .flat_map(|y| (0..200).map(move |x| (x, y)))
            .filter(|&(x, y)| t.get_pixel(x, y).0 == [0, 0, 0])
            .count();
        assert!(dark > 0, "the title is drawn");
        assert!(
            titled(&a, "7 \u{2192} 9").is_err(),
            "a glyph the font lacks"
        );
    }

    #[test]
    fn strip_captions_are_f1s_and_the_oracles_readings() {
        let device = Device::Cpu;
        let f1 = load_model::<GapCnn>(&weights("gapcnn.safetensors"), DType::F32, &device).unwrap();
        let oracle =
            load_model::<Oracle>(&weights("oracle.safetensors"), DType::F32, &device).unwrap();
        let test = mnist_data::Source::Fixtures.load().unwrap().test;
        let picked = [0usize, 1, 2];
        let x = test
            .images_tensor(&picked, PixelFormat::Gray, &device)
            .unwrap();
        let frames: Vec<vae_attack::Frame> = x
            .flatten_from(1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, pixels)| vae_attack::Frame {
                iteration: 10 * i,
                pixels,
            })
            .collect();
        let plain = transition_strip(&f1, &oracle, &frames, false, &device).unwrap();
        let f1_pred = f1.predict(&x).unwrap();
        let oracle_pred = oracle.predict(&x).unwrap();
        let probs = candle_nn::ops::softmax(&f1.logits(&x).unwrap(), candle_core::D::Minus1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (i, r) in plain.readings.iter().enumerate() {
            assert_eq!(r.iteration, 10 * i);
            assert_eq!(r.f1_class, f1_pred[i]);
            assert_eq!(r.oracle, oracle_pred[i]);
            assert_eq!(r.f1_probability, probs[i][f1_pred[i] as usize]);
        }
        assert!(plain.study_map_agreement.is_empty());
        let both = transition_strip(&f1, &oracle, &frames, true, &device).unwrap();
        assert_eq!(both.image.width(), plain.image.width());
        assert!(both.image.height() > plain.image.height());
        let top =
            image::imageops::crop_imm(&both.image, 0, 0, plain.image.width(), plain.image.height());
        assert!(
            top.to_image() == plain.image,
            "the CAM row comes first, unchanged"
        );
        assert_eq!(both.readings, plain.readings);
        assert!(transition_strip(&f1, &oracle, &[], false, &device).is_err());
    }
}
