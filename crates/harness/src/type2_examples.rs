//! `type2_examples.png`: a few test images, clean and under each Type II attack, each
//! with f1's CAM of the class it predicts on that very image. The adversarial images are
//! kept in the Type II stages' results, so the figure is drawn again from cached stages.

use std::path::Path;

use attacks::AttackOutcome;
use cam::{Frame, OverlayStyle};
use candle_core::{Device, Tensor, D};
use mnist_data::{Dataset, PixelFormat};
use models::Classifier;
use serde::{Deserialize, Serialize};

use crate::cam_change::{cam_28, rows};
use crate::error::{HarnessError, Result};
use crate::runner::{Models, Type2Figures};

/// Test images (the first ones attacked) shown in the figure, one row each.
pub const EXAMPLE_ROWS: usize = 3;

/// One adversarial example kept for the figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type2Example {
    /// Test index of the attacked image.
    pub index: usize,
    /// Its true label.
    pub label: u32,
    /// The attack flipped f1's (correct) decision.
    pub success: bool,
    /// L2 of the perturbation.
    #[serde(with = "crate::nan::float")]
    pub l2: f64,
    /// Linf of the perturbation.
    #[serde(with = "crate::nan::float")]
    pub linf: f64,
    /// The adversarial image, 28 x 28 grey in [0, 1], row-major.
    pub pixels: Vec<f32>,
}

/// The first `count` examples of one attack batch (`indices` and `labels` of its images).
pub fn examples_of(
    outcome: &AttackOutcome,
    indices: &[usize],
    labels: &[u32],
    count: usize,
) -> Result<Vec<Type2Example>> {
    let take = count.min(indices.len()).min(outcome.len());
    (0..take)
        .map(|j| {
            Ok(Type2Example {
                index: indices[j],
                label: labels[j],
                success: outcome.success[j],
                l2: outcome.l2[j],
                linf: outcome.linf[j],
                pixels: outcome
                    .adversarial
                    .get(j)?
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1()?,
            })
        })
        .collect()
}

/// What f1 says on some images: (class, probability) and the 28 x 28 CAM of that class.
fn decided_with_cam(
    models: &Models,
    images: &[Vec<f32>],
    device: &Device,
) -> Result<Vec<(u32, f32, Vec<f32>)>> {
    let n = images.len();
    let x = Tensor::from_vec(images.concat(), (n, 1, 28, 28), device)?;
    let logits = models.gapcnn.logits(&x)?;
    let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    let probs: Vec<Vec<f32>> = candle_nn::ops::softmax(&logits, D::Minus1)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec2()?;
    let classes: Vec<usize> = pred.iter().map(|&c| c as usize).collect();
    let maps = rows(&cam_28(&models.gapcnn, &x, &classes)?.maps)?;
    Ok(pred
        .iter()
        .zip(probs)
        .zip(maps)
        .map(|((&c, p), m)| (c, p[c as usize], m))
        .collect())
}

/// Draws the figure into `path`: one row per image shown (the first [`EXAMPLE_ROWS`]
/// attacked), the clean image with the CAM of f1's class, then each attack's example
/// with the CAM of the class f1 predicts on it. A cell an attack did not reach (CW-L2
/// runs on fewer images) is drawn blank. Returns (examples shown, labels flipped).
pub fn type2_examples_figure(
    path: &Path,
    models: &Models,
    test: &Dataset,
    type2: &[Type2Figures],
    device: &Device,
) -> Result<(usize, usize)> {
    let attacked = type2.iter().map(|t| t.images).max().unwrap_or(0);
    let shown: Vec<usize> = (0..EXAMPLE_ROWS.min(attacked).min(test.len())).collect();
    if shown.is_empty() {
        return Err(HarnessError::Plot {
            path: path.to_path_buf(),
            message: "no attacked test image to show".into(),
        });
    }
    let clean = test
        .images_tensor(&shown, PixelFormat::Gray, device)
        .map_err(models::ModelError::from)?;
    let clean_pixels = rows(&clean)?;
    let clean_decided = decided_with_cam(models, &clean_pixels, device)?;
    // Per attack, its examples of the rows shown, decided in one batch.
    let mut columns = Vec::with_capacity(type2.len());
    for t in type2 {
        let examples: Vec<&Type2Example> = shown
            .iter()
            .filter_map(|&i| t.examples.iter().find(|e| e.index == i))
            .collect();
        if let Some(bad) = examples.iter().find(|e| e.pixels.len() != 28 * 28) {
            return Err(HarnessError::Plot {
                path: path.to_path_buf(),
                message: format!(
                    "{} example of test image {} has {} pixels, not 784",
                    t.attack,
                    bad.index,
                    bad.pixels.len()
                ),
            });
        }
        let decided = if examples.is_empty() {
            Vec::new()
        } else {
            let pixels: Vec<Vec<f32>> = examples.iter().map(|e| e.pixels.clone()).collect();
            decided_with_cam(models, &pixels, device)?
        };
        columns.push((t.attack.as_str(), examples, decided));
    }
    let style = OverlayStyle::default();
    let mut strips = Vec::with_capacity(shown.len());
    let (mut examples_shown, mut flipped) = (0, 0);
    for (r, &i) in shown.iter().enumerate() {
        let label = test.label(i).unwrap_or(0);
        let (c, p, map) = &clean_decided[r];
        let mut frames = vec![Frame {
            image: clean_pixels[r].clone(),
            map: map.clone(),
            height: 28,
            width: 28,
            caption: format!("CLEAN  LABEL {label}\nF1 {c} P={p:.2}\nCAM {c}"),
        }];
        for (attack, examples, decided) in &columns {
            let frame = match examples.iter().position(|e| e.index == i) {
                Some(k) => {
                    let (e, (c, p, map)) = (examples[k], &decided[k]);
                    examples_shown += 1;
                    flipped += usize::from(e.success);
                    let change = if e.success {
                        format!("L2 {:.2} LINF {:.2}", e.l2, e.linf)
                    } else {
                        "NOT FLIPPED".into()
                    };
                    Frame {
                        image: e.pixels.clone(),
                        map: map.clone(),
                        height: 28,
                        width: 28,
                        caption: format!("{attack}\nF1 {c} P={p:.2}  CAM {c}\n{change}"),
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
    use candle_core::DType;
    use models::init_model;

    fn figures(attack: &str, examples: Vec<Type2Example>) -> Type2Figures {
        Type2Figures {
            attack: attack.into(),
            images: 20,
            success_rate: 0.0,
            robust_accuracy: 0.0,
            mean_l2: f64::NAN,
            mean_linf: f64::NAN,
            mean_l0: f64::NAN,
            gradient_masking_suspected: false,
            images_per_second: 1.0,
            cam: crate::cam_change::MapChange::none(),
            l2_per_image: Vec::new(),
            linf_per_image: Vec::new(),
            examples,
        }
    }

    #[test]
    fn figure_has_a_row_per_image_and_a_column_per_attack() {
        let dev = Device::Cpu;
        let models = Models {
            gapcnn: init_model(0, DType::F32, &dev).unwrap().0,
            mlp: init_model(1, DType::F32, &dev).unwrap().0,
            oracle: init_model(2, DType::F32, &dev).unwrap().0,
            svae: init_model(3, DType::F32, &dev).unwrap().0,
            robust_oracle: init_model(4, DType::F32, &dev).unwrap().0,
        };
        let test = mnist_data::Source::Fixtures.load().unwrap().test;
        let clean = rows(
            &test
                .images_tensor(&[0, 1, 2], PixelFormat::Gray, &dev)
                .unwrap(),
        )
        .unwrap();
        // Stand-ins for adversarial images: the clean ones, inverted.
        let example = |i: usize, success| Type2Example {
            index: i,
            label: u32::from(test.label(i).unwrap()),
            success,
            l2: 1.5,
            linf: 0.3,
            pixels: clean[i].iter().map(|v| 1.0 - v).collect(),
        };
        let all = || (0..3).map(|i| example(i, i != 1)).collect::<Vec<_>>();
        let type2 = vec![
            figures("fgsm", all()),
            figures("pgd-linf", all()),
            figures("pgd-l2", all()),
            // CW-L2 reached only the first two images.
            figures("cw-l2", all().into_iter().take(2).collect()),
            figures("deepfool", all()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("type2_examples.png");
        let (shown, flipped) = type2_examples_figure(&path, &models, &test, &type2, &dev).unwrap();
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
        let err = type2_examples_figure(&path, &models, &test, &bad, &dev)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fgsm") && err.contains("type2_examples.png"),
            "{err}"
        );
    }
}
