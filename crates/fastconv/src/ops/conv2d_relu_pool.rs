//! [`conv2d_relu_pool`] and [`conv2d_relu_pool_nhwc`]: convolution, ReLU and max-pooling
//! as one op, whose backward keeps one byte per pooled value (where its window's
//! maximum was) instead of the convolution's output.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::conv2d::{reference_conv2d, ConvForward};
use super::max_pool::max_pool2d;
use super::relu_backward::{backward_through_relu, Pooling};
use super::unpool::Unpool;
use super::{
    batch_shape, check_bias, geometry, geometry_of, nchw, record, slice, split_weight_bias,
    with_dtype, Dims4, Same, Wanted,
};
use crate::kernels::Geometry;
use crate::options::{Activation, BatchLayout, ConvOptions};
use crate::passes::forward::{forward_pooled, pools_in_winograd};
use crate::passes::input_grad::backward_reads_pooled;
use crate::passes::max_pool::MAX_CODED_WINDOW;
use crate::switch::runs_fast;
use crate::winograd;

/// `max_pool2d(relu(conv2d(x, weight) + bias), window)`: [`conv2d`](crate::conv2d)
/// with ReLU then [`max_pool2d`] in one op whose backward keeps, instead of the
/// convolution's output, one byte per pooled value (where its maximum was). The pooling
/// is fused into the Winograd output transform when `window` divides its 4x4 tiles. The
/// convolution's output must be divisible by `window` (at most 15) on both sides.
pub fn conv2d_relu_pool(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    options: ConvOptions,
    window: usize,
) -> Result<Tensor> {
    if !runs_fast(x) || weight.dtype() != x.dtype() || bias.dtype() != x.dtype() {
        return max_pool2d(
            &reference_conv2d(x, weight, bias, options, Activation::Relu)?,
            window,
        );
    }
    conv_relu_pool_op(
        x,
        weight,
        bias,
        ConvPoolForward::new(options, window, BatchLayout::ChannelsFirst),
    )
}

/// [`conv2d_relu_pool`] on channels-last batches, as
/// [`conv2d_nhwc`](crate::conv2d_nhwc). The fused op runs where Winograd pools
/// (stride-1 3x3 kernels, channel counts divisible by 8, a window dividing 4); other
/// layers permute around [`conv2d_relu_pool`].
pub fn conv2d_relu_pool_nhwc(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    options: ConvOptions,
    window: usize,
) -> Result<Tensor> {
    let layout = BatchLayout::ChannelsLast;
    let native = runs_fast(x)
        && weight.dtype() == x.dtype()
        && bias.dtype() == x.dtype()
        && x.dims4().is_ok_and(|d| {
            weight.dims4().is_ok_and(|wd| {
                geometry_of(nchw(d, layout), wd, options)
                    .is_ok_and(|g| pools_in_winograd(&g, window))
            })
        });
    if !native {
        let x = x.permute((0, 3, 1, 2))?;
        return conv2d_relu_pool(&x, weight, bias, options, window)?.permute((0, 2, 3, 1));
    }
    conv_relu_pool_op(
        x,
        weight,
        bias,
        ConvPoolForward::new(options, window, layout),
    )
}

/// The fused convolution, ReLU and max-pool op.
fn conv_relu_pool_op(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    op: ConvPoolForward,
) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

/// `max_pool(relu(conv(x, w) + b), k)`; the forward pass records where each window's
/// maximum was for the backward pass.
struct ConvPoolForward {
    conv: ConvForward,
    k: usize,
    /// The maxima's offsets from the forward pass, and the convolution's output shape.
    codes: std::sync::Mutex<Option<PoolRecord>>,
}

/// Where each pooled value's maximum was (see [`Unpool`]), and the shape of the
/// convolution's output it was pooled from.
type PoolRecord = (std::sync::Arc<Vec<u8>>, Dims4);

impl ConvPoolForward {
    /// The op of one layer pooled over `k x k` windows.
    fn new(options: ConvOptions, k: usize, layout: BatchLayout) -> Self {
        Self {
            conv: ConvForward::new(options, Activation::Relu, layout),
            k,
            codes: std::sync::Mutex::new(None),
        }
    }
}

impl CustomOp3 for ConvPoolForward {
    fn name(&self) -> &'static str {
        "fast-conv2d-relu-pool"
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
        let layout = self.conv.layout;
        let g = geometry(l1, l2, self.conv.options, layout)?;
        check_bias(l3, &g)?;
        let k = self.k;
        if k == 0 || k > MAX_CODED_WINDOW || g.ho % k != 0 || g.wo % k != 0 {
            candle_core::bail!(
                "fast conv2d+pool: the {}x{} output is not divisible by the window {k} \
                 (at most {})",
                g.ho,
                g.wo,
                MAX_CODED_WINDOW
            );
        }
        if layout.is_channels_last() && !pools_in_winograd(&g, k) {
            candle_core::bail!(
                "fast conv2d+pool: channels-last batches need a stride-1 3x3 kernel, \
                 channel counts divisible by 8 and a window dividing 4"
            );
        }
        fn run<T: Same>(
            g: &Geometry,
            layout: BatchLayout,
            k: usize,
            x: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
            codes: &mut Vec<u8>,
        ) -> Result<Vec<T>> {
            let w = T::same(s2, l2, "kernel")?;
            let b = T::same(s3, l3, "bias")?;
            let (out, c) = forward_pooled(g, x, (w, b), k, layout);
            *codes = c;
            Ok(out)
        }
        let mut codes = Vec::new();
        let out = with_dtype!("fast conv2d forward", s1, |x| run(
            &g,
            layout,
            k,
            slice(x, l1, "input")?,
            (s2, l2),
            (s3, l3),
            &mut codes
        )?);
        let full = (g.n, g.c_out, g.ho, g.wo);
        *record(&self.codes, "conv2d+pool")? = Some((std::sync::Arc::new(codes), full));
        Ok((out, batch_shape((g.n, g.c_out, g.ho / k, g.wo / k), layout)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some((codes, full)) = record(&self.codes, "conv2d+pool")?.clone() else {
            candle_core::bail!("fast conv2d+pool: backward before forward");
        };
        let grad = grad.contiguous()?;
        let (options, layout) = (self.conv.options, self.conv.layout);
        let g = geometry_of(nchw(x.dims4()?, layout), w.dims4()?, options)?;
        // A channels-last forward ran through Winograd (see `cpu_fwd`), whose record
        // only the Winograd backward passes read.
        let reads_pooled = layout.is_channels_last()
            || backward_reads_pooled(&g) && g.k == 3 && winograd::pools::<winograd::F4>(self.k);
        let want = Wanted::of(x, w, b);
        let (dx, flat) = if reads_pooled {
            let pooled = Pooling { k: self.k, codes };
            let padding = options.padding;
            backward_through_relu((x, w), y, &grad, padding, layout, pooled, want)?
        } else {
            let unpool = Unpool {
                k: self.k,
                full,
                codes,
            };
            let grad = grad.apply_op2_no_bwd(y, &unpool)?;
            self.conv.backward_linear(x, w, &grad, want)?
        };
        let (dw, db) = split_weight_bias(flat, w, b)?;
        Ok((dx, dw, db))
    }
}
