//! The unfused backward of ReLU then max-pooling, from the pooled output and the
//! pooling record: the path of [`conv2d_relu_pool`](crate::conv2d_relu_pool) where the
//! convolution's backward passes do not read the pooled gradient themselves.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape};
use rayon::prelude::*;

use super::{slice, with_dtype, Same};
use crate::kernels::zeros;

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
        let out = with_dtype!("conv2d+pool", s1, |v| run(
            self,
            slice(v, l1, "gradient")?,
            (s2, l2),
            dims
        )?);
        Ok((out, Shape::from(self.full)))
    }
}
