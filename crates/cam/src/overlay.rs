//! Rendering: a heat map blended over the grey digit, a captioned strip of such frames,
//! and an atomic PNG writer.

use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};

use crate::colormap::Colormap;
use crate::error::{CamError, Result};
use crate::font::{draw_text, GLYPH_HEIGHT};

/// How an overlay is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlayStyle {
    /// Every input pixel becomes a `scale x scale` block (nearest), 1..=64. Default 8.
    pub scale: u32,
    /// Weight of the heat map over the grey image, in [0, 1]. Default 0.5.
    pub alpha: f32,
    /// The heat map's colours. Default viridis.
    pub colormap: Colormap,
    /// Size of a caption's font pixel in image pixels, 1..=16. Default 2.
    pub caption_scale: u32,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        Self {
            scale: 8,
            alpha: 0.5,
            colormap: Colormap::Viridis,
            caption_scale: 2,
        }
    }
}

impl OverlayStyle {
    fn validate(&self) -> Result<()> {
        if !(1..=64).contains(&self.scale) {
            return Err(CamError::InvalidArgument(format!(
                "overlay scale {} is not in 1..=64",
                self.scale
            )));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(CamError::InvalidArgument(format!(
                "overlay alpha {} is not in [0, 1]",
                self.alpha
            )));
        }
        if !(1..=16).contains(&self.caption_scale) {
            return Err(CamError::InvalidArgument(format!(
                "caption scale {} is not in 1..=16",
                self.caption_scale
            )));
        }
        Ok(())
    }
}

/// One panel of a strip: a grey image, its map (same size, values in [0, 1], e.g.
/// upsampled and min-max scaled) and a caption (lines separated by `\n`).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Grey pixels in [0, 1], row-major `height x width`.
    pub image: Vec<f32>,
    /// Map values in [0, 1] (clamped), row-major `height x width`.
    pub map: Vec<f32>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Caption under the panel, e.g. `"CAM 7 P=0.94"`; may be empty.
    pub caption: String,
}

fn check_plane(name: &'static str, values: &[f32], height: usize, width: usize) -> Result<()> {
    if height == 0 || width == 0 || values.len() != height * width {
        return Err(CamError::Shape(format!(
            "{name} has {} values, expected {height} x {width}",
            values.len()
        )));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(CamError::NotFinite(name));
    }
    Ok(())
}

/// The heat map in `style.colormap`, alpha-blended over the grey image and upscaled:
/// `(1 - alpha) * grey + alpha * colour(map)` per channel.
pub fn overlay(
    image: &[f32],
    map: &[f32],
    height: usize,
    width: usize,
    style: &OverlayStyle,
) -> Result<RgbImage> {
    style.validate()?;
    check_plane("image", image, height, width)?;
    check_plane("map", map, height, width)?;
    let s = style.scale;
    let mut out = RgbImage::new(width as u32 * s, height as u32 * s);
    for r in 0..height {
        for c in 0..width {
            let i = r * width + c;
            let grey = image[i].clamp(0.0, 1.0) * 255.0;
            let heat = style.colormap.color(map[i]);
            let px = Rgb(heat
                .map(|h| ((1.0 - style.alpha) * grey + style.alpha * f32::from(h)).round() as u8));
            for dy in 0..s {
                for dx in 0..s {
                    out.put_pixel(c as u32 * s + dx, r as u32 * s + dy, px);
                }
            }
        }
    }
    Ok(out)
}

/// Frames side by side on a white background, each with its caption below it in
/// black (the built-in 3 x 5 font; a caption wider than its panel is clipped).
pub fn frame_strip(frames: &[Frame], style: &OverlayStyle) -> Result<RgbImage> {
    const MARGIN: u32 = 4;
    if frames.is_empty() {
        return Err(CamError::InvalidArgument(
            "a strip needs at least one frame".into(),
        ));
    }
    let panels = frames
        .iter()
        .map(|f| overlay(&f.image, &f.map, f.height, f.width, style))
        .collect::<Result<Vec<_>>>()?;
    let line_height = (GLYPH_HEIGHT + 2) * style.caption_scale;
    let caption_lines = frames
        .iter()
        .map(|f| {
            if f.caption.is_empty() {
                0
            } else {
                f.caption.lines().count() as u32
            }
        })
        .max()
        .unwrap_or(0);
    let panel_height = panels.iter().map(|p| p.height()).max().unwrap_or(0);
    let width = panels.iter().map(|p| p.width() + MARGIN).sum::<u32>() + MARGIN;
    let height = MARGIN + panel_height + caption_lines * line_height + MARGIN;
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let mut x = MARGIN;
    for (panel, frame) in panels.iter().zip(frames) {
        image::imageops::replace(&mut out, panel, i64::from(x), i64::from(MARGIN));
        let mut caption = RgbImage::from_pixel(
            panel.width(),
            caption_lines * line_height,
            Rgb([255, 255, 255]),
        );
        for (i, line) in frame.caption.lines().enumerate() {
            draw_text(
                &mut caption,
                0,
                i as u32 * line_height + style.caption_scale,
                line,
                style.caption_scale,
                [0, 0, 0],
            )?;
        }
        image::imageops::replace(
            &mut out,
            &caption,
            i64::from(x),
            i64::from(MARGIN + panel_height),
        );
        x += panel.width() + MARGIN;
    }
    Ok(out)
}

/// PNG bytes of an image.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)?;
    Ok(bytes)
}

/// Writes an image as PNG atomically: a temporary file in the same directory, then a
/// rename, so an interrupted run never leaves a half-written file. Creates the directory.
pub fn write_png(image: &RgbImage, path: &Path) -> Result<()> {
    let bytes = encode_png(image)?;
    common::write_atomic(path, |tmp| std::fs::write(tmp, &bytes)).map_err(|e| CamError::Io {
        path: e.path,
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(caption: &str) -> Frame {
        Frame {
            image: (0..16).map(|i| i as f32 / 15.0).collect(),
            map: (0..16).map(|i| (15 - i) as f32 / 15.0).collect(),
            height: 4,
            width: 4,
            caption: caption.into(),
        }
    }

    #[test]
    fn overlay_blends_grey_and_colour() {
        let style = OverlayStyle {
            scale: 2,
            ..OverlayStyle::default()
        };
        let img = overlay(&[1.0, 0.0], &[0.0, 1.0], 1, 2, &style).unwrap();
        assert_eq!(img.dimensions(), (4, 2));
        // White pixel, map 0 (viridis [68, 1, 84]): halfway between.
        assert_eq!(img.get_pixel(1, 1).0, [162, 128, 170]);
        // Black pixel, map 1 (viridis [253, 231, 37]).
        assert_eq!(img.get_pixel(2, 0).0, [127, 116, 19]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let style = OverlayStyle::default();
        assert!(matches!(
            overlay(&[0.0; 3], &[0.0; 4], 2, 2, &style),
            Err(CamError::Shape(_))
        ));
        assert!(matches!(
            overlay(&[0.0; 4], &[f32::NAN; 4], 2, 2, &style),
            Err(CamError::NotFinite("map"))
        ));
        let bad = OverlayStyle {
            alpha: 1.5,
            ..style
        };
        assert!(matches!(
            overlay(&[0.0; 4], &[0.0; 4], 2, 2, &bad),
            Err(CamError::InvalidArgument(_))
        ));
        assert!(frame_strip(&[], &style).is_err());
        assert!(matches!(
            frame_strip(&[frame("why?")], &style),
            Err(CamError::UnsupportedCharacter('?'))
        ));
    }

    #[test]
    fn strip_has_room_for_panels_and_captions_and_round_trips_as_png() {
        let style = OverlayStyle::default();
        let strip = frame_strip(&[frame("CAM 7\nP=0.94"), frame("GRAD-CAM 7")], &style).unwrap();
        // 2 panels of 32 px + 3 margins of 4; 32 px + 2 caption lines of 14 px + 2 margins.
        assert_eq!(strip.dimensions(), (76, 68));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("strip.png");
        write_png(&strip, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back, strip);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }
}
