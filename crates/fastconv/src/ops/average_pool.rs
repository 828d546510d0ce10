//! [`global_average_pool_nhwc`]: the per-channel mean of channels-last batches, one pass
//! each way.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{slice, with_dtype};
use crate::kernels::{zeros, Elem};
use crate::switch::runs_fast;

/// Global average pooling of a channels-last batch: `N x H x W x C -> N x C` (the
/// per-channel mean over all pixels). One fast op each way on the CPU for f32/f64,
/// candle's `mean` elsewhere.
pub fn global_average_pool_nhwc(x: &Tensor) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    if runs_fast(x) {
        return x.contiguous()?.apply_op1(PixelMean);
    }
    x.sum((1, 2))? / (h * w) as f64
}

/// Global average pooling of channels-last batches: `N x H x W x C -> N x C`, one pass
/// over each image's rows of `C` values (candle's `mean` over dims 1 and 2 of a
/// contiguous tensor takes its per-element path, with two divisions per value).
struct PixelMean;

fn pixel_dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let (n, h, w, c) = l.shape().dims4()?;
    Ok((n, h * w, c))
}

impl CustomOp1 for PixelMean {
    fn name(&self) -> &'static str {
        "fast-global-average-pool-nhwc"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, hw, c) = pixel_dims(l)?;
        fn run<T: Elem>(x: &[T], (hw, c): (usize, usize)) -> Vec<T> {
            let scale = T::from_f64(1.0 / hw.max(1) as f64);
            let mut out = vec![T::ZERO; x.len() / hw.max(1)];
            if hw == 0 || c == 0 {
                return out;
            }
            out.par_chunks_mut(c)
                .zip(x.par_chunks(hw * c))
                .for_each(|(mean, image)| {
                    for pixel in image.chunks_exact(c) {
                        for (m, &v) in mean.iter_mut().zip(pixel) {
                            *m += v;
                        }
                    }
                    for m in mean.iter_mut() {
                        *m = *m * scale;
                    }
                });
            out
        }
        let out = with_dtype!("global average pool", s, |v| run(
            slice(v, l, "input")?,
            (hw, c)
        ));
        Ok((out, Shape::from((n, c))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, h, w, _) = x.dims4()?;
        let spread = PixelSpread { h, w };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&spread)?))
    }
}

/// [`PixelMean`]'s backward: `N x C -> N x H x W x C`, each image's gradient divided
/// by `H * W` and written to every pixel, contiguous (a broadcast would reach the
/// convolution's backward as a strided tensor).
struct PixelSpread {
    h: usize,
    w: usize,
}

impl CustomOp1 for PixelSpread {
    fn name(&self) -> &'static str {
        "fast-global-average-pool-nhwc-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c) = l.shape().dims2()?;
        let hw = self.h * self.w;
        fn run<T: Elem>(g: &[T], (hw, c): (usize, usize)) -> Vec<T> {
            let scale = T::from_f64(1.0 / hw.max(1) as f64);
            let mut out = zeros(g.len() * hw, T::ZERO);
            if c == 0 || hw == 0 {
                return out;
            }
            out.par_chunks_mut(hw * c)
                .zip(g.par_chunks(c))
                .for_each(|(image, g)| {
                    for pixel in image.chunks_exact_mut(c) {
                        for (p, &g) in pixel.iter_mut().zip(g) {
                            *p = g * scale;
                        }
                    }
                });
            out
        }
        let out = with_dtype!("global average pool", s, |v| run(
            slice(v, l, "gradient")?,
            (hw, c)
        ));
        Ok((out, Shape::from((n, self.h, self.w, c))))
    }
}
