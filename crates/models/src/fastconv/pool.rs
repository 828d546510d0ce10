//! Max-pooling with a square window equal to its stride, as a custom op whose backward
//! routes each window's gradient to its first maximum (PyTorch's rule).
//!
//! The reduction-based pool (`reshape`, then `max` twice) is correct but its backward
//! is six full-size candle ops; this is one pass each way.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::kernels::{zeros, Elem};
use super::{slice, Same};

/// `N x C x H x W -> N x C x H/k x W/k` (H and W divisible by k), on the CPU.
pub(crate) struct MaxPool {
    pub k: usize,
}

fn pool_dims(l: &Layout, k: usize) -> Result<(usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    if k == 0 || h % k != 0 || w % k != 0 {
        candle_core::bail!("max_pool: {h}x{w} is not divisible by the window {k}");
    }
    Ok((n * c, h, w))
}

/// Index within the plane of each window's first maximum, visited row by row.
#[inline(always)]
fn argmax<T: Elem>(plane: &[T], w: usize, k: usize, oy: usize, ox: usize) -> usize {
    let mut best = oy * k * w + ox * k;
    if k == 2 {
        // The common window, unrolled: same order, same first maximum.
        for i in [best + 1, best + w, best + w + 1] {
            if plane[i] > plane[best] {
                best = i;
            }
        }
        return best;
    }
    for dy in 0..k {
        for dx in 0..k {
            let i = (oy * k + dy) * w + ox * k + dx;
            if plane[i] > plane[best] {
                best = i;
            }
        }
    }
    best
}

fn forward<T: Elem>(x: &[T], planes: usize, h: usize, w: usize, k: usize) -> Vec<T> {
    let (ho, wo) = (h / k, w / k);
    let mut out = zeros(planes * ho * wo, T::ZERO);
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each(|(out, plane)| {
            for oy in 0..ho {
                for ox in 0..wo {
                    out[oy * wo + ox] = plane[argmax(plane, w, k, oy, ox)];
                }
            }
        });
    out
}

fn backward<T: Elem>(x: &[T], grad: &[T], planes: usize, h: usize, w: usize, k: usize) -> Vec<T> {
    let (ho, wo) = (h / k, w / k);
    let mut dx = zeros(planes * h * w, T::ZERO);
    if dx.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w).zip(grad.par_chunks(ho * wo)))
        .for_each(|(dx, (plane, g))| {
            for oy in 0..ho {
                for ox in 0..wo {
                    dx[argmax(plane, w, k, oy, ox)] = g[oy * wo + ox];
                }
            }
        });
    dx
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "fast-max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w) = pool_dims(l, self.k)?;
        let k = self.k;
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(forward(slice(v, l, "input")?, planes, h, w, k)),
            CpuStorage::F64(v) => CpuStorage::F64(forward(slice(v, l, "input")?, planes, h, w, k)),
            other => candle_core::bail!("max_pool: unsupported dtype {:?}", other.dtype()),
        };
        let (n, c, _, _) = l.shape().dims4()?;
        Ok((out, Shape::from((n, c, h / k, w / k))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(
            &grad.contiguous()?,
            &MaxPoolBackward { k: self.k },
        )?))
    }
}

/// (input, output gradient) -> input gradient.
struct MaxPoolBackward {
    k: usize,
}

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "fast-max-pool-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w) = pool_dims(l1, self.k)?;
        if l3.shape().elem_count() != planes * (h / self.k) * (w / self.k) {
            candle_core::bail!("max_pool backward: the gradient has the wrong shape");
        }
        fn run<T: Same>(
            x: &[T],
            (s3, l3): (&CpuStorage, &Layout),
            dims: (usize, usize, usize, usize),
        ) -> Result<Vec<T>> {
            let g = T::same(s3, l3, "gradient")?;
            Ok(backward(x, g, dims.0, dims.1, dims.2, dims.3))
        }
        let dims = (planes, h, w, self.k);
        let out = match s1 {
            CpuStorage::F32(v) => CpuStorage::F32(run(slice(v, l1, "input")?, (s3, l3), dims)?),
            CpuStorage::F64(v) => CpuStorage::F64(run(slice(v, l1, "input")?, (s3, l3), dims)?),
            other => candle_core::bail!("max_pool: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// Pooled planes and, for each pooled value, its window's first maximum as an offset
/// `dy * k + dx` within the window: what [`Unpool`] needs instead of the input.
pub(crate) fn forward_with_codes<T: Elem>(
    x: &[T],
    planes: usize,
    (h, w): (usize, usize),
    k: usize,
    (out, codes): (&mut [T], &mut [u8]),
) {
    let (ho, wo) = (h / k, w / k);
    if ho * wo == 0 {
        return;
    }
    out.par_chunks_mut(ho * wo)
        .zip(codes.par_chunks_mut(ho * wo))
        .zip(x.par_chunks(h * w))
        .take(planes)
        .for_each(|((out, codes), plane)| {
            for oy in 0..ho {
                for ox in 0..wo {
                    let best = argmax(plane, w, k, oy, ox);
                    out[oy * wo + ox] = plane[best];
                    let (dy, dx) = (best / w - oy * k, best % w - ox * k);
                    // k <= 15 (checked by the caller), so the offset fits a byte.
                    codes[oy * wo + ox] = (dy * k + dx) as u8;
                }
            }
        });
}

/// Largest window [`forward_with_codes`] takes: offsets within it must fit a byte.
pub(crate) const MAX_CODED_WINDOW: usize = 15;

/// The backward pass of ReLU then max-pooling from the pooled output and the maxima's
/// offsets: (pooled-output gradient, pooled output) -> the gradient of the
/// pre-activation, `N x C x H x W`, non-zero only at each window's first maximum and
/// only where the pooled value is positive.
pub(crate) struct Unpool {
    pub k: usize,
    /// `N x C x H x W` of the pre-activation.
    pub full: (usize, usize, usize, usize),
    pub codes: std::sync::Arc<Vec<u8>>,
}

impl CustomOp2 for Unpool {
    fn name(&self) -> &'static str {
        "fast-conv2d-unpool"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = self.full;
        let (k, ho, wo) = (self.k, h / self.k, w / self.k);
        let pooled = (n, c, ho, wo);
        if l1.shape().dims4()? != pooled || l2.shape().dims4()? != pooled {
            candle_core::bail!("conv2d+pool backward: the gradient has the wrong shape");
        }
        if self.codes.len() != n * c * ho * wo {
            candle_core::bail!("conv2d+pool backward: the pooling record has the wrong size");
        }
        fn run<T: Same>(
            op: &Unpool,
            g: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            (h, w, k): (usize, usize, usize),
        ) -> Result<Vec<T>> {
            let y = T::same(s2, l2, "pooled output")?;
            let (ho, wo) = (h / k, w / k);
            let mut dx = zeros(op.codes.len() * k * k, T::ZERO);
            if ho * wo == 0 {
                return Ok(dx);
            }
            dx.par_chunks_mut(h * w)
                .zip(g.par_chunks(ho * wo))
                .zip(y.par_chunks(ho * wo).zip(op.codes.par_chunks(ho * wo)))
                .for_each(|((dx, g), (y, codes))| {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let i = oy * wo + ox;
                            // ReLU's mask: NaN is not > 0, as in the unfused path.
                            if y[i] > T::ZERO {
                                let (dy, ddx) = (codes[i] as usize / k, codes[i] as usize % k);
                                dx[(oy * k + dy) * w + ox * k + ddx] = g[i];
                            }
                        }
                    }
                });
            Ok(dx)
        }
        let dims = (h, w, k);
        let out = match s1 {
            CpuStorage::F32(v) => {
                CpuStorage::F32(run(self, slice(v, l1, "gradient")?, (s2, l2), dims)?)
            }
            CpuStorage::F64(v) => {
                CpuStorage::F64(run(self, slice(v, l1, "gradient")?, (s2, l2), dims)?)
            }
            other => candle_core::bail!("conv2d+pool: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, Shape::from(self.full)))
    }
}

/// Global average pooling of channels-last batches: `N x H x W x C -> N x C`, one pass
/// over each image's rows of `C` values (candle's `mean` over dims 1 and 2 of a
/// contiguous tensor takes its per-element path, with two divisions per value).
pub(crate) struct PixelMean;

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
        fn run<T: Elem>(x: &[T], (hw, c): (usize, usize), scale: T) -> Vec<T> {
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
        let scale = 1.0 / hw.max(1) as f64;
        let out = match s {
            CpuStorage::F32(v) => {
                CpuStorage::F32(run(slice(v, l, "input")?, (hw, c), scale as f32))
            }
            CpuStorage::F64(v) => CpuStorage::F64(run(slice(v, l, "input")?, (hw, c), scale)),
            other => {
                candle_core::bail!("global average pool: unsupported dtype {:?}", other.dtype())
            }
        };
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
        fn run<T: Elem>(g: &[T], (hw, c): (usize, usize), scale: T) -> Vec<T> {
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
        let scale = 1.0 / hw.max(1) as f64;
        let out = match s {
            CpuStorage::F32(v) => {
                CpuStorage::F32(run(slice(v, l, "gradient")?, (hw, c), scale as f32))
            }
            CpuStorage::F64(v) => CpuStorage::F64(run(slice(v, l, "gradient")?, (hw, c), scale)),
            other => {
                candle_core::bail!("global average pool: unsupported dtype {:?}", other.dtype())
            }
        };
        Ok((out, Shape::from((n, self.h, self.w, c))))
    }
}
