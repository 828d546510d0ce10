//! What a Type I mode writes for a person to check: the success grid (originals beside
//! attacked images, captioned with every verdict) and the pairs' table as CSV.

use std::path::Path;

use cam::{Frame, OverlayStyle};
use candle_core::{DType, Device, D};
use mnist_data::{Dataset, PixelFormat};
use models::Classifier;

use super::panel::{ModeRun, PairRow};
use crate::error::Result;

/// A grid a person can judge: for up to `max` examples (the consensus successes first,
/// then the others), the original beside the attacked image, captioned with f1's class
/// and probability on each and every judge's verdict on the attacked one.
pub fn success_grid(
    run: &ModeRun,
    test: &Dataset,
    f1: &dyn Classifier,
    max: usize,
    path: &Path,
    device: &Device,
) -> Result<()> {
    let mut order: Vec<usize> = (0..run.rows.len())
        .filter(|&i| run.rows[i].verdict().consensus())
        .collect();
    order.extend((0..run.rows.len()).filter(|&i| !run.rows[i].verdict().consensus()));
    order.truncate(max);
    if order.is_empty() {
        return Ok(());
    }
    let originals: Vec<usize> = order.iter().map(|&i| run.rows[i].index).collect();
    let x = test
        .images_tensor(&originals, PixelFormat::Gray, device)
        .map_err(models::ModelError::from)?;
    let probs: Vec<Vec<f32>> = candle_nn::ops::softmax(&f1.logits(&x)?, D::Minus1)?
        .to_dtype(DType::F32)?
        .to_vec2()?;
    let clean: Vec<Vec<f32>> = x.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?;
    let style = OverlayStyle {
        scale: 4,
        alpha: 0.0,
        caption_scale: 1,
        ..OverlayStyle::default()
    };
    let per_row = 6;
    let mut strips = Vec::new();
    for chunk in order
        .chunks(per_row)
        .zip(clean.chunks(per_row))
        .zip(probs.chunks(per_row))
    {
        let ((rows, cleans), ps) = chunk;
        let mut frames = Vec::new();
        for ((&i, c), p) in rows.iter().zip(cleans).zip(ps) {
            let r = &run.rows[i];
            let y = r.keep as usize;
            frames.push(Frame {
                image: c.clone(),
                map: vec![0.0; 784],
                height: 28,
                width: 28,
                caption: format!("X {}\nF1 {} {:.2}\nTO {}", r.index, y, p[y], r.target),
            });
            let v = r.verdict();
            let mark = if v.consensus() { "YES" } else { "NO" };
            frames.push(Frame {
                image: run.images[i].clone(),
                map: vec![0.0; 784],
                height: 28,
                width: 28,
                caption: format!(
                    "F1 {} {:.2}\nSTD {} ROB {}\nKNN {} {mark}",
                    r.f1_pred, r.f1_prob, r.standard, r.robust, r.knn
                ),
            });
        }
        strips.push(cam::frame_strip(&frames, &style)?);
    }
    let width = strips.iter().map(|s| s.width()).max().unwrap_or(1);
    let height: u32 = strips.iter().map(|s| s.height()).sum();
    let mut grid = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut y = 0i64;
    for s in &strips {
        image::imageops::replace(&mut grid, s, 0, y);
        y += i64::from(s.height());
    }
    cam::write_png(&grid, path)?;
    Ok(())
}

/// The pairs' rows as CSV (one line per pair, the verdicts spelled out).
pub fn rows_csv(rows: &[PairRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let v = r.verdict();
            vec![
                r.index.to_string(),
                r.keep.to_string(),
                r.target.to_string(),
                r.f1_pred.to_string(),
                format!("{:.4}", r.f1_prob),
                r.standard.to_string(),
                r.robust.to_string(),
                r.knn.to_string(),
                v.success().to_string(),
                v.consensus().to_string(),
                r.iterations.to_string(),
                format!("{:.5}", r.l2),
                format!("{:.5}", r.linf),
            ]
        })
        .collect();
    crate::artifact::csv(
        &[
            "index",
            "f1_keep",
            "target",
            "f1_pred",
            "f1_prob",
            "standard_oracle",
            "robust_oracle",
            "knn",
            "success",
            "consensus",
            "iterations",
            "l2",
            "linf",
        ],
        &body,
    )
}
