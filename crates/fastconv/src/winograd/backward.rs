//! Both backward passes of a layer in one sweep over its output gradient: the input
//! gradient (the forward pass of the flipped kernel over the zero-padded gradient) and
//! the weight gradient (`A dY Aᵀ` of the gradient's tiles against `Bᵀ x B` of the
//! input's) read the same gradient, which the two separate passes each filled (through
//! ReLU's mask and the pooling record: ~10 % of a training step, both fills together,
//! before the unpooling was vectorised). Here each image's gradient is filled once into
//! the padded plane the input gradient reads, and the weight gradient's tiles are read
//! from that plane's interior. Same values as the two passes: each thread takes the
//! same images, the weight gradient sums over the weight pass's rounds, and the input
//! gradient's tiles do not depend on how rounds are cut.

use gemm::Parallelism;
use std::mem::MaybeUninit;

use super::forward::products_and_output;
use super::scratch::{plane, Scratch};
use super::source::Source;
use super::transform::{input_tiles, transform_kernels};
use super::variant::Variant;
use super::weight_grad::{gradient_tiles, inputs_and_products};
use super::{images_per_backward_round, simd, Tiling};
use crate::kernels::{Elem, Geometry};
use crate::options::{Activation, BatchLayout};

/// Whether [`backward`] takes a geometry: stride 1, and an output as large as the
/// input, so the flipped convolution tiles its output (the input gradient) as the
/// layer tiles its own, and its padding (`k - 1 - pad < r`) leaves room in the padded
/// plane for the weight gradient's whole tiles.
pub(crate) fn applies(g: &Geometry) -> bool {
    super::applies(g) && g.ho == g.h && g.wo == g.w
}

/// The input gradient of `x` (`images` of `g`) into `dx` (laid out as `layout`), from
/// the output gradient `gy` and the flipped kernel of `back` (`g`'s backward geometry:
/// `C_out -> C_in` at stride 1, padding `k - 1 - pad`), and each thread's transformed weight
/// gradient and bias gradient (as [`super::weight_grad_transformed`] returns them),
/// `per_thread` images a thread, in order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<V: Variant, T: Elem>(
    (g, back): (&Geometry, &Geometry),
    x: Source<'_, T>,
    gy: Source<'_, T>,
    flipped: &[T],
    (dx, layout): (&mut [MaybeUninit<T>], BatchLayout),
    per_thread: usize,
    par: Parallelism,
) -> Vec<Vec<T>> {
    use rayon::prelude::*;
    assert!(
        applies(g) && back.h == g.ho && back.ho == g.h && back.c_in == g.c_out,
        "fused Winograd backward: geometry does not apply"
    );
    let t = Tiling::new::<V>(g);
    let u = transform_kernels::<V, T>(back, flipped);
    let round = images_per_backward_round(t.per_image()).min(per_thread);
    let zero = vec![T::ZERO; g.c_in];
    let du_len = V::A * V::A * g.c_out * g.c_in + g.c_out;
    dx.par_chunks_mut(per_thread * g.in_len())
        .enumerate()
        .map(|(part, dx)| {
            let x = x.images(g.in_len(), part * per_thread, per_thread);
            let gy = gy.images(g.out_len(), part * per_thread, per_thread);
            let mut sb = Scratch::take::<V>(back, &t, round);
            let mut sw = Scratch::take::<V>(g, &t, round);
            let mut du = vec![T::ZERO; du_len];
            for (r, dx) in dx.chunks_mut(round * g.in_len()).enumerate() {
                let images = gy.images(g.out_len(), r * round, round).count(g.out_len());
                // One image more than the round's, where there is one, to prefetch.
                let gy = gy.images(g.out_len(), r * round, round + 1);
                let x = x.images(g.in_len(), r * round, round + 1);
                let args = (
                    g,
                    back,
                    &t,
                    &mut sb,
                    &mut sw,
                    &u[..],
                    x,
                    gy,
                    images,
                    &zero[..],
                );
                simd::backward_round::<V, T>(args, (dx, &mut du[..], layout), par);
            }
            sb.keep();
            sw.keep();
            du
        })
        .collect()
}

/// One round of [`backward`]: each image's gradient filled once, its tiles transformed
/// for both passes (and its bias gradient summed), then the input gradient's products
/// and output transform (`sb`, `back`'s buffers), then the input's tiles and the weight
/// gradient's products (`sw`, `g`'s).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn backward_round<V: Variant, T: Elem, const FMA: bool, const WIDE: bool>(
    (g, back): (&Geometry, &Geometry),
    t: &Tiling,
    (sb, sw): (&mut Scratch<T>, &mut Scratch<T>),
    u: &[T],
    (x, gy): (Source<'_, T>, Source<'_, T>),
    images: usize,
    zero: &[T],
    (dx, du, layout): (&mut [MaybeUninit<T>], &mut [T], BatchLayout),
    par: Parallelism,
) {
    let a2 = V::A * V::A;
    let c = g.c_out;
    let stride_k = plane(images * t.per_image(), c);
    let (wp, p) = (t.wp, back.pad);
    let wide = super::lanes::wide_lanes::<T>(WIDE, c);
    for i in 0..images {
        // Only the interior is written, so the borders stay zero: the flipped
        // convolution's padding, and past the output over whole tiles for the weight
        // gradient (`p + tw*m <= wp` as `p < r`).
        let scratch = (&mut sb.compact[..], &mut sb.masked[..], &mut sb.codes[..]);
        gy.fill(
            i,
            (c, g.ho, g.wo),
            wp,
            (p, p),
            scratch,
            &mut sb.padded,
            wide,
        );
        let db = &mut du[a2 * g.c_out * g.c_in..][..c];
        let interior = (&sb.padded[..], wp, (p * wp + p) * c);
        gradient_tiles::<V, T, WIDE>(g, t, i, interior, db, (&mut sw.m, stride_k));
        input_tiles::<V, T, WIDE>(back, t, i, &sb.padded, (&mut sb.v, stride_k), gy);
    }
    let identity = Activation::Identity;
    let out = (dx, &mut [][..], layout);
    products_and_output::<V, T, FMA, WIDE>(back, t, sb, u, images, zero, identity, 1, out, par);
    inputs_and_products::<V, T, FMA, WIDE>(g, t, sw, x, images, du, par);
}
