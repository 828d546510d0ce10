//! [`max_pool2d`]: max-pooling with a square window equal to its stride, as a custom op
//! whose backward routes each window's gradient to its first maximum (PyTorch's rule).
//!
//! The reduction-based pool (`reshape`, then `max` twice) is correct but its backward
//! is six full-size candle ops; this is one pass each way.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::{slice, with_dtype, Same};
use crate::passes::max_pool::{backward, forward};
use crate::switch::enabled;

/// Max-pooling over `k x k` windows at stride `k` (`H` and `W` divisible by `k`); the
/// gradient goes to each window's first maximum. Fast op on the CPU for f32/f64,
/// candle's reductions elsewhere.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    if enabled() && x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return x.contiguous()?.apply_op1(MaxPool { k });
    }
    let (n, c, h, w) = x.dims4()?;
    if k == 0 || h % k != 0 || w % k != 0 {
        candle_core::bail!("max_pool: {h}x{w} is not divisible by the window {k}");
    }
    x.reshape((n, c, h / k, k, w / k, k))?.max(5)?.max(3)
}

/// `N x C x H x W -> N x C x H/k x W/k` (H and W divisible by k), on the CPU.
struct MaxPool {
    k: usize,
}

fn pool_dims(l: &Layout, k: usize) -> Result<(usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    if k == 0 || h % k != 0 || w % k != 0 {
        candle_core::bail!("max_pool: {h}x{w} is not divisible by the window {k}");
    }
    Ok((n * c, h, w))
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "fast-max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w) = pool_dims(l, self.k)?;
        let k = self.k;
        let out = with_dtype!("max_pool", s, |v| forward(
            slice(v, l, "input")?,
            planes,
            h,
            w,
            k
        ));
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
        let out = with_dtype!("max_pool", s1, |v| run(
            slice(v, l1, "input")?,
            (s3, l3),
            dims
        )?);
        Ok((out, l1.shape().clone()))
    }
}
