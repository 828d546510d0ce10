//! Structural similarity (SSIM, Wang, Bovik, Sheikh and Simoncelli, IEEE TIP 2004)
//! between two `height x width` maps.
//!
//! Local statistics are weighted means over a sliding window, computed only where the
//! window fits inside the map ("valid" filtering, as Wang et al.'s MATLAB `filter2(...,
//! 'valid')`, and equal to scikit-image's result, which filters the whole image and then
//! crops the border of half a window). The SSIM is the mean of the local SSIM map
//!
//! `((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`
//!
//! with `C1 = (K1 L)^2`, `C2 = (K2 L)^2`, `K1 = 0.01`, `K2 = 0.03` and `L` the data range
//! given by the caller (1 for maps normalised to [0, 1]).

use serde::{Deserialize, Serialize};

use crate::error::{check_shape, ensure_finite, ensure_same_len, MetricsError, Result};

/// Constant of the luminance term.
pub const SSIM_K1: f64 = 0.01;
/// Constant of the contrast-structure term.
pub const SSIM_K2: f64 = 0.03;

/// The sliding window of local statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SsimWindow {
    /// Wang et al.'s 11 x 11 Gaussian window, sigma 1.5, population (co)variances
    /// (scikit-image with `gaussian_weights=True, sigma=1.5, use_sample_covariance=False`).
    #[default]
    Gaussian11,
    /// scikit-image's default: a uniform 7 x 7 window with sample (co)variances
    /// (normalised by `49 / 48`). Fits maps down to 7 x 7.
    Uniform7,
}

impl SsimWindow {
    /// Side of the square window.
    pub fn size(self) -> usize {
        match self {
            Self::Gaussian11 => 11,
            Self::Uniform7 => 7,
        }
    }

    /// Normalised 1-D weights; the 2-D window is their outer product.
    fn weights(self) -> Vec<f64> {
        match self {
            Self::Gaussian11 => {
                let sigma: f64 = 1.5;
                let raw: Vec<f64> = (0..11)
                    .map(|i| {
                        let d = i as f64 - 5.0;
                        (-d * d / (2.0 * sigma * sigma)).exp()
                    })
                    .collect();
                let total: f64 = raw.iter().sum();
                raw.iter().map(|w| w / total).collect()
            }
            Self::Uniform7 => vec![1.0 / 7.0; 7],
        }
    }

    /// Factor turning the window's population (co)variances into the ones used.
    fn covariance_norm(self) -> f64 {
        match self {
            Self::Gaussian11 => 1.0,
            Self::Uniform7 => 49.0 / 48.0,
        }
    }
}

/// SSIM of two row-major `height x width` maps with Wang et al.'s Gaussian window
/// ([`SsimWindow::Gaussian11`]); `data_range` is `L`, the span of possible values.
pub fn ssim(a: &[f32], b: &[f32], height: usize, width: usize, data_range: f64) -> Result<f64> {
    ssim_with_window(a, b, height, width, data_range, SsimWindow::Gaussian11)
}

/// SSIM with a chosen window; see the module documentation. Both sides of the map
/// must be at least the window's size.
pub fn ssim_with_window(
    a: &[f32],
    b: &[f32],
    height: usize,
    width: usize,
    data_range: f64,
    window: SsimWindow,
) -> Result<f64> {
    ensure_same_len("first map", a, "second map", b)?;
    check_shape(a, height, width, "first map")?;
    ensure_finite("first map", a.iter().map(|&v| f64::from(v)))?;
    ensure_finite("second map", b.iter().map(|&v| f64::from(v)))?;
    if !(data_range.is_finite() && data_range > 0.0) {
        return Err(MetricsError::InvalidParameter {
            name: "data_range",
            value: data_range,
            reason: "must be finite and positive",
        });
    }
    let size = window.size();
    if height < size || width < size {
        return Err(MetricsError::MapTooSmall {
            height,
            width,
            window: size,
        });
    }
    let x: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    let y: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
    let product =
        |p: &[f64], q: &[f64]| -> Vec<f64> { p.iter().zip(q).map(|(u, v)| u * v).collect() };
    let weights = window.weights();
    let filter = |img: &[f64]| valid_filter(img, height, width, &weights);
    let (mu_x, mu_y) = (filter(&x), filter(&y));
    let (xx, yy, xy) = (
        filter(&product(&x, &x)),
        filter(&product(&y, &y)),
        filter(&product(&x, &y)),
    );

    let c1 = (SSIM_K1 * data_range).powi(2);
    let c2 = (SSIM_K2 * data_range).powi(2);
    let norm = window.covariance_norm();
    let mut total = 0.0;
    for i in 0..mu_x.len() {
        let (mx, my) = (mu_x[i], mu_y[i]);
        let vx = norm * (xx[i] - mx * mx);
        let vy = norm * (yy[i] - my * my);
        let cov = norm * (xy[i] - mx * my);
        total +=
            ((2.0 * mx * my + c1) * (2.0 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
    }
    Ok(total / mu_x.len() as f64)
}

/// Separable weighted sum over every window position that fits: the output is
/// `(height - k + 1) x (width - k + 1)`, row-major.
fn valid_filter(img: &[f64], height: usize, width: usize, weights: &[f64]) -> Vec<f64> {
    let k = weights.len();
    let (out_h, out_w) = (height - k + 1, width - k + 1);
    // Rows first: height x out_w.
    let mut rows = vec![0.0; height * out_w];
    for r in 0..height {
        for c in 0..out_w {
            let line = &img[r * width + c..r * width + c + k];
            rows[r * out_w + c] = line.iter().zip(weights).map(|(v, w)| v * w).sum();
        }
    }
    let mut out = vec![0.0; out_h * out_w];
    for r in 0..out_h {
        for c in 0..out_w {
            out[r * out_w + c] = weights
                .iter()
                .enumerate()
                .map(|(j, w)| w * rows[(r + j) * out_w + c])
                .sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_maps_give_the_luminance_term() {
        // No variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) everywhere.
        let (va, vb) = (0.2f32, 0.6f32);
        let (fa, fb) = (f64::from(va), f64::from(vb));
        let c1 = (0.01f64).powi(2);
        let want = (2.0 * fa * fb + c1) / (fa * fa + fb * fb + c1);
        for window in [SsimWindow::Gaussian11, SsimWindow::Uniform7] {
            let got =
                ssim_with_window(&[va; 28 * 28], &[vb; 28 * 28], 28, 28, 1.0, window).unwrap();
            assert!((got - want).abs() < 1e-9, "{window:?}: {got} vs {want}");
        }
    }

    #[test]
    fn structure_matters() {
        // A checkerboard against its inverse: strongly negative SSIM.
        let board: Vec<f32> = (0..144).map(|i| ((i / 12 + i % 12) % 2) as f32).collect();
        let inverse: Vec<f32> = board.iter().map(|v| 1.0 - v).collect();
        assert!(ssim(&board, &inverse, 12, 12, 1.0).unwrap() < -0.9);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            ssim(&[0.0; 49], &[0.0; 49], 7, 7, 1.0),
            Err(MetricsError::MapTooSmall { window: 11, .. })
        ));
        assert!(ssim_with_window(&[0.0; 49], &[0.0; 49], 7, 7, 1.0, SsimWindow::Uniform7).is_ok());
        assert!(matches!(
            ssim(&[0.0; 121], &[0.0; 121], 11, 11, 0.0),
            Err(MetricsError::InvalidParameter { .. })
        ));
        assert!(matches!(
            ssim(&[0.0; 121], &[0.0; 121], 10, 12, 1.0),
            Err(MetricsError::ShapeMismatch { .. })
        ));
    }

    proptest! {
        #![proptest_config(test_support::seeded(256))]
        #[test]
        fn ssim_of_a_map_with_itself_is_one(
            m in prop::collection::vec(0.0f32..1.0, 14 * 13),
            uniform in any::<bool>(),
        ) {
            let window = if uniform { SsimWindow::Uniform7 } else { SsimWindow::Gaussian11 };
            let s = ssim_with_window(&m, &m, 14, 13, 1.0, window).unwrap();
            prop_assert!((s - 1.0).abs() < 1e-9);
        }

        #[test]
        fn ssim_is_symmetric_and_at_most_one(
            a in prop::collection::vec(0.0f32..1.0, 12 * 12),
            b in prop::collection::vec(0.0f32..1.0, 12 * 12),
        ) {
            let ab = ssim(&a, &b, 12, 12, 1.0).unwrap();
            let ba = ssim(&b, &a, 12, 12, 1.0).unwrap();
            prop_assert!((ab - ba).abs() < 1e-12);
            prop_assert!(ab <= 1.0 + 1e-12);
        }
    }
}
