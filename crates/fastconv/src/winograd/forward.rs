//! The forward pass: rounds of tiles through the input transform, the `a²` products
//! and the output transform with bias, ReLU and (F(4x4)) max-pooling fused.

use gemm::Parallelism;
use std::mem::MaybeUninit;

use super::lanes::{
    load, load_unchecked, store_into, store_into_unchecked, wide_lanes, Lanes, LANES, WIDE_LANES,
};
use super::scratch::{plane, Scratch};
use super::small_gemm::{each_plane, small_gemm};
use super::source::Source;
use super::transform::{transform_inputs, transform_kernels};
use super::variant::{Variant, MAX_A};
use super::{images_per_round, pools, simd, Tiling};
use crate::kernels::{as_unwritten, transpose_into, Elem, Geometry};
use crate::options::{Activation, BatchLayout};

/// Where [`forward`] writes.
pub(crate) struct Destination<'a, T> {
    /// The output, not necessarily written yet.
    pub out: &'a mut [MaybeUninit<T>],
    /// The pooling window `k` (1: no pooling).
    pub pool: usize,
    /// One code per pooled output (see [`forward`]); empty when `pool == 1`.
    pub codes: &'a mut [MaybeUninit<u8>],
    /// The output's layout.
    pub layout: BatchLayout,
}

/// Forward convolution of a contiguous batch with bias and the activation fused into
/// the output transform; `out` is `N x C_out x ho x wo`, or `N x ho x wo x C_out` when
/// its `layout` is channels-last, and every one of its values is written (as is every
/// code), so it may come from [`crate::kernels::unwritten`]. With `pool = k > 1` (see
/// [`pools`]; `activation` ReLU) the output is also max-pooled over `k x k` windows, `out` is
/// `N x C_out x ho/k x wo/k` (or channels-last) and `codes` gets each window's first
/// maximum as the offset
/// `dy * k + dx` (one byte per output, in the output's order; empty when `k == 1`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<V: Variant, T: Elem>(
    g: &Geometry,
    x: Source<'_, T>,
    w: &[T],
    bias: Option<&[T]>,
    activation: Activation,
    Destination {
        out,
        pool: k,
        codes,
        layout,
    }: Destination<'_, T>,
    per_thread: usize,
    par: Parallelism,
) {
    use rayon::prelude::*;
    let t = Tiling::new::<V>(g);
    let u = transform_kernels::<V, T>(g, w);
    let round = images_per_round(t.per_image()).min(per_thread);
    let zero = vec![T::ZERO; g.c_out];
    let bias = bias.unwrap_or(&zero);
    debug_assert!(
        k == 1
            || (activation.is_relu()
                && pools::<V>(k)
                && g.ho.is_multiple_of(k)
                && g.wo.is_multiple_of(k))
    );
    let out_len = g.out_len() / (k * k);
    // One slice of codes per thread, empty without pooling.
    let parts = out.len().div_ceil(per_thread * out_len);
    let codes: Vec<&mut [MaybeUninit<u8>]> = if k > 1 {
        codes.chunks_mut(per_thread * out_len).collect()
    } else {
        (0..parts).map(|_| <&mut [_]>::default()).collect()
    };
    out.par_chunks_mut(per_thread * out_len)
        .zip(codes)
        .enumerate()
        .for_each(|(part, (out, codes))| {
            let x = x.images(g.in_len(), part * per_thread, per_thread);
            let mut s = Scratch::take::<V>(g, &t, round);
            for (r, out) in out.chunks_mut(round * out_len).enumerate() {
                let images = x.images(g.in_len(), r * round, round).count(g.in_len());
                // One image more than the round's, where there is one: the transforms
                // prefetch each next image while they work on one (`Source::prefetch`).
                let x = x.images(g.in_len(), r * round, round + 1);
                let codes = if k > 1 {
                    &mut codes[r * round * out_len..][..images * out_len]
                } else {
                    &mut []
                };
                let args = (g, &t, &mut s, &u[..], x, images, bias, activation, k);
                simd::forward_round::<V, T>(args, (out, codes, layout), par);
            }
            s.keep();
        });
}

/// One round of the forward pass: transforms, `a²` GEMMs, and the output transform
/// with bias and the activation, written channels-first or, with a channels-last
/// `layout`, straight into the output.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
// Tiles are read down their columns, which the range loops index.
#[allow(clippy::needless_range_loop)]
// The output transform reads and writes without per-access bounds checks.
#[allow(unsafe_code)]
pub(super) fn forward_round<V: Variant, T: Elem, const FMA: bool, const WIDE: bool>(
    g: &Geometry,
    t: &Tiling,
    s: &mut Scratch<T>,
    u: &[T],
    x: Source<'_, T>,
    images: usize,
    bias: &[T],
    activation: Activation,
    pool: usize,
    (out, codes, layout): (&mut [MaybeUninit<T>], &mut [MaybeUninit<u8>], BatchLayout),
    par: Parallelism,
) {
    transform_inputs::<V, T, WIDE>(g, t, s, x, images);
    let output = (out, codes, layout);
    products_and_output::<V, T, FMA, WIDE>(g, t, s, u, images, bias, activation, pool, output, par);
}

/// The rest of a forward round once its tiles are transformed (in `s.v`): the `a²`
/// products with the transformed kernels `u`, then the output transform with bias, the
/// activation and the pool.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn products_and_output<V: Variant, T: Elem, const FMA: bool, const WIDE: bool>(
    g: &Geometry,
    t: &Tiling,
    s: &mut Scratch<T>,
    u: &[T],
    images: usize,
    bias: &[T],
    activation: Activation,
    pool: usize,
    (out, codes, layout): (&mut [MaybeUninit<T>], &mut [MaybeUninit<u8>], BatchLayout),
    par: Parallelism,
) {
    let relu = activation.is_relu();
    let a2 = V::A * V::A;
    let tiles = images * t.per_image();
    let (v_k, m_k, u_k) = (
        plane(tiles, g.c_in),
        plane(tiles, g.c_out),
        g.c_out * g.c_in,
    );
    // M[k] (tiles x C_out) = V[k] (tiles x C_in) · U[k] (C_in x C_out).
    #[inline(always)]
    fn product<T: Elem, const FMA: bool, const WIDE: bool>(
        (g, tiles, v, u): (&Geometry, usize, &[T], &[T]),
        (v_k, u_k): (usize, usize),
        (k, m): (usize, &mut [T]),
    ) {
        small_gemm::<T, FMA, WIDE>(
            (tiles, g.c_out, g.c_in),
            (&v[k * v_k..k * v_k + tiles * g.c_in], g.c_in, 1),
            (&u[k * u_k..(k + 1) * u_k], g.c_out),
            (&mut m[..tiles * g.c_out], g.c_out),
            false,
        )
    }
    let operands = (g, tiles, &s.v[..], u);
    let planes = &mut s.m[..a2 * m_k];
    if matches!(par, Parallelism::None) {
        // A loop, not `each_plane`'s closure: see `each_plane`.
        for (k, m) in planes.chunks_mut(m_k).enumerate() {
            product::<T, FMA, WIDE>(operands, (v_k, u_k), (k, m));
        }
    } else {
        each_plane(planes, m_k, par, |km| {
            product::<T, FMA, WIDE>(operands, (v_k, u_k), km)
        });
    }
    let output = (out, codes, layout);
    if wide_lanes::<T>(WIDE, g.c_out) {
        output_transform::<V, T, WIDE_LANES>(g, t, s, images, bias, relu, pool, output);
    } else {
        output_transform::<V, T, LANES>(g, t, s, images, bias, relu, pool, output);
    }
}

/// The output transform of a round (its products in `s.m`), with bias, the activation
/// and the fused pool, `L` channels at a time: written channels-first (through
/// `s.compact` and one transpose) or, with a channels-last `layout`, straight into the
/// output.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
// Tiles are read down their columns, which the range loops index.
#[allow(clippy::needless_range_loop)]
// The output transform reads and writes without per-access bounds checks.
#[allow(unsafe_code)]
fn output_transform<V: Variant, T: Elem, const L: usize>(
    g: &Geometry,
    t: &Tiling,
    s: &mut Scratch<T>,
    images: usize,
    bias: &[T],
    relu: bool,
    pool: usize,
    (out, codes, layout): (&mut [MaybeUninit<T>], &mut [MaybeUninit<u8>], BatchLayout),
) {
    let channels_last = layout.is_channels_last();
    let a2 = V::A * V::A;
    let tiles = images * t.per_image();
    let m_k = plane(tiles, g.c_out);
    let c = g.c_out;
    let k = pool;
    // The (pooled) output plane.
    let (ph, pw) = (g.ho / k, g.wo / k);
    let mut half = [[Lanes::<T, L>::ZERO; MAX_A]; MAX_A];
    let mut full = [[Lanes::<T, L>::ZERO; MAX_A]; MAX_A];
    // Every tile, row and column index below stays inside these two bounds (tile <
    // tiles, output pixels inside the output), which replace per-access checks.
    assert!(
        c.is_multiple_of(L)
            && (a2 - 1) * m_k + tiles * c <= s.m.len()
            && g.out_hw() * c <= s.compact.len(),
        "Winograd output transform: scratch too short"
    );
    let (m, compact) = (&s.m, &mut s.compact);
    for (i, y) in out.chunks_exact_mut(c * ph * pw).take(images).enumerate() {
        // Channels-last, the image's output is written in place; channels-first, it
        // goes through `compact` and one transpose.
        let dst: &mut [MaybeUninit<T>] = if channels_last {
            y
        } else {
            // SAFETY: only computed values are stored through `dst`.
            unsafe { as_unwritten(compact) }
        };
        assert!(
            ph * pw * c <= dst.len(),
            "Winograd output transform: output too short"
        );
        for ty in 0..t.th {
            let rows = V::M.min(g.ho - ty * V::M);
            for tx in 0..t.tw {
                let cols = V::M.min(g.wo - tx * V::M);
                let tile = i * t.per_image() + ty * t.tw + tx;
                for c0 in (0..c).step_by(L) {
                    // Aᵀ down the columns of the transformed tile, then across rows.
                    for col in 0..V::A {
                        let mut d = [Lanes::<T, L>::ZERO; MAX_A];
                        for (r, e) in d.iter_mut().enumerate().take(V::A) {
                            let at = (r * V::A + col) * m_k + tile * c + c0;
                            // SAFETY: below the first bound asserted before the loop.
                            *e = unsafe { load_unchecked(m, at) };
                        }
                        let o = V::output(d);
                        for r in 0..V::M {
                            half[r][col] = o[r];
                        }
                    }
                    let b = load(bias, c0);
                    if k == 1 {
                        let corner = (ty * V::M * g.wo + tx * V::M) * c;
                        for (r, row) in half.iter().enumerate().take(rows) {
                            let o = V::output(*row);
                            for (col, &e) in o.iter().enumerate().take(cols) {
                                let v = if relu { (e + b).relu() } else { e + b };
                                let at = corner + (r * g.wo + col) * c + c0;
                                // SAFETY: an output pixel's channels, below the bound
                                // asserted for `dst` (k == 1 here).
                                unsafe { store_into_unchecked(v, dst, at) };
                            }
                        }
                        continue;
                    }
                    for (r, row) in half.iter().enumerate().take(rows) {
                        let o = V::output(*row);
                        for (col, &e) in o.iter().enumerate().take(cols) {
                            full[r][col] = (e + b).relu();
                        }
                    }
                    // Each window's first maximum, as the unfused pool finds it.
                    let (py0, px0) = (ty * V::M / k, tx * V::M / k);
                    for py in 0..rows / k {
                        for px in 0..cols / k {
                            let mut best = full[py * k][px * k];
                            let mut at = [0u8; L];
                            for d in 1..k * k {
                                let v = full[py * k + d / k][px * k + d % k];
                                for l in 0..L {
                                    if v.0[l] > best.0[l] {
                                        best.0[l] = v.0[l];
                                        at[l] = d as u8;
                                    }
                                }
                            }
                            let p = (py0 + py) * pw + px0 + px;
                            store_into(best, dst, p * c + c0);
                            let codes = &mut codes[i * c * ph * pw..];
                            if channels_last {
                                let to = &mut codes[p * c + c0..p * c + c0 + L];
                                for (d, &a) in to.iter_mut().zip(&at) {
                                    d.write(a);
                                }
                                continue;
                            }
                            for (l, &a) in at.iter().enumerate() {
                                codes[(c0 + l) * ph * pw + p].write(a);
                            }
                        }
                    }
                }
            }
        }
        if !channels_last {
            transpose_into(compact, (ph * pw, c, c), y, ph * pw);
        }
    }
}
