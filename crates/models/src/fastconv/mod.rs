//! Fast CPU convolutions as candle custom ops with their own backward passes.
//!
//! candle 0.11's CPU conv2d reaches about 13 % of the machine's GEMM rate forward and
//! runs its input gradient as a direct-loop transposed convolution. Here every pass is
//! im2col (or col2im) around one `gemm` product per image, the batch split across
//! rayon's threads with one scratch buffer per thread:
//!
//! - forward: `y = act(W · im2col(x) + b)`, bias and ReLU fused into the epilogue; at
//!   stride 1 with 3x3 kernels over 16+ channels, one GEMM per kernel tap over shifted
//!   views of the padded input instead of im2col (see `shifted`);
//! - input gradient: at stride 1 a forward convolution of the output gradient with the
//!   flipped, transposed kernel; otherwise `col2im(Wᵀ · g)`;
//! - weight and bias gradients: `Σ_n g_n · im2col(x_n)ᵀ` and `Σ g`, in one pass.
//!
//! Stride-1 3x3 layers whose channel counts are multiples of 8 run Winograd F(4x4, 3x3)
//! or F(5x5, 3x3), whichever needs fewer multiplies for the output size (see
//! `winograd`), in all three passes. Every op also takes channels-last batches
//! (`conv2d_nhwc`, `conv2d_relu_pool_nhwc`, `global_average_pool_nhwc`): the Winograd
//! kernels work channels-last, so a model that stays channels-last from layer to layer
//! never transposes its activations or their gradients.
//!
//! Gradients are computed only for the arguments that take part in a gradient (an
//! attack's weights and a training step's input images are skipped). Other devices and
//! dtypes go through candle's own `conv2d`.

mod allocator;
mod denormal;
mod kernels;
mod pool;
mod shifted;
mod winograd;

pub use allocator::keep_freed_memory;
pub use denormal::{denormals_flushed, flush_denormals};

/// What [`tune_cpu_runtime`] could switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTuning {
    /// Denormals flush to zero on this thread and rayon's workers.
    pub denormals_flushed: bool,
    /// malloc keeps freed large blocks for reuse.
    pub freed_memory_kept: bool,
    /// candle's element-wise worker threads park soon after their work instead of
    /// spinning (false when `CANDLE_BARRIER_POOL_SPIN_LIMIT` was already set).
    pub candle_spin_limited: bool,
}

/// Process-wide settings for fast CPU work, for binaries to call once at start-up
/// (before spawning threads of their own and before any candle operation):
/// flush-to-zero for denormals, malloc tuning, and a short spin for candle's
/// element-wise worker pool. Libraries never call it.
pub fn tune_cpu_runtime() -> CpuTuning {
    CpuTuning {
        candle_spin_limited: limit_candle_spinning(),
        freed_memory_kept: keep_freed_memory(),
        denormals_flushed: flush_denormals(),
    }
}

/// candle 0.11's element-wise ops run on a worker pool of its own, whose threads spin
/// 25,000 times after each op before they park: on a 2-core machine that spinning
/// takes the cores from the rayon workers that run these convolutions. 1,000 spins
/// made a training step about 4 % faster there (best of 30). Sets
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` unless the user did, which candle reads when it
/// starts the pool (its first element-wise op).
fn limit_candle_spinning() -> bool {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_some() {
        return false;
    }
    std::env::set_var(VAR, "1000");
    true
}

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use kernels::{
    assume_written, col2im, im2col, matmul, matmul_unwritten, transpose, unwritten, zeros, Elem,
    Geometry, Mat,
};

static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Switches the fast CPU path on or off for the whole process (on by default). Off,
/// [`conv2d`] and [`max_pool2d`] run candle's own ops: for comparing speed, or for
/// ruling the fast path out when a result looks wrong.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the fast CPU path is on (see [`set_enabled`]).
pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

static WINOGRAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Switches Winograd (F(4x4, 3x3) or F(5x5, 3x3)) for stride-1 3x3 layers on or off
/// for the whole process (on by default), when both channel counts are multiples of 8.
/// In f32 its value and both gradients are within about 5e-6 of the output's scale of
/// the exact (f64) convolution (3e-6 to 5e-6 measured forward on GapCnn's layer shapes,
/// F(5x5) at the top of that range), against 2e-7 to 6e-7 for the GEMM paths; off,
/// those layers run the GEMM paths.
pub fn set_winograd(on: bool) {
    WINOGRAD.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether stride-1 3x3 layers run Winograd (see [`set_winograd`]).
pub fn winograd_enabled() -> bool {
    WINOGRAD.load(std::sync::atomic::Ordering::Relaxed)
}

fn use_winograd(g: &Geometry) -> bool {
    winograd_enabled() && winograd::applies(g)
}

/// `act(conv2d(x, weight) + bias)` with "same"-style symmetric zero padding, where
/// `act` is ReLU when `relu` is set and the identity otherwise.
///
/// `x` is `N x C_in x H x W`, `weight` `C_out x C_in x k x k`, `bias` `C_out`. On the
/// CPU with f32 or f64 this runs the fast kernels; elsewhere candle's `conv2d`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
    relu: bool,
) -> Result<Tensor> {
    if !runs_fast(x) || weight.dtype() != x.dtype() || bias.dtype() != x.dtype() {
        return reference_conv2d(x, weight, bias, stride, padding, relu);
    }
    conv_op(x, weight, bias, (stride, padding), (relu, false))
}

/// The fused convolution (bias, optional ReLU) op.
fn conv_op(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    (stride, padding): (usize, usize),
    (relu, channels_last): (bool, bool),
) -> Result<Tensor> {
    let op = ConvForward {
        stride,
        padding,
        relu,
        channels_last,
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

/// Whether the ops of this module take their fast CPU path on `x` (they are switched
/// on, `x` is on the CPU, in f32 or f64).
pub fn runs_fast(x: &Tensor) -> bool {
    enabled() && x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Whether a model of stride-1 3x3 layers should run `x` channels-last (the `_nhwc`
/// ops): on the fast path with Winograd on, whose kernels work channels-last. Off the
/// fast path the `_nhwc` ops only add permutes around candle's, and without Winograd
/// the channels-first GEMM paths are the faster ones (one GEMM per kernel tap over the
/// padded image, where channels-last goes through im2col).
pub fn prefers_channels_last(x: &Tensor) -> bool {
    runs_fast(x) && winograd_enabled()
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
    stride: usize,
    padding: usize,
    relu: bool,
) -> Result<Tensor> {
    if !runs_fast(x) || weight.dtype() != x.dtype() || bias.dtype() != x.dtype() {
        let x = x.permute((0, 3, 1, 2))?;
        return reference_conv2d(&x, weight, bias, stride, padding, relu)?.permute((0, 2, 3, 1));
    }
    conv_op(x, weight, bias, (stride, padding), (relu, true))
}

/// The same computation through candle's own ops (the path on other devices, and the
/// reference the tests and benches compare with).
pub fn reference_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
    relu: bool,
) -> Result<Tensor> {
    let y = x
        .conv2d(weight, padding, stride, 1, 1)?
        .broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// `max_pool2d(act(conv2d(x, weight) + bias), k)` with ReLU as `act`: [`conv2d`] then
/// [`max_pool2d`] in one op whose backward keeps, instead of the convolution's output,
/// one byte per pooled value (where its maximum was). The pooling is fused into the
/// Winograd output transform when `k` divides its 4x4 tiles. The convolution's output
/// must be divisible by `k` (at most 15) on both sides.
pub fn conv2d_relu_pool(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    (stride, padding): (usize, usize),
    k: usize,
) -> Result<Tensor> {
    if !runs_fast(x) || weight.dtype() != x.dtype() || bias.dtype() != x.dtype() {
        return max_pool2d(
            &reference_conv2d(x, weight, bias, stride, padding, true)?,
            k,
        );
    }
    conv_relu_pool_op(x, weight, bias, (stride, padding), (k, false))
}

/// [`conv2d_relu_pool`] on channels-last batches, as [`conv2d_nhwc`]. The fused op
/// runs where Winograd pools (stride-1 3x3 kernels, channel counts divisible by 8, a
/// window dividing 4); other layers permute around [`conv2d_relu_pool`].
pub fn conv2d_relu_pool_nhwc(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    (stride, padding): (usize, usize),
    k: usize,
) -> Result<Tensor> {
    let native = runs_fast(x)
        && weight.dtype() == x.dtype()
        && bias.dtype() == x.dtype()
        && x.dims4().is_ok_and(|d| {
            weight.dims4().is_ok_and(|wd| {
                geometry_of(nchw(d, true), wd, stride, padding)
                    .is_ok_and(|g| pools_in_winograd(&g, k))
            })
        });
    if !native {
        let x = x.permute((0, 3, 1, 2))?;
        return conv2d_relu_pool(&x, weight, bias, (stride, padding), k)?.permute((0, 2, 3, 1));
    }
    conv_relu_pool_op(x, weight, bias, (stride, padding), (k, true))
}

/// A convolution's kernel, bias, and (stride, padding).
pub type ConvLayer<'a> = (&'a Tensor, &'a Tensor, (usize, usize));

/// Two convolutions with ReLU, the second max-pooled over `k x k` windows, on a
/// channels-last batch: [`conv2d_nhwc`] then [`conv2d_relu_pool_nhwc`] as one op.
///
/// The first convolution's output stays inside the op, for its backward pass, instead
/// of becoming a node of candle's graph. candle 0.11's backward allocates a zero
/// tensor for every node and adds the node's gradient to it; for GapCnn's conv1 at
/// batch 128 that is a 13 MB fill and a 13 MB addition per training step, which this
/// op saves. Values and gradients are those of the two ops. Off the fast path, or
/// where the second layer does not pool in Winograd (see [`conv2d_relu_pool_nhwc`]),
/// this runs the two ops.
pub fn conv2d_pair_relu_pool_nhwc(
    x: &Tensor,
    (w1, b1, (s1, p1)): ConvLayer<'_>,
    (w2, b2, (s2, p2)): ConvLayer<'_>,
    k: usize,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let native = runs_fast(x)
        && [w1, b1, w2, b2].iter().all(|t| t.dtype() == dtype)
        && (|| pair_geometry(x.dims4()?, (w1.dims4()?, s1, p1), (w2.dims4()?, s2, p2)))()
            .is_ok_and(|(_, g2)| pools_whole_windows(&g2, k));
    if !native {
        let y1 = conv2d_nhwc(x, w1, b1, s1, p1, true)?;
        return conv2d_relu_pool_nhwc(&y1, w2, b2, (s2, p2), k);
    }
    let layer = |stride, padding| ConvForward {
        stride,
        padding,
        relu: true,
        channels_last: true,
    };
    let op = PairForward {
        layers: [layer(s1, p1), layer(s2, p2)],
        kernels: [w1.dims4()?, w2.dims4()?],
        k,
        saved: std::sync::Mutex::new(None),
    };
    // Each layer's kernel and bias as one flat `W | b` argument, the layout of the
    // backward passes' weight gradients.
    let flat = |w: &Tensor, b: &Tensor| Tensor::cat(&[&w.flatten_all()?, &b.flatten_all()?], 0);
    x.contiguous()?
        .apply_op3(&flat(w1, b1)?, &flat(w2, b2)?, op)
}

/// The geometries of the two layers of [`conv2d_pair_relu_pool_nhwc`] on a
/// channels-last batch of dims `x`.
fn pair_geometry(
    x: Dims4,
    (w1, s1, p1): (Dims4, usize, usize),
    (w2, s2, p2): (Dims4, usize, usize),
) -> Result<(Geometry, Geometry)> {
    let g1 = geometry_of(nchw(x, true), w1, s1, p1)?;
    let g2 = geometry_of((g1.n, g1.c_out, g1.ho, g1.wo), w2, s2, p2)?;
    Ok((g1, g2))
}

/// The dims of a 4-D tensor.
type Dims4 = (usize, usize, usize, usize);

/// The op of [`conv2d_pair_relu_pool_nhwc`]: (input, flat `W1 | b1`, flat `W2 | b2`).
struct PairForward {
    layers: [ConvForward; 2],
    kernels: [Dims4; 2],
    k: usize,
    /// The first layer's output and the pooling record, from the forward pass.
    saved: std::sync::Mutex<Option<(Tensor, std::sync::Arc<Vec<u8>>)>>,
}

impl PairForward {
    fn geometry(&self, x: &Layout) -> Result<(Geometry, Geometry)> {
        let [l1, l2] = self.layers;
        let (g1, g2) = pair_geometry(
            dims4(x, "input")?,
            (self.kernels[0], l1.stride, l1.padding),
            (self.kernels[1], l2.stride, l2.padding),
        )?;
        let k = self.k;
        if !pools_whole_windows(&g2, k) {
            candle_core::bail!(
                "fast conv2d pair: the second layer does not pool {k}x{k} in Winograd"
            );
        }
        Ok((g1, g2))
    }

    /// The first layer's output and the pooling record.
    fn saved(&self) -> Result<(Tensor, std::sync::Arc<Vec<u8>>)> {
        record(&self.saved, "conv2d pair")?.clone().ok_or_else(|| {
            candle_core::Error::Msg("fast conv2d pair: backward before forward".into())
        })
    }

    /// A layer's kernel, `C_out x C_in x k x k`, from its flat `W | b`.
    fn kernel(&self, layer: usize, flat: &Tensor) -> Result<Tensor> {
        let (o, i, kh, kw) = self.kernels[layer];
        flat.narrow(0, 0, o * i * kh * kw)?.reshape((o, i, kh, kw))
    }
}

/// Checks that `flat` holds a layer's `W | b`.
fn check_flat(l: &Layout, g: &Geometry, what: &str) -> Result<()> {
    if l.shape().dims() != [g.c_out * g.ckk() + g.c_out] {
        candle_core::bail!(
            "fast conv2d pair: the {what} has shape {:?}, not the {} values of W | b",
            l.shape(),
            g.c_out * g.ckk() + g.c_out
        );
    }
    Ok(())
}

impl CustomOp3 for PairForward {
    fn name(&self) -> &'static str {
        "fast-conv2d-pair-relu-pool"
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
        let (g1, g2) = self.geometry(l1)?;
        check_flat(l2, &g1, "first layer's parameters")?;
        check_flat(l3, &g2, "second layer's parameters")?;
        let k = self.k;
        /// (first output, pooled second output, pooling record).
        type Outputs<T> = (Tensor, Vec<T>, Vec<u8>);
        fn run<T: Same + candle_core::WithDType>(
            (g1, g2): (&Geometry, &Geometry),
            k: usize,
            x: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
        ) -> Result<Outputs<T>> {
            let (w1, b1) =
                T::same(s2, l2, "first layer's parameters")?.split_at(g1.c_out * g1.ckk());
            let (w2, b2) =
                T::same(s3, l3, "second layer's parameters")?.split_at(g2.c_out * g2.ckk());
            let y1 = forward(g1, x, w1, Some(b1), true, true);
            let (y2, codes) = forward_pooled(g2, &y1, (w2, b2), k, true);
            let first = batch_shape((g1.n, g1.c_out, g1.ho, g1.wo), true);
            Ok((
                Tensor::from_vec(y1, first, &candle_core::Device::Cpu)?,
                y2,
                codes,
            ))
        }
        let args = ((&g1, &g2), k, (s2, l2), (s3, l3));
        let (y1, y2, codes) = match s1 {
            CpuStorage::F32(x) => {
                let (y1, y2, codes) = run(args.0, k, slice(x, l1, "input")?, args.2, args.3)?;
                (y1, CpuStorage::F32(y2), codes)
            }
            CpuStorage::F64(x) => {
                let (y1, y2, codes) = run(args.0, k, slice(x, l1, "input")?, args.2, args.3)?;
                (y1, CpuStorage::F64(y2), codes)
            }
            other => candle_core::bail!("fast conv2d pair: unsupported dtype {:?}", other.dtype()),
        };
        *record(&self.saved, "conv2d pair")? = Some((y1, std::sync::Arc::new(codes)));
        Ok((
            y2,
            batch_shape((g2.n, g2.c_out, g2.ho / k, g2.wo / k), true),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        flat1: &Tensor,
        flat2: &Tensor,
        y2: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (y1, codes) = self.saved()?;
        let grad = grad.contiguous()?;
        let (w1, w2) = (self.kernel(0, flat1)?, self.kernel(1, flat2)?);
        let want1 = Wanted {
            input: x.track_op(),
            weights: flat1.track_op(),
        };
        // The first layer's output gradient is needed for either of its gradients.
        let want2 = Wanted {
            input: want1.input || want1.weights,
            weights: flat2.track_op(),
        };
        let second = (self.layers[1].padding, true);
        let (dy1, dflat2) =
            backward_through_relu((&y1, &w2), y2, &grad, second, (self.k, codes), want2)?;
        let (dx, dflat1) = match dy1 {
            Some(dy1) => self.layers[0].backward(x, &w1, &y1, &dy1, want1)?,
            None => (None, None),
        };
        Ok((dx, dflat1, dflat2))
    }
}

/// What an op's forward pass left for its backward pass, locked; `op` names the op
/// in the error.
fn record<'a, T>(m: &'a std::sync::Mutex<T>, op: &str) -> Result<std::sync::MutexGuard<'a, T>> {
    m.lock()
        .map_err(|_| candle_core::Error::Msg(format!("fast {op}: poisoned lock")))
}

/// The fused convolution, ReLU and max-pool op.
fn conv_relu_pool_op(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    (stride, padding): (usize, usize),
    (k, channels_last): (usize, bool),
) -> Result<Tensor> {
    let op = ConvPoolForward {
        conv: ConvForward {
            stride,
            padding,
            relu: true,
            channels_last,
        },
        k,
        codes: std::sync::Mutex::new(None),
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

/// Threads to split a batch over.
fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// gemm's own threading, used only when the batch is too small to split.
fn inner_parallelism(n: usize) -> Parallelism {
    let t = threads();
    if n >= t || t == 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(t)
    }
}

/// Images per task so that the batch splits into about one task per thread.
fn chunk(n: usize) -> usize {
    n.div_ceil(threads()).max(1)
}

fn slice<'a, T: Elem>(s: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("fast conv2d: {what} is not contiguous"),
    }
}

fn dims4(l: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    l.shape()
        .dims4()
        .map_err(|_| candle_core::Error::Msg(format!("fast conv2d: {what} is not 4-D")))
}

fn geometry_of(
    x: (usize, usize, usize, usize),
    kernel: (usize, usize, usize, usize),
    stride: usize,
    pad: usize,
) -> Result<Geometry> {
    Geometry::new(x, kernel, stride, pad)
        .map_err(|e| candle_core::Error::Msg(format!("fast conv2d: {e}")))
}

/// `N, C, H, W` from the dims of an `N x C x H x W` tensor, or of an `N x H x W x C`
/// one when `channels_last`.
fn nchw(
    (a, b, c, d): (usize, usize, usize, usize),
    channels_last: bool,
) -> (usize, usize, usize, usize) {
    if channels_last {
        (a, d, b, c)
    } else {
        (a, b, c, d)
    }
}

/// The shape of an `N x C x H x W` batch in memory order.
fn batch_shape((n, c, h, w): (usize, usize, usize, usize), channels_last: bool) -> Shape {
    if channels_last {
        Shape::from((n, h, w, c))
    } else {
        Shape::from((n, c, h, w))
    }
}

fn geometry(
    x: &Layout,
    w: &Layout,
    stride: usize,
    pad: usize,
    channels_last: bool,
) -> Result<Geometry> {
    let x = nchw(dims4(x, "input")?, channels_last);
    geometry_of(x, dims4(w, "kernel")?, stride, pad)
}

/// Checks that a bias has one value per output channel.
fn check_bias(l: &Layout, g: &Geometry) -> Result<()> {
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
fn check_output_gradient(l: &Layout, g: &Geometry, channels_last: bool) -> Result<()> {
    if nchw(dims4(l, "gradient")?, channels_last) != (g.n, g.c_out, g.ho, g.wo) {
        candle_core::bail!("fast conv2d: output gradient has the wrong shape");
    }
    Ok(())
}

/// A batch's images as a Winograd source, in their memory order.
fn dense<T: Elem>(x: &[T], channels_last: bool) -> winograd::Source<'_, T> {
    if channels_last {
        winograd::Source::ChannelsLast(x)
    } else {
        winograd::Source::Dense(x)
    }
}

/// One input image channels-first, as im2col reads it: `x` itself, or (channels-last
/// with more than one channel) its transpose into `buf`.
fn channels_first<'a, T: Elem>(
    g: &Geometry,
    x: &'a [T],
    channels_last: bool,
    buf: &'a mut Vec<T>,
) -> &'a [T] {
    if !channels_last || g.c_in == 1 {
        return x;
    }
    let hw = g.h * g.w;
    buf.resize(g.in_len(), T::ZERO);
    transpose(x, (hw, g.c_in, g.c_in), buf, hw);
    buf
}

/// One image's output gradient as the GEMMs' `C_out x Ho*Wo` operand.
fn gradient_rows<'a, T>(g: &Geometry, gy: &'a [T], channels_last: bool) -> Mat<'a, T> {
    if channels_last {
        Mat::rows_t(gy, g.c_out)
    } else {
        Mat::rows(gy, g.out_hw())
    }
}

/// Forward convolution of a contiguous batch (`N x C x H x W`, or `N x H x W x C`
/// when `channels_last`, the output in the same order), optionally with bias and ReLU.
#[allow(unsafe_code)]
fn forward<T: Elem>(
    g: &Geometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    relu: bool,
    channels_last: bool,
) -> Vec<T> {
    if g.n * g.out_len() == 0 {
        return Vec::new();
    }
    let per = chunk(g.n);
    let par = inner_parallelism(g.n);
    if use_winograd(g) {
        let mut out = unwritten(g.n * g.out_len());
        let out_pool = (&mut out[..], (1, &mut [][..]), channels_last);
        let x = dense(x, channels_last);
        winograd_forward(g, x, (w, bias, relu), out_pool, per, par);
        // SAFETY: the Winograd forward pass writes every output value.
        return unsafe { assume_written(out) };
    }
    let shape = (g.c_out, g.out_hw());
    if shifted::applies(g) && !channels_last {
        let mut out = zeros(g.n * g.out_len(), T::ZERO);
        out.par_chunks_mut(per * g.out_len())
            .zip(x.par_chunks(per * g.in_len()))
            .for_each(|(out, x)| {
                let mut s = shifted::Scratch::new(g);
                for (y, x) in out
                    .chunks_exact_mut(g.out_len())
                    .zip(x.chunks_exact(g.in_len()))
                {
                    shifted::forward_image(g, &mut s, x, w, y, par);
                    epilogue(y, shape, bias, relu, false);
                }
            });
        return out;
    }
    // im2col and one product per image, which writes the whole image's output.
    let mut out = unwritten(g.n * g.out_len());
    out.par_chunks_mut(per * g.out_len())
        .zip(x.par_chunks(per * g.in_len()))
        .for_each(|(out, x)| {
            let mut cols = vec![T::ZERO; g.ckk() * g.out_hw()];
            let mut image = Vec::new();
            for (y, x) in out
                .chunks_exact_mut(g.out_len())
                .zip(x.chunks_exact(g.in_len()))
            {
                im2col(
                    g,
                    channels_first(g, x, channels_last, &mut image),
                    &mut cols,
                );
                let y = if channels_last {
                    // The transposed product, `Ho*Wo x C_out`.
                    let (cols, w) = (Mat::rows_t(&cols, g.out_hw()), Mat::rows_t(w, g.ckk()));
                    matmul_unwritten(g.out_hw(), g.c_out, g.ckk(), y, cols, w, par)
                } else {
                    let (w, cols) = (Mat::rows(w, g.ckk()), Mat::rows(&cols, g.out_hw()));
                    matmul_unwritten(g.c_out, g.out_hw(), g.ckk(), y, w, cols, par)
                };
                epilogue(y, shape, bias, relu, channels_last);
            }
        });
    // SAFETY: each image's product wrote all of its output.
    unsafe { assume_written(out) }
}

/// Adds the bias and applies ReLU to one `c x hw` output image (`hw x c` when
/// `channels_last`).
fn epilogue<T: Elem>(
    y: &mut [T],
    (c, hw): (usize, usize),
    bias: Option<&[T]>,
    relu: bool,
    channels_last: bool,
) {
    // NaN passes through (it is not <= 0), as in candle's relu.
    let act = |s: T| if relu && s <= T::ZERO { T::ZERO } else { s };
    if channels_last {
        match bias {
            Some(bias) => {
                for pixel in y.chunks_exact_mut(c) {
                    for (v, &b) in pixel.iter_mut().zip(bias) {
                        *v = act(*v + b);
                    }
                }
            }
            None => y.iter_mut().for_each(|v| *v = act(*v)),
        }
        return;
    }
    for (ch, plane) in y.chunks_exact_mut(hw).enumerate() {
        let b = bias.map_or(T::ZERO, |b| b[ch]);
        for v in plane.iter_mut() {
            *v = act(*v + b);
        }
    }
}

/// Whether [`forward_pooled`] runs through Winograd, the only path that takes
/// channels-last batches.
fn pools_in_winograd(g: &Geometry, k: usize) -> bool {
    use_winograd(g) && winograd::pools::<winograd::F4>(k)
}

/// Whether Winograd pools `k x k` windows for `g` and they tile its whole output.
fn pools_whole_windows(g: &Geometry, k: usize) -> bool {
    pools_in_winograd(g, k) && g.ho % k == 0 && g.wo % k == 0
}

/// `max_pool(relu(conv(x) + b), k)` and each window's first maximum (its offset
/// `dy * k + dx`), with the pooling fused into Winograd's output transform where it
/// applies (which a channels-last batch requires, see [`pools_in_winograd`]).
#[allow(unsafe_code)]
fn forward_pooled<T: Elem>(
    g: &Geometry,
    x: &[T],
    (w, b): (&[T], &[T]),
    k: usize,
    channels_last: bool,
) -> (Vec<T>, Vec<u8>) {
    let pooled = g.n * g.c_out * (g.ho / k) * (g.wo / k);
    if pooled == 0 {
        return (Vec::new(), Vec::new());
    }
    if pools_in_winograd(g, k) {
        let (mut out, mut codes) = (unwritten(pooled), unwritten(pooled));
        let (per, par) = (chunk(g.n), inner_parallelism(g.n));
        let x = dense(x, channels_last);
        let out_pool = (&mut out[..], (k, &mut codes[..]), channels_last);
        winograd::forward::<winograd::F4, T>(g, x, w, Some(b), true, out_pool, per, par);
        // SAFETY: the Winograd forward pass writes every output value and code.
        return unsafe { (assume_written(out), assume_written(codes)) };
    }
    let mut out = zeros(pooled, T::ZERO);
    let mut codes = zeros(pooled, 0u8);
    debug_assert!(
        !channels_last,
        "channels-last pooling runs only through Winograd"
    );
    let full = forward(g, x, w, Some(b), true, false);
    let planes = g.n * g.c_out;
    pool::forward_with_codes(&full, planes, (g.ho, g.wo), k, (&mut out, &mut codes));
    (out, codes)
}

/// Input channels from which a stride-1 input gradient runs as a flipped convolution.
const FLIPPED_MIN_CHANNELS: usize = 8;

/// A stride-1 convolution's input gradient is the convolution of the output gradient
/// with the kernel flipped in space and transposed in channels: that convolution's
/// geometry and kernel.
fn flipped<T: Elem>(g: &Geometry, w: &[T]) -> (Geometry, Vec<T>) {
    let k2 = g.k * g.k;
    let mut flipped = vec![T::ZERO; w.len()];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for t in 0..k2 {
                flipped[(ci * g.c_out + co) * k2 + (k2 - 1 - t)] = w[(co * g.c_in + ci) * k2 + t];
            }
        }
    }
    (back_geometry(g), flipped)
}

/// The geometry of [`flipped`]'s convolution (stride 1, `pad < k`).
fn back_geometry(g: &Geometry) -> Geometry {
    Geometry {
        n: g.n,
        c_in: g.c_out,
        h: g.ho,
        w: g.wo,
        c_out: g.c_in,
        k: g.k,
        stride: 1,
        pad: g.k - 1 - g.pad,
        ho: g.h,
        wo: g.w,
    }
}

/// Whether a convolution's two backward passes both run Winograd, reading the output
/// gradient of a fused pool without unpooling it first.
fn backward_reads_pooled(g: &Geometry) -> bool {
    g.stride == 1 && g.pad < g.k && use_winograd(g) && use_winograd(&back_geometry(g))
}

/// Gradient with respect to the input, `N x C_in x H x W` (or `N x H x W x C_in`,
/// from a channels-last output gradient).
fn backward_data<T: Elem>(g: &Geometry, grad: &[T], w: &[T], channels_last: bool) -> Vec<T> {
    // With few input channels the flipped convolution is a thin GEMM over a large
    // unfolded gradient; col2im reads and writes less there.
    if g.stride == 1 && g.pad < g.k && g.c_in >= FLIPPED_MIN_CHANNELS {
        let (back, flipped) = flipped(g, w);
        return forward(&back, grad, &flipped, None, false, channels_last);
    }
    let mut dx = zeros(g.n * g.in_len(), T::ZERO);
    if dx.is_empty() {
        return dx;
    }
    let per = chunk(g.n);
    let par = inner_parallelism(g.n);
    dx.par_chunks_mut(per * g.in_len())
        .zip(grad.par_chunks(per * g.out_len()))
        .for_each(|(dx, grad)| {
            let mut cols = vec![T::ZERO; g.ckk() * g.out_hw()];
            // Channels-last with several channels, each image's gradient is gathered
            // channels-first, then transposed.
            let through = channels_last && g.c_in > 1;
            let mut image = vec![T::ZERO; if through { g.in_len() } else { 0 }];
            for (dx, gy) in dx
                .chunks_exact_mut(g.in_len())
                .zip(grad.chunks_exact(g.out_len()))
            {
                matmul(
                    g.ckk(),
                    g.out_hw(),
                    g.c_out,
                    &mut cols,
                    false,
                    Mat::rows_t(w, g.ckk()),
                    gradient_rows(g, gy, channels_last),
                    par,
                );
                if through {
                    image.fill(T::ZERO);
                    col2im(g, &cols, &mut image);
                    let hw = g.h * g.w;
                    transpose(&image, (g.c_in, hw, hw), dx, g.c_in);
                } else {
                    col2im(g, &cols, dx);
                }
            }
        });
    dx
}

/// Adds one image's bias gradient (the output gradient summed per channel).
fn bias_grad<T: Elem>(g: &Geometry, gy: &[T], db: &mut [T], channels_last: bool) {
    if channels_last {
        for pixel in gy.chunks_exact(g.c_out) {
            for (d, &v) in db.iter_mut().zip(pixel) {
                *d += v;
            }
        }
        return;
    }
    for (c, plane) in gy.chunks_exact(g.out_hw()).enumerate() {
        db[c] += kernels::sum(plane);
    }
}

/// One image's output gradient, through ReLU's mask (zero where the output `y` is not
/// positive) into `buf` when there is one.
fn through_relu<'a, T: Elem>(gy: &'a [T], y: Option<&[T]>, buf: &'a mut Vec<T>) -> &'a [T] {
    let Some(y) = y else {
        return gy;
    };
    buf.clear();
    buf.extend(gy.iter().zip(y).map(|(&g, &y)| kernels::relu_grad(g, y)));
    buf
}

/// Weight and bias gradients, flattened: `C_out * C_in * k * k` then `C_out`, of a
/// channels-first batch (or a channels-last one and its output gradient). With
/// `mask`, the layer's ReLU output, the gradient goes through ReLU's backward first.
fn backward_weight<T: Elem>(
    g: &Geometry,
    x: &[T],
    (grad, mask): (&[T], Option<&[T]>),
    channels_last: bool,
) -> Vec<T> {
    let wlen = g.c_out * g.ckk();
    let par = inner_parallelism(g.n);
    let partial = |images: std::ops::Range<usize>| -> Vec<T> {
        let x = &x[images.start * g.in_len()..images.end * g.in_len()];
        let range = images.start * g.out_len()..images.end * g.out_len();
        let (grad, mask) = (&grad[range.clone()], mask.map(|y| &y[range]));
        let image_mask = |i: usize| mask.map(|y| &y[i * g.out_len()..(i + 1) * g.out_len()]);
        let mut masked = Vec::new();
        let mut acc = vec![T::ZERO; wlen + g.c_out];
        if shifted::applies(g) && !channels_last {
            let mut s = shifted::Scratch::new(g);
            let mut taps = vec![T::ZERO; wlen];
            for (i, (x, gy)) in x
                .chunks_exact(g.in_len())
                .zip(grad.chunks_exact(g.out_len()))
                .enumerate()
            {
                let gy = through_relu(gy, image_mask(i), &mut masked);
                shifted::weight_grad_image(g, &mut s, x, gy, &mut taps, par);
                bias_grad(g, gy, &mut acc[wlen..], false);
            }
            shifted::untap(g, &taps, &mut acc[..wlen]);
            return acc;
        }
        let mut cols = vec![T::ZERO; g.ckk() * g.out_hw()];
        let mut image = Vec::new();
        for (i, (x, gy)) in x
            .chunks_exact(g.in_len())
            .zip(grad.chunks_exact(g.out_len()))
            .enumerate()
        {
            let gy = through_relu(gy, image_mask(i), &mut masked);
            im2col(
                g,
                channels_first(g, x, channels_last, &mut image),
                &mut cols,
            );
            matmul(
                g.c_out,
                g.ckk(),
                g.out_hw(),
                &mut acc[..wlen],
                true,
                gradient_rows(g, gy, channels_last),
                Mat::rows_t(&cols, g.out_hw()),
                par,
            );
            bias_grad(g, gy, &mut acc[wlen..], channels_last);
        }
        acc
    };
    if g.n == 0 {
        return vec![T::ZERO; wlen + g.c_out];
    }
    if use_winograd(g) {
        let grad = match mask {
            Some(y) => winograd::Source::ThroughRelu {
                grad,
                y,
                codes: &[],
                k: 1,
                channels_last,
            },
            None => dense(grad, channels_last),
        };
        return winograd_weight_grad(g, x, grad, channels_last);
    }
    summed_over_threads(g.n, partial)
}

/// An unpooled Winograd forward pass through the variant with fewer multiplies for
/// its output size (see [`winograd::prefers_f5`]).
fn winograd_forward<T: Elem>(
    g: &Geometry,
    x: winograd::Source<'_, T>,
    (w, bias, relu): (&[T], Option<&[T]>, bool),
    out: winograd::Destination<'_, T>,
    per: usize,
    par: Parallelism,
) {
    debug_assert_eq!(out.1 .0, 1, "pooled passes run F(4x4)");
    if winograd::prefers_f5(g.ho, g.wo) {
        winograd::forward::<winograd::F5, T>(g, x, w, bias, relu, out, per, par);
    } else {
        winograd::forward::<winograd::F4, T>(g, x, w, bias, relu, out, per, par);
    }
}

/// `partial` over one range of the batch's `n` images per thread, its equal-length
/// results summed.
fn summed_over_threads<T: Elem>(
    n: usize,
    partial: impl Fn(std::ops::Range<usize>) -> Vec<T> + Sync + Send,
) -> Vec<T> {
    let per = chunk(n);
    let parts: Vec<Vec<T>> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|p| p * per..((p + 1) * per).min(n))
        .map(partial)
        .collect();
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_default();
    // Added on all threads: a transformed weight gradient is up to 2 MB.
    const SPAN: usize = 4096;
    for p in parts {
        total
            .par_chunks_mut(SPAN)
            .zip(p.par_chunks(SPAN))
            .for_each(|(t, p)| {
                for (t, &v) in t.iter_mut().zip(p) {
                    *t += v;
                }
            });
    }
    total
}

/// Weight and bias gradients (flat `dW | db`) through Winograd, of a channels-first
/// (or channels-last) batch `x`, with the variant with fewer multiplies for the output
/// size.
fn winograd_weight_grad<T: Elem>(
    g: &Geometry,
    x: &[T],
    grad: winograd::Source<'_, T>,
    channels_last: bool,
) -> Vec<T> {
    if winograd::prefers_f5(g.ho, g.wo) {
        winograd_weight_grad_with::<winograd::F5, T>(g, x, grad, channels_last)
    } else {
        winograd_weight_grad_with::<winograd::F4, T>(g, x, grad, channels_last)
    }
}

/// [`winograd_weight_grad`] through `V`.
fn winograd_weight_grad_with<V: winograd::Variant, T: Elem>(
    g: &Geometry,
    x: &[T],
    grad: winograd::Source<'_, T>,
    channels_last: bool,
) -> Vec<T> {
    let par = inner_parallelism(g.n);
    // Per thread: the transformed weight gradient, then the bias gradient.
    let sum = summed_over_threads(g.n, |images| {
        let x = dense(x, channels_last).images(g.in_len(), images.start, images.len());
        let gy = grad.images(g.out_len(), images.start, images.len());
        winograd::weight_grad_transformed::<V, T>(g, x, gy, par)
    });
    let (du, db) = sum.split_at(sum.len() - g.c_out);
    let wlen = g.c_out * g.ckk();
    let mut total = vec![T::ZERO; wlen + g.c_out];
    winograd::untransform_weight_grad::<V, T>(g, du, &mut total[..wlen]);
    total[wlen..].copy_from_slice(db);
    total
}

/// Dispatches a computation on the storage's dtype.
macro_rules! with_dtype {
    ($what:literal, $s:expr, |$v:ident| $body:expr) => {
        match $s {
            CpuStorage::F32($v) => CpuStorage::F32($body),
            CpuStorage::F64($v) => CpuStorage::F64($body),
            other => candle_core::bail!(
                "fast conv2d {}: unsupported dtype {:?}",
                $what,
                other.dtype()
            ),
        }
    };
}

/// Extracts a same-typed contiguous slice from a second storage.
trait Same: Elem {
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

/// `act(conv2d(x, w) + b)`, on `N x C x H x W` batches or, when `channels_last`, on
/// `N x H x W x C` ones (the kernel in PyTorch's layout either way).
#[derive(Debug, Clone, Copy)]
struct ConvForward {
    stride: usize,
    padding: usize,
    relu: bool,
    channels_last: bool,
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
        let cl = self.channels_last;
        let g = geometry(l1, l2, self.stride, self.padding, cl)?;
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
            Ok(forward(g, x, w, Some(b), op.relu, op.channels_last))
        }
        let out = with_dtype!("forward", s1, |x| run(
            self,
            &g,
            slice(x, l1, "input")?,
            (s2, l2),
            (s3, l3)
        )?);
        Ok((out, batch_shape((g.n, g.c_out, g.ho, g.wo), cl)))
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

/// Which gradients a backward pass computes: the input's, and the flat `dW | db`.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    input: bool,
    weights: bool,
}

impl Wanted {
    /// The gradients of the arguments that take part in a gradient.
    fn of(x: &Tensor, w: &Tensor, b: &Tensor) -> Self {
        Self {
            input: x.track_op(),
            weights: w.track_op() || b.track_op(),
        }
    }
}

/// An input gradient and a flat `dW | db`, each where it was asked for.
type Gradients = (Option<Tensor>, Option<Tensor>);

impl ConvForward {
    /// The gradients `want` asks for, from the output `y` and its (contiguous)
    /// gradient `grad`.
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        y: &Tensor,
        grad: &Tensor,
        want: Wanted,
    ) -> Result<Gradients> {
        if !self.relu {
            return self.backward_linear(x, w, grad, want);
        }
        let cl = self.channels_last;
        let g = geometry_of(nchw(x.dims4()?, cl), w.dims4()?, self.stride, self.padding)?;
        if backward_reads_pooled(&g) {
            let no_pool = (1, std::sync::Arc::new(Vec::new()));
            return backward_through_relu((x, w), y, grad, (self.padding, cl), no_pool, want);
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
        self.backward_linear(x, w, &grad.apply_op2_no_bwd(y, &ReluMask)?, want)
    }

    /// The gradients of `conv(x, w) + b` (no activation) that `want` asks for, from
    /// the gradient of that sum.
    fn backward_linear(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        want: Wanted,
    ) -> Result<Gradients> {
        let dx = if want.input {
            let op = BackwardData {
                stride: self.stride,
                padding: self.padding,
                input: nchw(x.dims4()?, self.channels_last),
                channels_last: self.channels_last,
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
            stride: self.stride,
            padding: self.padding,
            kernel: w.dims4()?,
            channels_last: self.channels_last,
        })
    }
}

/// The weight and bias gradients from the backward passes' flat `dW | db`.
fn split_weight_bias(
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

/// The input gradient of `max_pool(relu(conv(x, w) + b), k)` (of `relu(conv(x, w) +
/// b)` when `k == 1`) through Winograd, from (output gradient, output, kernel): ReLU's
/// mask and the unpooling are applied as the gradient is read.
struct BackwardDataRelu {
    /// `N, C, H, W`.
    input: (usize, usize, usize, usize),
    padding: usize,
    k: usize,
    codes: std::sync::Arc<Vec<u8>>,
    channels_last: bool,
}

/// The weight and bias gradients of `max_pool(relu(conv(x, w) + b), k)` (of
/// `relu(conv(x, w) + b)` when `k == 1`) through Winograd, from (input, output
/// gradient, output): flat `dW | db`.
struct BackwardWeightRelu {
    kernel: (usize, usize, usize, usize),
    padding: usize,
    k: usize,
    codes: std::sync::Arc<Vec<u8>>,
    channels_last: bool,
}

/// Checks a pooled gradient and pooled output against the convolution's output and
/// the pooling record.
fn check_pooled(
    (g, channels_last): (&Geometry, bool),
    k: usize,
    codes: &[u8],
    grad: &Layout,
    y: &Layout,
) -> Result<()> {
    if k == 0 || g.ho % k != 0 || g.wo % k != 0 || !winograd::pools::<winograd::F4>(k) {
        candle_core::bail!("fast conv2d+pool backward: window {k} does not fit the output");
    }
    let pooled = (g.n, g.c_out, g.ho / k, g.wo / k);
    let dims =
        |l: &Layout, what: &str| Ok::<_, candle_core::Error>(nchw(dims4(l, what)?, channels_last));
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
        let g = geometry_of(self.input, dims4(l3, "kernel")?, 1, self.padding)?;
        check_pooled((&g, self.channels_last), self.k, &self.codes, l1, l2)?;
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
                channels_last: op.channels_last,
            };
            let (per, par) = (chunk(g.n), inner_parallelism(g.n));
            if !dx.is_empty() {
                let out = (&mut dx[..], (1, &mut [][..]), op.channels_last);
                winograd_forward(&back, source, (&flipped, None, false), out, per, par);
            }
            // SAFETY: the Winograd forward pass writes every value of its output.
            Ok(unsafe { assume_written(dx) })
        }
        let out = with_dtype!("input gradient", s1, |gy| run(
            self,
            &g,
            slice(gy, l1, "gradient")?,
            (s2, l2),
            (s3, l3)
        )?);
        Ok((out, batch_shape(self.input, self.channels_last)))
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
        let cl = self.channels_last;
        let g = geometry_of(nchw(dims4(l1, "input")?, cl), self.kernel, 1, self.padding)?;
        check_pooled((&g, cl), self.k, &self.codes, l2, l3)?;
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
                channels_last: op.channels_last,
            };
            if g.n == 0 {
                return Ok(vec![T::ZERO; g.c_out * g.ckk() + g.c_out]);
            }
            let cl = op.channels_last;
            Ok(winograd_weight_grad(g, x, source, cl))
        }
        let out = with_dtype!("weight gradient", s1, |x| run(
            self,
            &g,
            slice(x, l1, "input")?,
            (s2, l2),
            (s3, l3)
        )?);
        Ok((out, Shape::from(g.c_out * g.ckk() + g.c_out)))
    }
}

/// The gradients of `max_pool(relu(conv(x, w) + b), k)` at stride 1 (with `k == 1`
/// and no `codes`, of `relu(conv(x, w) + b)`) that `want` asks for, through Winograd,
/// from the output `y` and its gradient (all channels-last when `channels_last`).
fn backward_through_relu(
    (x, w): (&Tensor, &Tensor),
    y: &Tensor,
    grad: &Tensor,
    (padding, channels_last): (usize, bool),
    (k, codes): (usize, std::sync::Arc<Vec<u8>>),
    want: Wanted,
) -> Result<Gradients> {
    let dx = if want.input {
        let op = BackwardDataRelu {
            input: nchw(x.dims4()?, channels_last),
            padding,
            k,
            codes: codes.clone(),
            channels_last,
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
            channels_last,
        };
        Some(x.apply_op3_no_bwd(grad, y, &op)?)
    } else {
        None
    };
    Ok((dx, flat))
}

/// `max_pool(relu(conv(x, w) + b), k)`; the forward pass records where each window's
/// maximum was for the backward pass.
struct ConvPoolForward {
    conv: ConvForward,
    k: usize,
    /// The maxima's offsets from the forward pass, and the convolution's output shape.
    codes: std::sync::Mutex<Option<PoolRecord>>,
}

/// Where each pooled value's maximum was (see [`pool::Unpool`]), and the shape of the
/// convolution's output it was pooled from.
type PoolRecord = (std::sync::Arc<Vec<u8>>, (usize, usize, usize, usize));

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
        let cl = self.conv.channels_last;
        let g = geometry(l1, l2, self.conv.stride, self.conv.padding, cl)?;
        check_bias(l3, &g)?;
        let k = self.k;
        if k == 0 || k > pool::MAX_CODED_WINDOW || g.ho % k != 0 || g.wo % k != 0 {
            candle_core::bail!(
                "fast conv2d+pool: the {}x{} output is not divisible by the window {k} \
                 (at most {})",
                g.ho,
                g.wo,
                pool::MAX_CODED_WINDOW
            );
        }
        if cl && !pools_in_winograd(&g, k) {
            candle_core::bail!(
                "fast conv2d+pool: channels-last batches need a stride-1 3x3 kernel, \
                 channel counts divisible by 8 and a window dividing 4"
            );
        }
        fn run<T: Same>(
            (g, cl): (&Geometry, bool),
            k: usize,
            x: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            (s3, l3): (&CpuStorage, &Layout),
            codes: &mut Vec<u8>,
        ) -> Result<Vec<T>> {
            let w = T::same(s2, l2, "kernel")?;
            let b = T::same(s3, l3, "bias")?;
            let (out, c) = forward_pooled(g, x, (w, b), k, cl);
            *codes = c;
            Ok(out)
        }
        let mut codes = Vec::new();
        let out = with_dtype!("forward", s1, |x| run(
            (&g, cl),
            k,
            slice(x, l1, "input")?,
            (s2, l2),
            (s3, l3),
            &mut codes
        )?);
        let full = (g.n, g.c_out, g.ho, g.wo);
        *record(&self.codes, "conv2d+pool")? = Some((std::sync::Arc::new(codes), full));
        Ok((out, batch_shape((g.n, g.c_out, g.ho / k, g.wo / k), cl)))
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
        let (stride, padding, cl) = (self.conv.stride, self.conv.padding, self.conv.channels_last);
        let g = geometry_of(nchw(x.dims4()?, cl), w.dims4()?, stride, padding)?;
        // A channels-last forward ran through Winograd (see `cpu_fwd`), whose record
        // only the Winograd backward passes read.
        let reads_pooled =
            cl || backward_reads_pooled(&g) && winograd::pools::<winograd::F4>(self.k);
        let want = Wanted::of(x, w, b);
        let (dx, flat) = if reads_pooled {
            let pooled = (self.k, codes);
            backward_through_relu((x, w), y, &grad, (padding, cl), pooled, want)?
        } else {
            let unpool = pool::Unpool {
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

/// `grad * (y > 0)`: ReLU's backward from its output.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "fast-conv2d-relu-mask"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("fast conv2d: gradient and output shapes differ");
        }
        fn run<T: Same>(g: &[T], (s2, l2): (&CpuStorage, &Layout)) -> Result<Vec<T>> {
            let y = T::same(s2, l2, "output")?;
            let mut out = Vec::with_capacity(g.len());
            g.par_iter()
                .zip(y)
                .map(|(&g, &y)| kernels::relu_grad(g, y))
                .collect_into_vec(&mut out);
            Ok(out)
        }
        let out = with_dtype!("relu mask", s1, |g| run(
            slice(g, l1, "gradient")?,
            (s2, l2)
        )?);
        Ok((out, l1.shape().clone()))
    }
}

/// The input gradient: (output gradient, kernel) -> `N x C_in x H x W` (or
/// `N x H x W x C_in`, from a channels-last gradient).
struct BackwardData {
    stride: usize,
    padding: usize,
    /// `N, C, H, W`.
    input: (usize, usize, usize, usize),
    channels_last: bool,
}

impl CustomOp2 for BackwardData {
    fn name(&self) -> &'static str {
        "fast-conv2d-backward-data"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let cl = self.channels_last;
        let g = geometry_of(self.input, dims4(l2, "kernel")?, self.stride, self.padding)?;
        check_output_gradient(l1, &g, cl)?;
        fn run<T: Same>(
            (g, cl): (&Geometry, bool),
            gy: &[T],
            (s2, l2): (&CpuStorage, &Layout),
        ) -> Result<Vec<T>> {
            Ok(backward_data(g, gy, T::same(s2, l2, "kernel")?, cl))
        }
        let out = with_dtype!("input gradient", s1, |gy| run(
            (&g, cl),
            slice(gy, l1, "gradient")?,
            (s2, l2)
        )?);
        Ok((out, batch_shape(self.input, cl)))
    }
}

/// The weight and bias gradients: (input, output gradient) -> flat `dW | db`.
struct BackwardWeight {
    stride: usize,
    padding: usize,
    kernel: (usize, usize, usize, usize),
    channels_last: bool,
}

impl CustomOp2 for BackwardWeight {
    fn name(&self) -> &'static str {
        "fast-conv2d-backward-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }
}

impl BackwardWeight {
    /// The flat `dW | db` from (input, output gradient), the gradient through ReLU's
    /// mask when `mask` holds the layer's output.
    fn run(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        mask: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let cl = self.channels_last;
        let x = nchw(dims4(l1, "input")?, cl);
        let g = geometry_of(x, self.kernel, self.stride, self.padding)?;
        check_output_gradient(l2, &g, cl)?;
        if let Some((_, l3)) = mask {
            if l3.shape() != l2.shape() {
                candle_core::bail!("fast conv2d: gradient and output shapes differ");
            }
        }
        fn run<T: Same>(
            (g, cl): (&Geometry, bool),
            x: &[T],
            (s2, l2): (&CpuStorage, &Layout),
            mask: Option<(&CpuStorage, &Layout)>,
        ) -> Result<Vec<T>> {
            let gy = T::same(s2, l2, "gradient")?;
            let y = match mask {
                Some((s3, l3)) => Some(T::same(s3, l3, "output")?),
                None => None,
            };
            Ok(backward_weight(g, x, (gy, y), cl))
        }
        let out = with_dtype!("weight gradient", s1, |x| run(
            (&g, cl),
            slice(x, l1, "input")?,
            (s2, l2),
            mask
        )?);
        Ok((out, Shape::from(g.c_out * g.ckk() + g.c_out)))
    }
}

/// The weight and bias gradients of `relu(conv(x, w) + b)`: (input, output gradient,
/// output) -> flat `dW | db`.
struct BackwardWeightMasked(BackwardWeight);

impl CustomOp3 for BackwardWeightMasked {
    fn name(&self) -> &'static str {
        "fast-conv2d-relu-backward-weight-masked"
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
        self.0.run((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

/// Max-pooling over `k x k` windows at stride `k` (`H` and `W` divisible by `k`); the
/// gradient goes to each window's first maximum. Fast op on the CPU for f32/f64,
/// candle's reductions elsewhere.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    if enabled() && x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return x.contiguous()?.apply_op1(pool::MaxPool { k });
    }
    let (n, c, h, w) = x.dims4()?;
    if k == 0 || h % k != 0 || w % k != 0 {
        candle_core::bail!("max_pool: {h}x{w} is not divisible by the window {k}");
    }
    x.reshape((n, c, h / k, k, w / k, k))?.max(5)?.max(3)
}

/// Global average pooling of a channels-last batch: `N x H x W x C -> N x C` (the
/// per-channel mean over all pixels). One fast op each way on the CPU for f32/f64,
/// candle's `mean` elsewhere.
pub fn global_average_pool_nhwc(x: &Tensor) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    if runs_fast(x) {
        return x.contiguous()?.apply_op1(pool::PixelMean);
    }
    x.sum((1, 2))? / (h * w) as f64
}

/// Forward FLOPs of one convolution (2 per multiply-add), for throughput reports.
pub fn conv2d_flops(
    x: (usize, usize, usize, usize),
    kernel: (usize, usize, usize, usize),
    stride: usize,
    padding: usize,
) -> Option<f64> {
    Geometry::new(x, kernel, stride, padding)
        .ok()
        .map(|g| g.flops())
}

#[cfg(test)]
mod tests;
