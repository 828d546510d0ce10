//! The forward pass: `act(conv(x, w) + b)`, and `max_pool(relu(conv(x, w) + b), k)`
//! with each window's maximum recorded.
//!
//! Winograd where it applies and is switched on (F(5x5) where it needs fewer multiplies
//! for the output size, F(4x4) when pooling, whose tiles the windows divide); else, on
//! channels-first batches, one GEMM per kernel tap where [`shifted::applies`]; else
//! im2col and one product per image. Bias and ReLU are fused into the output pass.

use gemm::Parallelism;
use rayon::prelude::*;

use super::max_pool;
use super::{channels_first, chunk, dense, inner_parallelism, one_channel};
use crate::gemm_paths::{im2col, matmul_unwritten, shifted, Mat};
use crate::kernels::{assume_written, unwritten, zeros, Elem, Geometry};
use crate::options::{Activation, BatchLayout};
use crate::switch::use_winograd;
use crate::winograd;

/// Forward convolution of a contiguous batch (`N x C x H x W`, or `N x H x W x C`
/// when `layout` is channels-last, the output in the same order), optionally with
/// bias, then the activation.
#[allow(unsafe_code)]
pub(crate) fn forward<T: Elem>(
    g: &Geometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    activation: Activation,
    layout: BatchLayout,
) -> Vec<T> {
    if g.n * g.out_len() == 0 {
        return Vec::new();
    }
    let per = chunk(g.n);
    let par = inner_parallelism(g.n);
    if use_winograd(g) {
        let mut out = unwritten(g.n * g.out_len());
        let out_pool = winograd::Destination {
            out: &mut out[..],
            pool: 1,
            codes: &mut [][..],
            layout,
        };
        let x = dense(x, layout);
        winograd_forward(g, x, (w, bias, activation), out_pool, per, par);
        // SAFETY: the Winograd forward pass writes every output value.
        return unsafe { assume_written(out) };
    }
    if one_channel::applies(g, layout) && activation != Activation::Elu {
        let mut out = unwritten(g.n * g.out_len());
        out.par_chunks_mut(per * g.out_len())
            .zip(x.par_chunks(per * g.in_len()))
            .for_each(|(out, x)| one_channel::forward(g, x, (w, bias), activation, out));
        // SAFETY: the direct pass writes every output value of its images.
        return unsafe { assume_written(out) };
    }
    let shape = (g.c_out, g.out_hw());
    if shifted::applies(g) && !layout.is_channels_last() {
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
                    epilogue(y, shape, bias, activation, BatchLayout::ChannelsFirst);
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
                im2col(g, channels_first(g, x, layout, &mut image), &mut cols);
                let y = if layout.is_channels_last() {
                    // The transposed product, `Ho*Wo x C_out`.
                    let (cols, w) = (Mat::rows_t(&cols, g.out_hw()), Mat::rows_t(w, g.ckk()));
                    matmul_unwritten(g.out_hw(), g.c_out, g.ckk(), y, cols, w, par)
                } else {
                    let (w, cols) = (Mat::rows(w, g.ckk()), Mat::rows(&cols, g.out_hw()));
                    matmul_unwritten(g.c_out, g.out_hw(), g.ckk(), y, w, cols, par)
                };
                epilogue(y, shape, bias, activation, layout);
            }
        });
    // SAFETY: each image's product wrote all of its output.
    unsafe { assume_written(out) }
}

/// Adds the bias and applies the activation to one `c x hw` output image (`hw x c`
/// when `layout` is channels-last).
pub(crate) fn epilogue<T: Elem>(
    y: &mut [T],
    (c, hw): (usize, usize),
    bias: Option<&[T]>,
    activation: Activation,
    layout: BatchLayout,
) {
    let relu = activation.is_relu();
    // NaN passes through (it is not <= 0), as in candle's relu.
    let act = |s: T| if relu && s <= T::ZERO { T::ZERO } else { s };
    if layout.is_channels_last() {
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
pub(crate) fn pools_in_winograd(g: &Geometry, k: usize) -> bool {
    use_winograd(g) && g.k == 3 && winograd::pools::<winograd::F4>(k)
}

/// Whether Winograd pools `k x k` windows for `g` and they tile its whole output.
pub(crate) fn pools_whole_windows(g: &Geometry, k: usize) -> bool {
    pools_in_winograd(g, k) && g.ho.is_multiple_of(k) && g.wo.is_multiple_of(k)
}

/// `max_pool(relu(conv(x) + b), k)` and each window's first maximum (its offset
/// `dy * k + dx`), with the pooling fused into Winograd's output transform where it
/// applies (which a channels-last batch requires, see [`pools_in_winograd`]).
#[allow(unsafe_code)]
pub(crate) fn forward_pooled<T: Elem>(
    g: &Geometry,
    x: &[T],
    (w, b): (&[T], &[T]),
    k: usize,
    layout: BatchLayout,
) -> (Vec<T>, Vec<u8>) {
    let pooled = g.n * g.c_out * (g.ho / k) * (g.wo / k);
    if pooled == 0 {
        return (Vec::new(), Vec::new());
    }
    if pools_in_winograd(g, k) {
        let (mut out, mut codes) = (unwritten(pooled), unwritten(pooled));
        let (per, par) = (chunk(g.n), inner_parallelism(g.n));
        let x = dense(x, layout);
        let out_pool = winograd::Destination {
            out: &mut out[..],
            pool: k,
            codes: &mut codes[..],
            layout,
        };
        let relu = Activation::Relu;
        winograd::forward::<winograd::F4, T>(g, x, w, Some(b), relu, out_pool, per, par);
        // SAFETY: the Winograd forward pass writes every output value and code.
        return unsafe { (assume_written(out), assume_written(codes)) };
    }
    let mut out = zeros(pooled, T::ZERO);
    let mut codes = zeros(pooled, 0u8);
    debug_assert!(
        !layout.is_channels_last(),
        "channels-last pooling runs only through Winograd"
    );
    let (relu, layout) = (Activation::Relu, BatchLayout::ChannelsFirst);
    let full = forward(g, x, w, Some(b), relu, layout);
    let planes = g.n * g.c_out;
    max_pool::forward_with_codes(&full, planes, (g.ho, g.wo), k, (&mut out, &mut codes));
    (out, codes)
}

/// An unpooled Winograd forward pass: F(3x3, 5x5) for a 5x5 kernel, else the 3x3
/// variant with fewer multiplies for its output size (see [`winograd::prefers_f5`]).
pub(crate) fn winograd_forward<T: Elem>(
    g: &Geometry,
    x: winograd::Source<'_, T>,
    (w, bias, activation): (&[T], Option<&[T]>, Activation),
    out: winograd::Destination<'_, T>,
    per: usize,
    par: Parallelism,
) {
    debug_assert_eq!(out.pool, 1, "pooled passes run F(4x4)");
    if g.k == 5 {
        winograd::forward::<winograd::F3R5, T>(g, x, w, bias, activation, out, per, par);
    } else if winograd::prefers_f5(g.ho, g.wo) {
        winograd::forward::<winograd::F5, T>(g, x, w, bias, activation, out, per, par);
    } else {
        winograd::forward::<winograd::F4, T>(g, x, w, bias, activation, out, per, par);
    }
}
