//! Resizing maps to the input's size (7 x 7 -> 28 x 28 for `GapCnn`).
//!
//! Both conventions are linear maps applied as two matrix products (rows, then
//! columns), so they act on any dtype and device and every output row of the
//! matrices sums to 1: a constant map stays that constant.

use candle_core::{DType, Device, Tensor};

use crate::error::{CamError, Result};

/// How a map is resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Upsampling {
    /// Bilinear with half-pixel centres: output pixel `i` samples the input at
    /// `(i + 0.5) * in / out - 0.5`, clamped to the border. This is OpenCV's
    /// `cv2.resize(..., interpolation=cv2.INTER_LINEAR)`, which the study's notebook
    /// used, PyTorch's `interpolate(mode="bilinear", align_corners=False)` and
    /// pytorch-grad-cam's resize. Any output size works (shrinking does not
    /// anti-alias).
    #[default]
    Bilinear,
    /// Each input pixel becomes an `f x f` block: output sizes must be integer
    /// multiples of the input's.
    Nearest,
}

/// The `out x inp` matrix of a 1-D resize under `mode`.
pub fn resize_matrix(inp: usize, out: usize, mode: Upsampling) -> Result<Vec<f64>> {
    if inp == 0 || out == 0 {
        return Err(CamError::InvalidArgument(format!(
            "cannot resize {inp} pixels to {out}"
        )));
    }
    let mut m = vec![0f64; out * inp];
    match mode {
        Upsampling::Bilinear => {
            let scale = inp as f64 / out as f64;
            for i in 0..out {
                let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
                let lo = (src.floor() as usize).min(inp - 1);
                let hi = (lo + 1).min(inp - 1);
                let frac = if lo == hi { 0.0 } else { src - lo as f64 };
                m[i * inp + lo] += 1.0 - frac;
                m[i * inp + hi] += frac;
            }
        }
        Upsampling::Nearest => {
            if !out.is_multiple_of(inp) {
                return Err(CamError::InvalidArgument(format!(
                    "nearest upsampling needs an integer factor, {inp} -> {out} is not"
                )));
            }
            let factor = out / inp;
            for i in 0..out {
                m[i * inp + i / factor] = 1.0;
            }
        }
    }
    Ok(m)
}

fn matrix(inp: usize, out: usize, mode: Upsampling, dtype: DType, dev: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(resize_matrix(inp, out, mode)?, (out, inp), dev)?.to_dtype(dtype)?)
}

/// Resizes every map of a tensor whose last two axes are `h x w` to `size`
/// (height, width), keeping the leading axes.
pub fn upsample(maps: &Tensor, size: (usize, usize), mode: Upsampling) -> Result<Tensor> {
    let dims = maps.dims().to_vec();
    if dims.len() < 2 {
        return Err(CamError::Shape(format!(
            "maps need two spatial axes, got {dims:?}"
        )));
    }
    let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let count: usize = dims[..dims.len() - 2].iter().product();
    let (dtype, dev) = (maps.dtype(), maps.device());
    let rows = matrix(h, size.0, mode, dtype, dev)?; // H x h
    let cols_t = matrix(w, size.1, mode, dtype, dev)?.t()?.contiguous()?; // w x W
                                                                          // Columns: (M*h, w) x (w, W); rows: (M, H, h) x (M, h, W).
    let y = maps.reshape((count * h, w))?.matmul(&cols_t)?;
    let y = y.reshape((count, h, size.1))?;
    let rows = rows
        .unsqueeze(0)?
        .broadcast_as((count, size.0, h))?
        .contiguous()?;
    let out = rows.matmul(&y)?;
    let mut out_dims = dims[..dims.len() - 2].to_vec();
    out_dims.extend([size.0, size.1]);
    Ok(out.reshape(out_dims)?)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn bilinear_matches_opencv_inter_linear() {
        // cv2.resize(np.array([[0., 1.]]), (4, 1), interpolation=cv2.INTER_LINEAR)
        // -> [[0., 0.25, 0.75, 1.]]
        let m = Tensor::new(&[[0f64, 1.0]], &Device::Cpu).unwrap();
        let up = upsample(&m, (1, 4), Upsampling::Bilinear).unwrap();
        assert_eq!(values(&up), vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn nearest_repeats_blocks_and_refuses_fractional_factors() {
        let m = Tensor::new(&[[1f64, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let up = upsample(&m, (4, 4), Upsampling::Nearest).unwrap();
        assert_eq!(
            values(&up),
            vec![1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]
        );
        assert!(matches!(
            upsample(&m, (5, 4), Upsampling::Nearest),
            Err(CamError::InvalidArgument(_))
        ));
    }

    proptest! {
        #![proptest_config(test_support::seeded(32))]

        #[test]
        fn a_constant_map_stays_constant(
            c in -10.0f64..10.0, h in 1usize..8, w in 1usize..8,
            out_h in 1usize..30, out_w in 1usize..30,
        ) {
            let m = (Tensor::ones((2, h, w), DType::F64, &Device::Cpu).unwrap() * c).unwrap();
            let up = upsample(&m, (out_h, out_w), Upsampling::Bilinear).unwrap();
            prop_assert_eq!(up.dims(), &[2, out_h, out_w]);
            for v in values(&up) {
                prop_assert!((v - c).abs() < 1e-12);
            }
            let up = upsample(&m, (h * 3, w * 2), Upsampling::Nearest).unwrap();
            for v in values(&up) {
                prop_assert!((v - c).abs() < 1e-12);
            }
        }

        #[test]
        fn nearest_by_an_integer_factor_preserves_the_mean(
            values_in in prop::collection::vec(-10.0f64..10.0, 20),
            factor in 1usize..6,
        ) {
            let m = Tensor::from_vec(values_in.clone(), (4, 5), &Device::Cpu).unwrap();
            let up = upsample(&m, (4 * factor, 5 * factor), Upsampling::Nearest).unwrap();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            prop_assert!((mean(&values(&up)) - mean(&values_in)).abs() < 1e-9);
        }
    }
}
