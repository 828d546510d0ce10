//! The candle custom ops: the boundary between candle's storages, layouts and autograd
//! and the passes over slices. One file per public op (with its forward op and the
//! gradients it asks for), and the backward ops in their own files:
//! `conv2d_backward` (the GEMM paths' input and weight gradients, and ReLU's mask) and
//! `relu_backward` (Winograd's, which read the gradient through ReLU and the pooling
//! record without unpooling it first).

pub(crate) mod average_pool;
pub(crate) mod conv2d;
pub(crate) mod conv2d_backward;
pub(crate) mod conv2d_relu_pool;
pub(crate) mod elu;
pub(crate) mod max_pool;
pub(crate) mod pair;
pub(crate) mod relu_backward;
pub(crate) mod resize;
pub(crate) mod unpool;

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};

use crate::kernels::{Elem, Geometry};
use crate::options::{BatchLayout, ConvOptions};

/// The dims of a 4-D tensor.
pub(crate) type Dims4 = (usize, usize, usize, usize);

/// What an op's forward pass left for its backward pass, locked; `op` names the op
/// in the error.
pub(crate) fn record<'a, T>(
    m: &'a std::sync::Mutex<T>,
    op: &str,
) -> Result<std::sync::MutexGuard<'a, T>> {
    m.lock()
        .map_err(|_| candle_core::Error::Msg(format!("fast {op}: poisoned lock")))
}

pub(crate) fn slice<'a, T: Elem>(s: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("fast conv2d: {what} is not contiguous"),
    }
}

pub(crate) fn dims4(l: &Layout, what: &str) -> Result<Dims4> {
    l.shape()
        .dims4()
        .map_err(|_| candle_core::Error::Msg(format!("fast conv2d: {what} is not 4-D")))
}

/// The geometry of a convolution of an `x` batch (`N, C_in, H, W`) with a `kernel`
/// (`C_out, C_in, k, k`).
pub(crate) fn geometry_of(x: Dims4, kernel: Dims4, options: ConvOptions) -> Result<Geometry> {
    Geometry::new(x, kernel, options.stride, options.padding)
        .map_err(|e| candle_core::Error::Msg(format!("fast conv2d: {e}")))
}

/// `N, C, H, W` from the dims of a batch in `layout` (`N x C x H x W`, or
/// `N x H x W x C`).
pub(crate) fn nchw((a, b, c, d): Dims4, layout: BatchLayout) -> Dims4 {
    match layout {
        BatchLayout::ChannelsLast => (a, d, b, c),
        BatchLayout::ChannelsFirst => (a, b, c, d),
    }
}

/// The shape of an `N x C x H x W` batch in `layout`'s memory order.
pub(crate) fn batch_shape((n, c, h, w): Dims4, layout: BatchLayout) -> Shape {
    match layout {
        BatchLayout::ChannelsLast => Shape::from((n, h, w, c)),
        BatchLayout::ChannelsFirst => Shape::from((n, c, h, w)),
    }
}

/// The geometry of a convolution of the input `x`, laid out as `layout`, with the
/// kernel `w`.
pub(crate) fn geometry(
    x: &Layout,
    w: &Layout,
    options: ConvOptions,
    layout: BatchLayout,
) -> Result<Geometry> {
    let x = nchw(dims4(x, "input")?, layout);
    geometry_of(x, dims4(w, "kernel")?, options)
}

/// Checks that a bias has one value per output channel.
pub(crate) fn check_bias(l: &Layout, g: &Geometry) -> Result<()> {
    if l.shape().dims() != [g.c_out] {
        candle_core::bail!(
            "fast conv2d: bias has shape {:?}, expected [{}]",
            l.shape().dims(),
            g.c_out
        );
    }
    Ok(())
}

/// Checks that an output gradient has the convolution's output shape.
pub(crate) fn check_output_gradient(l: &Layout, g: &Geometry, layout: BatchLayout) -> Result<()> {
    if nchw(dims4(l, "gradient")?, layout) != (g.n, g.c_out, g.ho, g.wo) {
        candle_core::bail!("fast conv2d: output gradient has the wrong shape");
    }
    Ok(())
}

/// Dispatches a computation on the storage's dtype, the one place every op's
/// `cpu_fwd` turns a `CpuStorage` into typed slices: `$body` runs with `$v` the
/// storage's `Vec<f32>` or `Vec<f64>` and returns a `Vec` of the same type; other
/// dtypes are an error that `$what` (the op) starts.
///
/// A macro, not a generic function: the body is generic in the element type, which a
/// closure cannot be.
macro_rules! with_dtype {
    ($what:literal, $s:expr, |$v:ident| $body:expr) => {
        match $s {
            CpuStorage::F32($v) => CpuStorage::F32($body),
            CpuStorage::F64($v) => CpuStorage::F64($body),
            other => candle_core::bail!("{}: unsupported dtype {:?}", $what, other.dtype()),
        }
    };
}

/// Extracts a same-typed contiguous slice from a second storage.
pub(crate) trait Same: Elem {
    fn same<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [Self]>;
}

impl Same for f32 {
    fn same<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
        match s {
            CpuStorage::F32(v) => slice(v, l, what),
            _ => candle_core::bail!("fast conv2d: {what} is not f32"),
        }
    }
}

impl Same for f64 {
    fn same<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f64]> {
        match s {
            CpuStorage::F64(v) => slice(v, l, what),
            _ => candle_core::bail!("fast conv2d: {what} is not f64"),
        }
    }
}
pub(crate) use with_dtype;

/// Which gradients a backward pass computes: the input's, and the flat `dW | db`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted {
    pub(crate) input: bool,
    pub(crate) weights: bool,
}

impl Wanted {
    /// The gradients of the arguments that take part in a gradient.
    pub(crate) fn of(x: &Tensor, w: &Tensor, b: &Tensor) -> Self {
        Self {
            input: x.track_op(),
            weights: w.track_op() || b.track_op(),
        }
    }
}

/// An input gradient and a flat `dW | db`, each where it was asked for.
pub(crate) type Gradients = (Option<Tensor>, Option<Tensor>);

/// The weight and bias gradients from the backward passes' flat `dW | db`.
pub(crate) fn split_weight_bias(
    flat: Option<Tensor>,
    w: &Tensor,
    b: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let Some(flat) = flat else {
        return Ok((None, None));
    };
    let wlen = w.elem_count();
    Ok((
        Some(flat.narrow(0, 0, wlen)?.reshape(w.shape())?),
        Some(flat.narrow(0, wlen, b.elem_count())?),
    ))
}
