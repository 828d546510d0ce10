//! [`conv2d`] and [`conv2d_nhwc`]: `act(conv2d(x, w) + b)` as one op, its backward
//! asking only for the gradients of the arguments that take part in a gradient.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::conv2d_backward::{BackwardData, BackwardWeight, BackwardWeightMasked, OutputMask};
use super::relu_backward::{backward_through_relu, Pooling};
use super::{
    batch_shape, check_bias, geometry, geometry_of, nchw, slice, split_weight_bias, with_dtype,
    Gradients, Same, Wanted,
};
use crate::kernels::Geometry;
use crate::options::{Activation, BatchLayout, ConvOptions};
use crate::passes::forward::forward;
use crate::passes::input_grad::backward_reads_pooled;
use crate::switch::runs_fast;

/// `act(conv2d(x, weight) + bias)` with symmetric zero padding, `act` the
/// [`Activation`] (ReLU, ELU or none).
///
/// `x` is `N x C_in x H x W`, `weight` `C_out x C_in x k x k`, `bias` `C_out`. On the
/// CPU with f32 or f64 this runs the fast kernels; elsewhere candle's `conv2d`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    options: ConvOptions,
    activation: Activation,
) -> Result<Tensor> {
    if !runs_fast(x) || weight.dtype() != x.dtype() || bias.dtype() != x.dtype() {
        return reference_conv2d(x, weight, bias, options, activation);
    }
    conv_op(
        x,
        weight,
        bias,
        ConvForward::new(options, activation, BatchLayout::ChannelsFirst),
    )
}

/// The fused convolution (bias, optional ReLU) op.
fn conv_op(x: &Tensor, weight: &Tensor, bias: &Tensor, op: ConvForward) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

/// [`conv2d`] on channels-last batches: `x` is `N x H x W x C_in` and the result
/// `N x Ho x Wo x C_out`; `weight` keeps PyTorch's `C_out x C_in x k x k`.
///
/// Layer after layer, channels-last saves the transposes in and out of the
/// channels-last form that the Winograd kernels work in. Off the fast path this
/// permutes around candle's `conv2d`.
pub fn conv2d_nhwc(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    options: ConvOptions,
    activation: Activation,
) -> Result<Tensor> {
    if !runs_fast(x) || weight.dtype() != x.dtype() || bias.dtype() != x.dtype() {
        let x = x.permute((0, 3, 1, 2))?;
        return reference_conv2d(&x, weight, bias, options, activation)?.permute((0, 2, 3, 1));
    }
    let op = ConvForward::new(options, activation, BatchLayout::ChannelsLast);
    conv_op(x, weight, bias, op)
}

/// The same computation through candle's own ops (the path on other devices, and the
/// reference the tests and benches compare with).
pub fn reference_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    ConvOptions { stride, padding }: ConvOptions,
    activation: Activation,
) -> Result<Tensor> {
    let y = x
        .conv2d(weight, padding, stride, 1, 1)?
        .broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
    match activation {
        Activation::Identity => Ok(y),
        Activation::Relu => y.relu(),
        Activation::Elu => y.elu(1.0),
    }
}

/// `act(conv2d(x, w) + b)`, on `N x C x H x W` batches or, when `layout` is
/// channels-last, on `N x H x W x C` ones (the kernel in PyTorch's layout either way).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvForward {
    pub(crate) options: ConvOptions,
    pub(crate) activation: Activation,
    pub(crate) layout: BatchLayout,
}

impl ConvForward {
    /// The op of one layer.
    pub(crate) fn new(options: ConvOptions, activation: Activation, layout: BatchLayout) -> Self {
        Self {
            options,
            activation,
            layout,
        }
    }
}

impl CustomOp3 for ConvForward {
    fn name(&self) -> &'static str {
        "fast-conv2d"
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
        let g = geometry(l1, l2, self.options, self.layout)?;
        check_bias(l3, &g)?;
        fn run<T: Same>(
            op: &ConvForward,
            g: &Geometry,
            x: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> Result<Vec<T>> {
            let w = T::same(s2, l2, "kernel")?;
            let b = T::same(s3, l3, "bias")?;
            if op.activation != Activation::Elu {
                return Ok(forward(g, x, w, Some(b), op.activation, op.layout));
            }
            // ELU in place over the finished output, on all threads: one pass where
            // candle's `elu` after the op would allocate and write a second tensor.
            let mut y = forward(g, x, w, Some(b), Activation::Identity, op.layout);
            super::elu::elu_in_place_par(&mut y);
            Ok(y)
        }
        let out = with_dtype!("fast conv2d forward", s1, |x| run(
            self,
            &g,
            slice(x, l1, "input")?,
            (s2, l2),
            (s3, l3)
        )?);
        Ok((out, batch_shape((g.n, g.c_out, g.ho, g.wo), self.layout)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (dx, flat) = self.backward(x, w, y, &grad, Wanted::of(x, w, b))?;
        let (dw, db) = split_weight_bias(flat, w, b)?;
        Ok((dx, dw, db))
    }
}

impl ConvForward {
    /// The gradients `want` asks for, from the output `y` and its (contiguous)
    /// gradient `grad`.
    pub(crate) fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        grad: &Tensor,
        want: Wanted,
    ) -> Result<Gradients> {
        match self.activation {
            Activation::Identity => return self.backward_linear(x, w, grad, want),
            Activation::Elu => {
                let grad = grad.apply_op2_no_bwd(y, &OutputMask::Elu)?;
                return self.backward_linear(x, w, &grad, want);
            }
            Activation::Relu => {}
        }
        let g = geometry_of(nchw(x.dims4()?, self.layout), w.dims4()?, self.options)?;
        if backward_reads_pooled(&g) {
            let (padding, layout) = (self.options.padding, self.layout);
            let no_pool = Pooling::none();
            return backward_through_relu((x, w), y, grad, padding, layout, no_pool, want);
        }
        if !want.input {
            // Weights only (a first layer in training): ReLU's mask is applied image by
            // image as the weight gradient reads the output gradient, without a masked
            // copy of the whole batch.
            let flat = if want.weights {
                let op = BackwardWeightMasked(self.backward_weight_op(w)?);
                Some(x.apply_op3_no_bwd(grad, y, &op)?)
            } else {
                None
            };
            return Ok((None, flat));
        }
        self.backward_linear(x, w, &grad.apply_op2_no_bwd(y, &OutputMask::Relu)?, want)
    }

    /// The gradients of `conv(x, w) + b` (no activation) that `want` asks for, from
    /// the gradient of that sum.
    pub(crate) fn backward_linear(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        want: Wanted,
    ) -> Result<Gradients> {
        let dx = if want.input {
            let op = BackwardData {
                options: self.options,
                input: nchw(x.dims4()?, self.layout),
                layout: self.layout,
            };
            Some(grad.apply_op2_no_bwd(w, &op)?)
        } else {
            None
        };
        let flat = if want.weights {
            Some(x.apply_op2_no_bwd(grad, &self.backward_weight_op(w)?)?)
        } else {
            None
        };
        Ok((dx, flat))
    }

    /// The op of the weight and bias gradients.
    fn backward_weight_op(&self, w: &Tensor) -> Result<BackwardWeight> {
        Ok(BackwardWeight {
            options: self.options,
            kernel: w.dims4()?,
            layout: self.layout,
        })
    }
}

/// Forward FLOPs of one convolution (2 per multiply-add) of an `x` batch (`N, C_in, H,
/// W`) with a `kernel` (`C_out, C_in, k, k`), for throughput reports; `None` when the
/// shapes do not fit.
pub fn conv2d_flops(
    x: (usize, usize, usize, usize),
    kernel: (usize, usize, usize, usize),
    options: ConvOptions,
) -> Option<f64> {
    Geometry::new(x, kernel, options.stride, options.padding)
        .ok()
        .map(|g| g.flops())
}
