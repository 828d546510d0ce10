//! The input gradient: at stride 1 (with 8+ input channels) the forward convolution of
//! the output gradient with the kernel flipped in space and transposed in channels, so
//! it runs Winograd or the shifted taps like a forward pass; with one input channel on a
//! channels-last batch, the direct kernels of `one_channel`; otherwise `col2im(Wᵀ g)`
//! image by image.

use rayon::prelude::*;

use super::forward::forward;
use super::{chunk, gradient_rows, inner_parallelism, one_channel};
use crate::gemm_paths::{col2im, matmul, Mat};
use crate::kernels::{assume_written, transpose, unwritten, zeros, Elem, Geometry};
use crate::options::{Activation, BatchLayout};
use crate::switch::use_winograd;

/// Input channels from which a stride-1 input gradient runs as a flipped convolution.
pub(crate) const FLIPPED_MIN_CHANNELS: usize = 8;

/// A stride-1 convolution's input gradient is the convolution of the output gradient
/// with the kernel flipped in space and transposed in channels: that convolution's
/// geometry and kernel.
pub(crate) fn flipped<T: Elem>(g: &Geometry, w: &[T]) -> (Geometry, Vec<T>) {
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
pub(crate) fn back_geometry(g: &Geometry) -> Geometry {
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
pub(crate) fn backward_reads_pooled(g: &Geometry) -> bool {
    g.stride == 1 && g.pad < g.k && use_winograd(g) && use_winograd(&back_geometry(g))
}

/// Gradient with respect to the input, `N x C_in x H x W` (or `N x H x W x C_in`,
/// from a channels-last output gradient).
#[allow(unsafe_code)]
pub(crate) fn backward_data<T: Elem>(
    g: &Geometry,
    grad: &[T],
    w: &[T],
    layout: BatchLayout,
) -> Vec<T> {
    // With few input channels the flipped convolution is a thin GEMM over a large
    // unfolded gradient; col2im reads and writes less there.
    if g.stride == 1 && g.pad < g.k && g.c_in >= FLIPPED_MIN_CHANNELS {
        let (back, flipped) = flipped(g, w);
        return forward(&back, grad, &flipped, None, Activation::Identity, layout);
    }
    let per = chunk(g.n);
    if one_channel::applies_input_grad(g, layout) && g.n * g.in_len() > 0 {
        let mut dx = unwritten(g.n * g.in_len());
        dx.par_chunks_mut(per * g.in_len())
            .zip(grad.par_chunks(per * g.out_len()))
            .for_each(|(dx, gy)| one_channel::input_grad(g, gy, w, dx));
        // SAFETY: the direct pass writes every input pixel of its images.
        return unsafe { assume_written(dx) };
    }
    let mut dx = zeros(g.n * g.in_len(), T::ZERO);
    if dx.is_empty() {
        return dx;
    }
    let par = inner_parallelism(g.n);
    dx.par_chunks_mut(per * g.in_len())
        .zip(grad.par_chunks(per * g.out_len()))
        .for_each(|(dx, grad)| {
            let mut cols = vec![T::ZERO; g.ckk() * g.out_hw()];
            // Channels-last with several channels, each image's gradient is gathered
            // channels-first, then transposed.
            let through = layout.is_channels_last() && g.c_in > 1;
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
                    gradient_rows(g, gy, layout),
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
