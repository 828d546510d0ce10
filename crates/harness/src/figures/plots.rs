//! The charts, rendered in memory with plotters (text in the bundled DejaVu Sans Mono, so
//! a bare machine without system fonts draws them too), encoded as PNG and written
//! atomically.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::artifact::write_atomic;
use crate::error::{HarnessError, Result};
use crate::roc::RocComparison;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The font is bundled and valid; a failure would only mean text-less figures.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Encodes an RGB buffer as PNG and writes it atomically.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: Vec<u8>) -> Result<()> {
    let img = image::RgbImage::from_raw(width, height, rgb).ok_or_else(|| HarnessError::Plot {
        path: path.to_path_buf(),
        message: "buffer size does not match the image size".into(),
    })?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| HarnessError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

fn plot_err(path: &Path) -> impl Fn(String) -> HarnessError + '_ {
    move |message| HarnessError::Plot {
        path: path.to_path_buf(),
        message,
    }
}

/// `roc.png`: the clean, Type II and Type I curves, with f1's operating points.
pub fn roc_figure(path: &Path, roc: &RocComparison) -> Result<()> {
    register_font();
    let (w, h) = (760u32, 640u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err = plot_err(path);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "ROC of f1 for class {} (score: P(class {}))",
                    roc.positive_class, roc.positive_class
                ),
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let curves = [
            ("clean", &roc.clean, RGBColor(40, 40, 40)),
            (
                "Type II (positives attacked)",
                &roc.type2,
                RGBColor(214, 39, 40),
            ),
            (
                "Type I (added as negatives)",
                &roc.type1,
                RGBColor(31, 119, 180),
            ),
        ];
        for (name, c, color) in curves {
            let pts: Vec<(f64, f64)> = c
                .curve
                .fpr
                .iter()
                .copied()
                .zip(c.curve.tpr.iter().copied())
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(format!(
                    "{name}: AUC {:.4}, TPR {:.3}, FPR {:.3}",
                    c.auc, c.tpr, c.fpr
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(std::iter::once(Circle::new(
                    (c.fpr, c.tpr),
                    6,
                    color.filled(),
                )))
                .map_err(|e| err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_png(path, w, h, buf)
}

/// A scatter of CLEVER scores (x) against the smallest perturbation an attack found
/// (y), with the diagonal: points below it are attacks smaller than the "lower bound".
pub fn clever_scatter(path: &Path, title: &str, points: &[(f64, f64)]) -> Result<()> {
    register_font();
    let (w, h) = (640u32, 560u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err = plot_err(path);
    let top = points
        .iter()
        .flat_map(|&(a, b)| [a, b])
        .filter(|v| v.is_finite())
        .fold(0.1f64, f64::max)
        * 1.1;
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..top, 0f64..top)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("CLEVER score (estimated lower bound)")
            .y_desc("smallest perturbation found")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, 0.0), (top, top)],
                BLACK.mix(0.4),
            ))
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, RGBColor(214, 39, 40).filled())),
            )
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_png(path, w, h, buf)
}

/// `sandwich.png`: per image (sorted by the found distance), the certified radius, the
/// CLEVER estimate and the smallest perturbation found, in two panels (L2, Linf) on a
/// log scale; a sound certificate lies below the found mark, CLEVER ideally between.
pub fn sandwich_figure(path: &Path, s: &crate::stages::sandwich::SandwichResult) -> Result<()> {
    register_font();
    let (w, h) = (1100u32, 520u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err = plot_err(path);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let panels = root.split_evenly((1, 2));
        type Pick = fn(&crate::stages::sandwich::SandwichRow) -> &crate::stages::sandwich::Bounds;
        let geometries: [(&str, Pick); 2] = [("L2", |r| &r.l2), ("Linf", |r| &r.linf)];
        for (panel, (name, pick)) in panels.iter().zip(geometries) {
            let mut rows: Vec<&crate::stages::sandwich::Bounds> = s.rows.iter().map(pick).collect();
            rows.sort_by(|a, b| {
                let key = |x: &crate::stages::sandwich::Bounds| x.found.unwrap_or(f64::INFINITY);
                key(a).total_cmp(&key(b))
            });
            let values = rows
                .iter()
                .flat_map(|b| [Some(b.certified), Some(b.clever), b.found])
                .flatten()
                .filter(|v| v.is_finite() && *v > 0.0);
            let (lo, hi) = values.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
            // Room above the marks for the legend.
            let (lo, hi) = if lo <= hi {
                (lo / 2.0, hi * 40.0)
            } else {
                (1e-6, 1.0)
            };
            let n = rows.len().max(1);
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!("{name}: certified ({}) <= CLEVER <= found", s.method),
                    ("sans-serif", 17),
                )
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo..hi).log_scale())
                .map_err(|e| err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("image (sorted by the distance found)")
                .y_desc(format!("{name} distance"))
                .x_labels(n.min(20))
                .x_label_formatter(&|v| format!("{}", v.round() as i64))
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(|e| err(e.to_string()))?;
            type Mark = fn(&crate::stages::sandwich::Bounds) -> Option<f64>;
            let marks: [(&str, RGBColor, Mark); 3] = [
                ("certified", RGBColor(44, 160, 44), |b| Some(b.certified)),
                ("CLEVER", RGBColor(31, 119, 180), |b| Some(b.clever)),
                ("found", RGBColor(214, 39, 40), |b| b.found),
            ];
            for (label, color, value) in marks {
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .enumerate()
                    .filter_map(|(k, b)| value(b).map(|v| (k as f64, v)))
                    .filter(|(_, v)| v.is_finite() && *v > 0.0)
                    .collect();
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| err(e.to_string()))?
                    .label(label)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_png(path, w, h, buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roc::{roc_comparison, Scored};

    #[test]
    fn figures_render_to_png() {
        let s = |score: f64, positive| Scored {
            score,
            predicted_positive: score > 0.5,
            positive,
        };
        let clean = vec![s(0.9, true), s(0.7, true), s(0.3, false), s(0.1, false)];
        let roc =
            roc_comparison(3, &clean, &[s(0.2, true), s(0.8, true)], &[s(0.9, false)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("roc.png");
        roc_figure(&p, &roc).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (760, 640));
        // Something besides white was drawn, text included (dark pixels in the caption band).
        let dark = img
            .pixels()
            .filter(|p| p.0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 500, "{dark}");
        let q = dir.path().join("scatter.png");
        clever_scatter(&q, "CLEVER vs CW-L2", &[(0.5, 1.0), (1.0, 0.8)]).unwrap();
        assert!(image::open(&q).is_ok());
    }
}
