//! How much CAM moved between two sets of images, summarised over pairs.

use cam::{class_activation_map, MapScaling, MapStatus, ScaledMaps, Target, Upsampling};
use candle_core::Tensor;
use metrics::{
    centre_of_mass_shift, pearson_correlation, spearman_correlation, ssim, top_k_intersection,
};
use models::CamModel;
use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};

/// Mean map-change figures over the pairs whose maps were both informative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CamChange {
    /// Pairs measured.
    pub pairs: usize,
    /// Pairs skipped because a map was constant (no ranking, no centre of mass).
    pub skipped: usize,
    /// Mean top-10% intersection (1: the same hottest pixels).
    #[serde(with = "crate::nan::float")]
    pub topk: f64,
    /// Mean Spearman rank correlation.
    #[serde(with = "crate::nan::float")]
    pub spearman: f64,
    /// Mean Pearson correlation.
    #[serde(with = "crate::nan::float")]
    pub pearson: f64,
    /// Mean centre-of-mass shift, in input pixels.
    #[serde(with = "crate::nan::float")]
    pub com_shift: f64,
    /// Mean SSIM (data range 1).
    #[serde(with = "crate::nan::float")]
    pub ssim: f64,
}

impl CamChange {
    /// No pair measured: every mean is NaN (`null` in JSON), not a misleading 0.
    pub fn none() -> Self {
        Self {
            pairs: 0,
            skipped: 0,
            topk: f64::NAN,
            spearman: f64::NAN,
            pearson: f64::NAN,
            com_shift: f64::NAN,
            ssim: f64::NAN,
        }
    }
}

/// CAM for the given class per image, upsampled bilinearly to 28 x 28, min-max scaled
/// (the official CAM convention, signed map).
pub fn cam_28<M: CamModel + ?Sized>(
    model: &M,
    images: &Tensor,
    classes: &[usize],
) -> Result<ScaledMaps> {
    let maps = class_activation_map(model, images, &Target::PerImage(classes.to_vec()))?;
    Ok(maps
        .upsampled((28, 28), Upsampling::Bilinear)?
        .scaled(MapScaling::MinMax)?)
}

/// The rows of an `N x 28 x 28` tensor as vectors.
pub fn rows(maps: &Tensor) -> Result<Vec<Vec<f32>>> {
    let n = maps.dim(0).map_err(cam::CamError::from)?;
    let flat = maps
        .reshape((n, ()))
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec2())
        .map_err(cam::CamError::from)?;
    Ok(flat)
}

/// Mean change between `a[i]` and `b[i]` (both 28 x 28 in [0, 1]).
pub fn compare(a: &ScaledMaps, b: &ScaledMaps) -> Result<CamChange> {
    let (ra, rb) = (rows(&a.maps)?, rows(&b.maps)?);
    if ra.len() != rb.len() {
        return Err(HarnessError::Other("map sets of different sizes".into()));
    }
    let mut out = CamChange {
        topk: 0.0,
        spearman: 0.0,
        pearson: 0.0,
        com_shift: 0.0,
        ssim: 0.0,
        ..CamChange::none()
    };
    let k = 78; // 10 % of 784 pixels
    for i in 0..ra.len() {
        if a.statuses[i] != MapStatus::Informative || b.statuses[i] != MapStatus::Informative {
            out.skipped += 1;
            continue;
        }
        let (x, y) = (&ra[i], &rb[i]);
        let figures = (|| -> Result<[f64; 5]> {
            Ok([
                top_k_intersection(x, y, k)?,
                spearman_correlation(x, y)?,
                pearson_correlation(x, y)?,
                centre_of_mass_shift(x, y, 28, 28)?,
                ssim(x, y, 28, 28, 1.0)?,
            ])
        })();
        match figures {
            Ok(f) => {
                out.pairs += 1;
                out.topk += f[0];
                out.spearman += f[1];
                out.pearson += f[2];
                out.com_shift += f[3];
                out.ssim += f[4];
            }
            Err(_) => out.skipped += 1,
        }
    }
    if out.pairs == 0 {
        return Ok(CamChange {
            skipped: out.skipped,
            ..CamChange::none()
        });
    }
    {
        let n = out.pairs as f64;
        out.topk /= n;
        out.spearman /= n;
        out.pearson /= n;
        out.com_shift /= n;
        out.ssim /= n;
    }
    Ok(out)
}
