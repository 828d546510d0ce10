//! The backward ops of Winograd layers with ReLU (and max-pooling): the input and weight
//! gradients read the output gradient through ReLU's mask and the pooling record as
//! they fill their tiles, so the unpooled, masked gradient is never materialised.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::{
    batch_shape, dims4, geometry_of, nchw, slice, with_dtype, Dims4, Gradients, Same, Wanted,
};
use crate::kernels::{assume_written, unwritten, Geometry};
use crate::options::{Activation, BatchLayout, ConvOptions};
use crate::passes::forward::winograd_forward;
use crate::passes::input_grad::flipped;
use crate::passes::weight_grad::{winograd_backward_both, winograd_weight_grad};
use crate::passes::{chunk, inner_parallelism};
use crate::winograd;

/// The max-pooling after a layer's ReLU, as its backward passes read it: the window
/// `k` (1: no pooling) and each pooled value's offset in its window, as the forward
/// pass recorded it (empty when `k == 1`).
#[derive(Debug, Clone)]
pub(crate) struct Pooling {
    pub(crate) k: usize,
    pub(crate) codes: std::sync::Arc<Vec<u8>>,
}

impl Pooling {
    /// No pooling.
    pub(crate) fn none() -> Self {
        Self {
            k: 1,
            codes: std::sync::Arc::new(Vec::new()),
        }
    }
}

/// The input gradient of `max_pool(relu(conv(x, w) + b), k)` (of `relu(conv(x, w) +
/// b)` when `k == 1`) through Winograd, from (output gradient, output, kernel): ReLU's
/// mask and the unpooling are applied as the gradient is read.
pub(crate) struct BackwardDataRelu {
    /// `N, C, H, W`.
    input: Dims4,
    padding: usize,
    k: usize,
    codes: std::sync::Arc<Vec<u8>>,
    layout: BatchLayout,
}

/// The weight and bias gradients of `max_pool(relu(conv(x, w) + b), k)` (of
/// `relu(conv(x, w) + b)` when `k == 1`) through Winograd, from (input, output
/// gradient, output): flat `dW | db`.
pub(crate) struct BackwardWeightRelu {
    kernel: Dims4,
    padding: usize,
    k: usize,
    codes: std::sync::Arc<Vec<u8>>,
    layout: BatchLayout,
}

/// Both gradients of `max_pool(relu(conv(x, w) + b), k)` (of `relu(conv(x, w) + b)`
/// when `k == 1`) in one sweep over the output gradient
/// ([`winograd::backward`]), from (output gradient, output, kernel) and the input `x`
/// the op holds: flat `dx | dW | db`, the same values as [`BackwardDataRelu`] and
/// [`BackwardWeightRelu`].
pub(crate) struct BackwardBothRelu {
    x: Tensor,
    padding: usize,
    k: usize,
    codes: std::sync::Arc<Vec<u8>>,
    layout: BatchLayout,
}

/// Checks a pooled gradient and pooled output against the convolution's output and
/// the pooling record.
pub(crate) fn check_pooled(
    g: &Geometry,
    layout: BatchLayout,
    k: usize,
    codes: &[u8],
    grad: &Layout,
    y: &Layout,
) -> Result<()> {
    if k == 0
        || !g.ho.is_multiple_of(k)
        || !g.wo.is_multiple_of(k)
        || !winograd::pools::<winograd::F4>(k)
    {
        candle_core::bail!("fast conv2d+pool backward: window {k} does not fit the output");
    }
    let pooled = (g.n, g.c_out, g.ho / k, g.wo / k);
    let dims = |l: &Layout, what: &str| Ok::<_, candle_core::Error>(nchw(dims4(l, what)?, layout));
    if dims(grad, "gradient")? != pooled || dims(y, "pooled output")? != pooled {
        candle_core::bail!("fast conv2d+pool backward: the gradient has the wrong shape");
    }
    if k > 1 && codes.len() != grad.shape().elem_count() {
        candle_core::bail!("fast conv2d+pool backward: the pooling record has the wrong size");
    }
    Ok(())
}

impl CustomOp3 for BackwardDataRelu {
    fn name(&self) -> &'static str {
        "fast-conv2d-relu-backward-data"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let options = ConvOptions::new(1, self.padding);
        let g = geometry_of(self.input, dims4(l3, "kernel")?, options)?;
        check_pooled(&g, self.layout, self.k, &self.codes, l1, l2)?;
        #[allow(unsafe_code)]
        fn run<T: Same>(
            op: &BackwardDataRelu,
            g: &Geometry,
            grad: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> Result<Vec<T>> {
            let y = T::same(s2, l2, "pooled output")?;
            let w = T::same(s3, l3, "kernel")?;
            let (back, flipped) = flipped(g, w);
            let mut dx = unwritten(g.n * g.in_len());
            let source = winograd::Source::ThroughRelu {
                grad,
                y,
                codes: &op.codes,
                k: op.k,
                layout: op.layout,
            };
            let (per, par) = (chunk(g.n), inner_parallelism(g.n));
            if !dx.is_empty() {
                let out = winograd::Destination {
                    out: &mut dx[..],
                    pool: 1,
                    codes: &mut [][..],
                    layout: op.layout,
                };
                let identity = Activation::Identity;
                winograd_forward(&back, source, (&flipped, None, identity), out, per, par);
            }
            // SAFETY: the Winograd forward pass writes every value of its output.
            Ok(unsafe { assume_written(dx) })
        }
        let out = with_dtype!("fast conv2d input gradient", s1, |gy| run(
            self,
            &g,
            slice(gy, l1, "gradient")?,
            (s2, l2),
            (s3, l3)
        )?);
        Ok((out, batch_shape(self.input, self.layout)))
    }
}

impl CustomOp3 for BackwardWeightRelu {
    fn name(&self) -> &'static str {
        "fast-conv2d-relu-backward-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = nchw(dims4(l1, "input")?, self.layout);
        let g = geometry_of(x, self.kernel, ConvOptions::new(1, self.padding))?;
        check_pooled(&g, self.layout, self.k, &self.codes, l2, l3)?;
        fn run<T: Same>(
            op: &BackwardWeightRelu,
            g: &Geometry,
            x: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> Result<Vec<T>> {
            let source = winograd::Source::ThroughRelu {
                grad: T::same(s2, l2, "gradient")?,
                y: T::same(s3, l3, "pooled output")?,
                codes: &op.codes,
                k: op.k,
                layout: op.layout,
            };
            if g.n == 0 {
                return Ok(vec![T::ZERO; g.c_out * g.ckk() + g.c_out]);
            }
            Ok(winograd_weight_grad(g, x, source, op.layout))
        }
        let out = with_dtype!("fast conv2d weight gradient", s1, |x| run(
            self,
            &g,
            slice(x, l1, "input")?,
            (s2, l2),
            (s3, l3)
        )?);
        Ok((out, Shape::from(g.c_out * g.ckk() + g.c_out)))
    }
}

impl CustomOp3 for BackwardBothRelu {
    fn name(&self) -> &'static str {
        "fast-conv2d-relu-backward-both"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (xs, xl) = self.x.storage_and_layout();
        let candle_core::Storage::Cpu(xs) = &*xs else {
            candle_core::bail!("fast conv2d backward: the input is not on the CPU");
        };
        let input = nchw(dims4(xl, "input")?, self.layout);
        let options = ConvOptions::new(1, self.padding);
        let g = geometry_of(input, dims4(l3, "kernel")?, options)?;
        check_pooled(&g, self.layout, self.k, &self.codes, l1, l2)?;
        if !winograd::backward::applies(&g) {
            candle_core::bail!("fast conv2d backward: the fused passes do not apply");
        }
        #[allow(unsafe_code)]
        fn run<T: Same>(
            op: &BackwardBothRelu,
            g: &Geometry,
            grad: &[T],
            (xs, xl): (&CpuStorage, &Layout),
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> Result<Vec<T>> {
            let x = T::same(xs, xl, "input")?;
            let source = winograd::Source::ThroughRelu {
                grad,
                y: T::same(s2, l2, "pooled output")?,
                codes: &op.codes,
                k: op.k,
                layout: op.layout,
            };
            let w = T::same(s3, l3, "kernel")?;
            let mut out = unwritten(g.n * g.in_len() + g.c_out * g.ckk() + g.c_out);
            winograd_backward_both(g, x, source, w, op.layout, &mut out);
            // SAFETY: `winograd_backward_both` writes every value of its output.
            Ok(unsafe { assume_written(out) })
        }
        let out = with_dtype!("fast conv2d backward", s1, |gy| run(
            self,
            &g,
            slice(gy, l1, "gradient")?,
            (xs, xl),
            (s2, l2),
            (s3, l3)
        )?);
        let len = g.n * g.in_len() + g.c_out * g.ckk() + g.c_out;
        Ok((out, Shape::from(len)))
    }
}

/// The gradients of `max_pool(relu(conv(x, w) + b), k)` at stride 1 (with
/// [`Pooling::none`], of `relu(conv(x, w) + b)`) that `want` asks for, through
/// Winograd, from the output `y` and its gradient (all channels-last when `layout`
/// is).
pub(crate) fn backward_through_relu(
    (x, w): (&Tensor, &Tensor),
    y: &Tensor,
    grad: &Tensor,
    padding: usize,
    layout: BatchLayout,
    Pooling { k, codes }: Pooling,
    want: Wanted,
) -> Result<Gradients> {
    let input = nchw(x.dims4()?, layout);
    let g = geometry_of(input, w.dims4()?, ConvOptions::new(1, padding))?;
    if want.input && want.weights && winograd::backward::applies(&g) {
        let op = BackwardBothRelu {
            x: x.clone(),
            padding,
            k,
            codes,
            layout,
        };
        let flat = grad.apply_op3_no_bwd(y, w, &op)?;
        let len = x.elem_count();
        let dx = flat.narrow(0, 0, len)?.reshape(x.shape())?;
        let dw = flat.narrow(0, len, flat.elem_count() - len)?;
        return Ok((Some(dx), Some(dw)));
    }
    let dx = if want.input {
        let op = BackwardDataRelu {
            input: nchw(x.dims4()?, layout),
            padding,
            k,
            codes: codes.clone(),
            layout,
        };
        Some(grad.apply_op3_no_bwd(y, w, &op)?)
    } else {
        None
    };
    let flat = if want.weights {
        let op = BackwardWeightRelu {
            kernel: w.dims4()?,
            padding,
            k,
            codes,
            layout,
        };
        Some(x.apply_op3_no_bwd(grad, y, &op)?)
    } else {
        None
    };
    Ok((dx, flat))
}
