//! The three passes of a convolution over contiguous slices, and which algorithm each
//! runs: [`forward`](forward::forward) (Winograd, the shifted taps or im2col, bias and
//! ReLU fused; max-pooling fused into Winograd or after), the
//! [input gradient](input_grad::backward_data) (a flipped forward convolution at stride
//! 1, col2im otherwise) and the [weight and bias gradients](weight_grad::backward_weight)
//! (Winograd, the shifted taps or im2col, bias in the same pass).
//!
//! Each pass splits the batch into about one task per rayon thread; `gemm`'s own
//! threads are used only when the batch is too small to split.

pub(crate) mod forward;
pub(crate) mod input_grad;
pub(crate) mod max_pool;
pub(crate) mod one_channel;
pub(crate) mod weight_grad;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::gemm_paths::Mat;
use crate::kernels::{transpose, Elem, Geometry};
use crate::options::BatchLayout;
use crate::winograd;

/// Threads to split a batch over.
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// gemm's own threading, used only when the batch is too small to split.
pub(crate) fn inner_parallelism(n: usize) -> Parallelism {
    let t = threads();
    if n >= t || t == 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(t)
    }
}

/// Images per task so that the batch splits into about one task per thread.
pub(crate) fn chunk(n: usize) -> usize {
    n.div_ceil(threads()).max(1)
}

/// A batch's images as a Winograd source, in their memory order.
pub(crate) fn dense<T: Elem>(x: &[T], layout: BatchLayout) -> winograd::Source<'_, T> {
    match layout {
        BatchLayout::ChannelsLast => winograd::Source::ChannelsLast(x),
        BatchLayout::ChannelsFirst => winograd::Source::Dense(x),
    }
}

/// One input image channels-first, as im2col reads it: `x` itself, or (channels-last
/// with more than one channel) its transpose into `buf`.
pub(crate) fn channels_first<'a, T: Elem>(
    g: &Geometry,
    x: &'a [T],
    layout: BatchLayout,
    buf: &'a mut Vec<T>,
) -> &'a [T] {
    if !layout.is_channels_last() || g.c_in == 1 {
        return x;
    }
    let hw = g.h * g.w;
    buf.resize(g.in_len(), T::ZERO);
    transpose(x, (hw, g.c_in, g.c_in), buf, hw);
    buf
}

/// One image's output gradient as the GEMMs' `C_out x Ho*Wo` operand.
pub(crate) fn gradient_rows<'a, T>(g: &Geometry, gy: &'a [T], layout: BatchLayout) -> Mat<'a, T> {
    match layout {
        BatchLayout::ChannelsLast => Mat::rows_t(gy, g.c_out),
        BatchLayout::ChannelsFirst => Mat::rows(gy, g.out_hw()),
    }
}

/// `partial` over one range of the batch's `n` images per thread, its equal-length
/// results summed.
pub(crate) fn summed_over_threads<T: Elem>(
    n: usize,
    partial: impl Fn(std::ops::Range<usize>) -> Vec<T> + Sync + Send,
) -> Vec<T> {
    let per = chunk(n);
    let parts: Vec<Vec<T>> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|p| p * per..((p + 1) * per).min(n))
        .map(partial)
        .collect();
    summed_in_order(parts)
}

/// The sum of equal-length `parts`, added in their order (the first plus the second,
/// plus the third...), whatever thread computed each.
pub(crate) fn summed_in_order<T: Elem>(parts: Vec<Vec<T>>) -> Vec<T> {
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
