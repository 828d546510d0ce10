//! `type2_examples.png`: a few test images, clean and under each Type II attack, each
//! with f1's CAM of the class it predicts on that very image, drawn from the Type II
//! stages' kept examples ([`crate::stages::Type2Example`]).

use std::path::Path;

use cam::{Frame, OverlayStyle};

use crate::error::{HarnessError, Result};
use crate::stages::type2_examples::{Type2Example, EXAMPLE_ROWS};
use crate::stages::Type2Result;

/// Draws the figure into `path`: one row per image shown (the first [`EXAMPLE_ROWS`]
/// attacked), the clean image with the CAM of f1's class, then each attack's example
/// with the CAM of the class f1 predicts on it. A cell an attack did not reach (CW-L2
/// runs on fewer images) is drawn blank. Returns (examples shown, labels flipped).
pub fn type2_examples_figure(path: &Path, type2: &[Type2Result]) -> Result<(usize, usize)> {
    let plot_error = |message: String| HarnessError::Plot {
        path: path.to_path_buf(),
        message,
    };
    let attacked = type2.iter().map(|t| t.summary.images).max().unwrap_or(0);
    // Each row's clean side, from the first attack that kept an example of it.
    let shown: Vec<&Type2Example> = (0..EXAMPLE_ROWS.min(attacked))
        .filter_map(|i| {
            type2
                .iter()
                .find_map(|t| t.examples.iter().find(|e| e.index == i))
        })
        .collect();
    if shown.is_empty() {
        return Err(plot_error("no attacked test image to show".into()));
    }
    for t in type2 {
        if let Some(bad) = t.examples.iter().find(|e| {
            e.pixels.len() != 28 * 28
                || e.clean_pixels.len() != 28 * 28
                || e.clean.map.len() != 28 * 28
                || e.adversarial.map.len() != 28 * 28
        }) {
            return Err(plot_error(format!(
                "{} example of test image {} has {} pixels, not 784",
                t.attack,
                bad.index,
                bad.pixels.len()
            )));
        }
    }
    let style = OverlayStyle::default();
    let mut strips = Vec::with_capacity(shown.len());
    let (mut examples_shown, mut flipped) = (0, 0);
    for row in &shown {
        let (label, c) = (row.label, &row.clean);
        let mut frames = vec![Frame {
            image: row.clean_pixels.clone(),
            map: c.map.clone(),
            height: 28,
            width: 28,
            caption: format!(
                "CLEAN  LABEL {label}\nF1 {} P={:.2}\nCAM {}",
                c.class, c.probability, c.class
            ),
        }];
        for t in type2 {
            let attack = &t.attack;
            let frame = match t.examples.iter().find(|e| e.index == row.index) {
                Some(e) => {
                    let a = &e.adversarial;
                    examples_shown += 1;
                    flipped += usize::from(e.success);
                    let change = if e.success {
                        format!("L2 {:.2} LINF {:.2}", e.l2, e.linf)
                    } else {
                        "NOT FLIPPED".into()
                    };
                    Frame {
                        image: e.pixels.clone(),
                        map: a.map.clone(),
                        height: 28,
                        width: 28,
                        caption: format!(
                            "{attack}\nF1 {} P={:.2}  CAM {}\n{change}",
                            a.class, a.probability, a.class
                        ),
                    }
                }
                None => Frame {
                    image: vec![1.0; 28 * 28],
                    map: vec![0.0; 28 * 28],
                    height: 28,
                    width: 28,
                    caption: format!("{attack}\nNOT ATTACKED"),
                },
            };
            frames.push(frame);
        }
        strips.push(cam::frame_strip(&frames, &style)?);
    }
    let width = strips.iter().map(|s| s.width()).max().unwrap_or(0);
    let height = strips.iter().map(|s| s.height()).sum();
    let mut figure = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut y = 0;
    for s in &strips {
        image::imageops::replace(&mut figure, s, 0, i64::from(y));
        y += s.height();
    }
    cam::write_png(&figure, path)?;
    Ok((examples_shown, flipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::type2_examples::Decision;

    fn result(attack: &str, examples: Vec<Type2Example>) -> Type2Result {
        Type2Result {
            attack: attack.into(),
            summary: crate::stages::type2::Type2Summary {
                images: 20,
                success_rate: 0.0,
                robust_accuracy: 0.0,
                mean_l2: f64::NAN,
                mean_linf: f64::NAN,
                mean_l0: f64::NAN,
                gradient_masking_suspected: false,
                images_per_second: 1.0,
            },
            cam: crate::cam_change::MapChange::none(),
            l2_per_image: Vec::new(),
            linf_per_image: Vec::new(),
            examples,
            successes: Vec::new(),
        }
    }

    #[test]
    fn figure_has_a_row_per_image_and_a_column_per_attack() {
        let decision = |class| Decision {
            class,
            probability: 0.9,
            map: (0..784).map(|k| k as f32 / 784.0).collect(),
        };
        // Stand-ins: a grey ramp as the clean image, its inverse as the adversarial one.
        let example = |i: usize, success| Type2Example {
            index: i,
            label: i as u32,
            success,
            l2: 1.5,
            linf: 0.3,
            clean_pixels: (0..784).map(|k| (k % 28) as f32 / 28.0).collect(),
            pixels: (0..784).map(|k| 1.0 - (k % 28) as f32 / 28.0).collect(),
            clean: decision(i as u32),
            adversarial: decision(if success { 9 } else { i as u32 }),
        };
        let all = || (0..3).map(|i| example(i, i != 1)).collect::<Vec<_>>();
        let type2 = vec![
            result("fgsm", all()),
            result("pgd-linf", all()),
            result("pgd-l2", all()),
            // CW-L2 reached only the first two images.
            result("cw-l2", all().into_iter().take(2).collect()),
            result("deepfool", all()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("type2_examples.png");
        let (shown, flipped) = type2_examples_figure(&path, &type2).unwrap();
        assert_eq!((shown, flipped), (14, 9));
        let img = image::open(&path).unwrap().to_rgb8();
        // Six 224-px panels (28 px x 8) with 4-px margins; per row 4 + 224 + 3 caption
        // lines of 14 px + 4.
        assert_eq!(
            img.dimensions(),
            (6 * (224 + 4) + 4, 3 * (4 + 224 + 3 * 14 + 4))
        );

        // An example of the wrong size is an error naming the attack, not a panic.
        let mut bad = type2.clone();
        bad[0].examples[0].pixels.pop();
        let err = type2_examples_figure(&path, &bad).unwrap_err().to_string();
        assert!(
            err.contains("fgsm") && err.contains("type2_examples.png"),
            "{err}"
        );
    }
}
