//! The weight and bias gradients, flat `dW | db`, in one pass: Winograd (through the
//! transposed transforms, `dW = Gᵀ [Σ (A dY Aᵀ) ⊙ (Bᵀ x B)] G`), the shifted taps, or
//! im2col, each thread summing its images and the threads' sums added at the end.

use std::mem::MaybeUninit;

use super::input_grad::flipped;
use super::{
    channels_first, chunk, dense, gradient_rows, inner_parallelism, one_channel, summed_in_order,
    summed_over_threads,
};
use crate::gemm_paths::{im2col, matmul, shifted, Mat};
use crate::kernels::{relu_grad, sum, Elem, Geometry};
use crate::options::BatchLayout;
use crate::switch::use_winograd;
use crate::winograd;

/// Adds one image's bias gradient (the output gradient summed per channel).
pub(crate) fn bias_grad<T: Elem>(g: &Geometry, gy: &[T], db: &mut [T], layout: BatchLayout) {
    if layout.is_channels_last() {
        for pixel in gy.chunks_exact(g.c_out) {
            for (d, &v) in db.iter_mut().zip(pixel) {
                *d += v;
            }
        }
        return;
    }
    for (c, plane) in gy.chunks_exact(g.out_hw()).enumerate() {
        db[c] += sum(plane);
    }
}

/// One image's output gradient, through ReLU's mask (zero where the output `y` is not
/// positive) into `buf` when there is one.
pub(crate) fn through_relu<'a, T: Elem>(
    gy: &'a [T],
    y: Option<&[T]>,
    buf: &'a mut Vec<T>,
) -> &'a [T] {
    let Some(y) = y else {
        return gy;
    };
    buf.clear();
    buf.extend(gy.iter().zip(y).map(|(&g, &y)| relu_grad(g, y)));
    buf
}

/// Weight and bias gradients, flattened: `C_out * C_in * k * k` then `C_out`, of a
/// channels-first batch (or a channels-last one and its output gradient). With
/// `mask`, the layer's ReLU output, the gradient goes through ReLU's backward first.
pub(crate) fn backward_weight<T: Elem>(
    g: &Geometry,
    x: &[T],
    (grad, mask): (&[T], Option<&[T]>),
    layout: BatchLayout,
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
        if shifted::applies(g) && !layout.is_channels_last() {
            let mut s = shifted::Scratch::new(g);
            let mut taps = vec![T::ZERO; wlen];
            for (i, (x, gy)) in x
                .chunks_exact(g.in_len())
                .zip(grad.chunks_exact(g.out_len()))
                .enumerate()
            {
                let gy = through_relu(gy, image_mask(i), &mut masked);
                shifted::weight_grad_image(g, &mut s, x, gy, &mut taps, par);
                bias_grad(g, gy, &mut acc[wlen..], BatchLayout::ChannelsFirst);
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
            im2col(g, channels_first(g, x, layout, &mut image), &mut cols);
            matmul(
                g.c_out,
                g.ckk(),
                g.out_hw(),
                &mut acc[..wlen],
                true,
                gradient_rows(g, gy, layout),
                Mat::rows_t(&cols, g.out_hw()),
                par,
            );
            bias_grad(g, gy, &mut acc[wlen..], layout);
        }
        acc
    };
    if g.n == 0 {
        return vec![T::ZERO; wlen + g.c_out];
    }
    if one_channel::applies(g, layout) {
        return summed_over_threads(g.n, |images| {
            let x = &x[images.start * g.in_len()..images.end * g.in_len()];
            let range = images.start * g.out_len()..images.end * g.out_len();
            let mut acc = vec![T::ZERO; wlen + g.c_out];
            one_channel::weight_grad(
                g,
                x,
                (&grad[range.clone()], mask.map(|y| &y[range])),
                &mut acc,
            );
            acc
        });
    }
    if use_winograd(g) {
        let grad = match mask {
            Some(y) => winograd::Source::ThroughRelu {
                grad,
                y,
                codes: &[],
                k: 1,
                layout,
            },
            None => dense(grad, layout),
        };
        return winograd_weight_grad(g, x, grad, layout);
    }
    summed_over_threads(g.n, partial)
}

/// Weight and bias gradients (flat `dW | db`) through Winograd, of a channels-first
/// (or channels-last) batch `x`: F(3x3, 5x5) for a 5x5 kernel, else the 3x3 variant
/// with fewer multiplies for the output size.
pub(crate) fn winograd_weight_grad<T: Elem>(
    g: &Geometry,
    x: &[T],
    grad: winograd::Source<'_, T>,
    layout: BatchLayout,
) -> Vec<T> {
    if g.k == 5 {
        winograd_weight_grad_with::<winograd::F3R5, T>(g, x, grad, layout)
    } else if winograd::prefers_f5(g.ho, g.wo) {
        winograd_weight_grad_with::<winograd::F5, T>(g, x, grad, layout)
    } else {
        winograd_weight_grad_with::<winograd::F4, T>(g, x, grad, layout)
    }
}

/// [`winograd_weight_grad`] through `V`.
pub(crate) fn winograd_weight_grad_with<V: winograd::Variant, T: Elem>(
    g: &Geometry,
    x: &[T],
    grad: winograd::Source<'_, T>,
    layout: BatchLayout,
) -> Vec<T> {
    let par = inner_parallelism(g.n);
    // Per thread: the transformed weight gradient, then the bias gradient.
    let sum = summed_over_threads(g.n, |images| {
        let x = dense(x, layout).images(g.in_len(), images.start, images.len());
        let gy = grad.images(g.out_len(), images.start, images.len());
        winograd::weight_grad_transformed::<V, T>(g, x, gy, par)
    });
    untransformed::<V, T>(g, &sum)
}

/// The input gradient and the flat `dW | db` of a layer that
/// [`winograd::backward::applies`] to, both through Winograd in one sweep over the
/// output gradient `grad` (the same values as [`super::input_grad`]'s flipped
/// convolution and [`winograd_weight_grad`]), into `out`: `dx` (`N` images of `g`'s
/// input, laid out as `layout`), then `dW | db`. Every value of `out` is written.
pub(crate) fn winograd_backward_both<T: Elem>(
    g: &Geometry,
    x: &[T],
    grad: winograd::Source<'_, T>,
    w: &[T],
    layout: BatchLayout,
    out: &mut [MaybeUninit<T>],
) {
    let wlen = g.c_out * g.ckk();
    let (dx, flat) = out.split_at_mut(g.n * g.in_len());
    assert_eq!(
        flat.len(),
        wlen + g.c_out,
        "fused backward: output too short"
    );
    let total = if g.n == 0 {
        vec![T::ZERO; wlen + g.c_out]
    } else if g.k == 5 {
        backward_both_with::<winograd::F3R5, T>(g, x, grad, w, (dx, layout))
    } else if winograd::prefers_f5(g.ho, g.wo) {
        backward_both_with::<winograd::F5, T>(g, x, grad, w, (dx, layout))
    } else {
        backward_both_with::<winograd::F4, T>(g, x, grad, w, (dx, layout))
    };
    for (o, v) in flat.iter_mut().zip(total) {
        o.write(v);
    }
}

/// [`winograd_backward_both`] through `V` (the variant both separate passes pick for
/// such a layer): writes `dx`, returns `dW | db`.
fn backward_both_with<V: winograd::Variant, T: Elem>(
    g: &Geometry,
    x: &[T],
    grad: winograd::Source<'_, T>,
    w: &[T],
    (dx, layout): (&mut [MaybeUninit<T>], BatchLayout),
) -> Vec<T> {
    let (back, flipped) = flipped(g, w);
    let (per, par) = (chunk(g.n), inner_parallelism(g.n));
    let x = dense(x, layout);
    let geometries = (g, &back);
    let parts =
        winograd::backward::backward::<V, T>(geometries, x, grad, &flipped, (dx, layout), per, par);
    let sum = summed_in_order(parts);
    untransformed::<V, T>(g, &sum)
}

/// Flat `dW | db` from the summed transformed weight gradient and bias gradient
/// (`a² x C_out x C_in`, then `C_out`).
fn untransformed<V: winograd::Variant, T: Elem>(g: &Geometry, sum: &[T]) -> Vec<T> {
    let (du, db) = sum.split_at(sum.len() - g.c_out);
    let wlen = g.c_out * g.ckk();
    let mut total = vec![T::ZERO; wlen + g.c_out];
    winograd::untransform_weight_grad::<V, T>(g, du, &mut total[..wlen]);
    total[wlen..].copy_from_slice(db);
    total
}
