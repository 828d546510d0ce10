//! The weight gradient: rounds of `dU[k] += dM[k]ᵀ V[k]` (with the bias gradient), then
//! `dW = Gᵀ dU G` once per call.

use gemm::Parallelism;

use super::lanes::{
    load, load_unchecked, store, store_unchecked, wide_lanes, Lanes, LANES, WIDE_LANES,
};
use super::scratch::{plane, Scratch};
use super::small_gemm::{each_plane, small_gemm};
use super::source::Source;
use super::transform::{transform_inputs, transform_tiles};
use super::variant::{both, Variant, MAX_A};
use super::{images_per_backward_round, simd, Tiling};
use crate::kernels::{Elem, Geometry};

/// Adds the weight gradient of `x` (`images` images) and their output gradient `gy`
/// into `du` (`a² x C_out x C_in`, transformed), and the bias gradient (the output
/// gradient summed per channel) into the `C_out` values after it.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn weight_round<V: Variant, T: Elem, const FMA: bool, const WIDE: bool>(
    g: &Geometry,
    t: &Tiling,
    s: &mut Scratch<T>,
    x: Source<'_, T>,
    gy: Source<'_, T>,
    images: usize,
    du: &mut [T],
    par: Parallelism,
) {
    let a2 = V::A * V::A;
    let tiles = images * t.per_image();
    let c = g.c_out;
    let m_k = plane(tiles, c);
    // The output gradient, channels-last and zero past the output's last row and
    // column, so every tile reads a full `m x m` block.
    let wm = t.tw * V::M;
    // Past the output it stays zero: only the output's own pixels are ever written
    // here, and the forward pass, which writes whole tiles, uses its own scratch.
    for i in 0..images {
        let scratch = (&mut s.compact[..], &mut s.masked[..], &mut s.codes[..]);
        let wide = wide_lanes::<T>(WIDE, c);
        gy.fill(i, (c, g.ho, g.wo), wm, (0, 0), scratch, &mut s.grad, wide);
        let db = &mut du[a2 * g.c_out * g.c_in..][..c];
        gradient_tiles::<V, T, WIDE>(g, t, i, (&s.grad, wm, 0), db, (&mut s.m, m_k));
    }
    inputs_and_products::<V, T, FMA, WIDE>(g, t, s, x, images, du, par);
}

/// Image `i`'s output gradient, channels-last in `plane` (rows `width` pixels wide,
/// the output's corner at `at`, zeros past the output over whole tiles): its bias
/// gradient (the gradient summed per channel, the columns past the output adding
/// zeros) added into `db` while it is in cache, and its tiles' `A dY Aᵀ` (down the
/// columns, then across the rows) into `dm` (planes `m_k` apart).
#[inline(always)]
// Tiles are read down their columns, which the range loops index.
#[allow(clippy::needless_range_loop)]
// transform_tiles! reads and writes without per-access bounds checks.
#[allow(unsafe_code)]
pub(super) fn gradient_tiles<V: Variant, T: Elem, const WIDE: bool>(
    g: &Geometry,
    t: &Tiling,
    i: usize,
    (plane, width, at): (&[T], usize, usize),
    db: &mut [T],
    (dm, m_k): (&mut [T], usize),
) {
    let c = g.c_out;
    let wm = t.tw * V::M;
    if wide_lanes::<T>(WIDE, c) {
        bias_sum::<T, WIDE_LANES>((g.ho, wm, c), (plane, width, at), db);
    } else {
        bias_sum::<T, LANES>((g.ho, wm, c), (plane, width, at), db);
    }
    let dy = (&plane[at..], width, V::M);
    if wide_lanes::<T>(WIDE, c) {
        transform_tiles!(
            V,
            (T, WIDE_LANES),
            t,
            i,
            c,
            dy,
            V::output_t,
            (dm, m_k),
            |_| ()
        );
    } else {
        transform_tiles!(V, (T, LANES), t, i, c, dy, V::output_t, (dm, m_k), |_| ());
    }
}

/// Adds the `rows x cols` pixels of `c` channels in `plane` (rows `width` pixels wide,
/// the first at `at`) into `db`, pixel after pixel, `L` channels at a time in a
/// register (a loop over whole pixels kept `db` in memory, every addition a load and a
/// store).
#[inline(always)]
fn bias_sum<T: Elem, const L: usize>(
    (rows, cols, c): (usize, usize, usize),
    (plane, width, at): (&[T], usize, usize),
    db: &mut [T],
) {
    for c0 in (0..c).step_by(L) {
        let mut acc: Lanes<T, L> = load(db, c0);
        for y in 0..rows {
            let row = &plane[at + y * width * c..][..cols * c];
            for x in 0..cols {
                acc += load(row, x * c + c0);
            }
        }
        store(acc, db, c0);
    }
}

/// The rest of a weight round once its output gradient is transformed (in `s.m`):
/// the input tiles' transforms, then `dU[k] += dM[k]ᵀ V[k]` into `du`.
#[inline(always)]
pub(super) fn inputs_and_products<V: Variant, T: Elem, const FMA: bool, const WIDE: bool>(
    g: &Geometry,
    t: &Tiling,
    s: &mut Scratch<T>,
    x: Source<'_, T>,
    images: usize,
    du: &mut [T],
    par: Parallelism,
) {
    let a2 = V::A * V::A;
    let tiles = images * t.per_image();
    transform_inputs::<V, T, WIDE>(g, t, s, x, images);
    let m_k = plane(tiles, g.c_out);
    let (v_k, u_k) = (plane(tiles, g.c_in), g.c_out * g.c_in);
    // dU[k] (C_out x C_in) += dM[k]ᵀ (C_out x tiles) · V[k] (tiles x C_in).
    #[inline(always)]
    fn product<T: Elem, const FMA: bool, const WIDE: bool>(
        (g, tiles, m, v): (&Geometry, usize, &[T], &[T]),
        (m_k, v_k): (usize, usize),
        (k, du): (usize, &mut [T]),
    ) {
        small_gemm::<T, FMA, WIDE>(
            (g.c_out, g.c_in, tiles),
            (&m[k * m_k..k * m_k + tiles * g.c_out], 1, g.c_out),
            (&v[k * v_k..k * v_k + tiles * g.c_in], g.c_in),
            (du, g.c_in),
            true,
        )
    }
    let operands = (g, tiles, &s.m[..], &s.v[..]);
    let planes = &mut du[..a2 * u_k];
    if matches!(par, Parallelism::None) {
        // A loop, not `each_plane`'s closure: see `each_plane`.
        for (k, du) in planes.chunks_mut(u_k).enumerate() {
            product::<T, FMA, WIDE>(operands, (m_k, v_k), (k, du));
        }
    } else {
        each_plane(planes, u_k, par, |kd| {
            product::<T, FMA, WIDE>(operands, (m_k, v_k), kd)
        });
    }
}

/// The transformed weight gradient of the images in `x` with output gradient `grad`
/// (`a² x C_out x C_in`), then their bias gradient (`C_out`), summed over the rounds
/// of one thread.
pub(crate) fn weight_grad_transformed<V: Variant, T: Elem>(
    g: &Geometry,
    x: Source<'_, T>,
    grad: Source<'_, T>,
    par: Parallelism,
) -> Vec<T> {
    let t = Tiling::new::<V>(g);
    let a2 = V::A * V::A;
    let mut du = vec![T::ZERO; a2 * g.c_out * g.c_in + g.c_out];
    let round = images_per_backward_round(t.per_image());
    let mut s = Scratch::take::<V>(g, &t, round);
    for from in (0..x.count(g.in_len())).step_by(round) {
        let x = x.images(g.in_len(), from, round);
        let gy = grad.images(g.out_len(), from, round);
        let images = x.count(g.in_len());
        simd::weight_round::<V, T>((g, &t, &mut s, x, gy, images), &mut du, par);
    }
    s.keep();
    du
}

/// `dW = Gᵀ dU G` for every channel pair, into PyTorch's `C_out x C_in x 3 x 3`,
/// eight pairs at a time (consecutive in each plane of `dU`), on all of rayon's
/// threads.
pub(crate) fn untransform_weight_grad<V: Variant, T: Elem>(g: &Geometry, du: &[T], dw: &mut [T]) {
    use rayon::prelude::*;
    const PAIRS: usize = 64;
    let block = g.c_out * g.c_in;
    debug_assert_eq!(
        block % LANES,
        0,
        "Winograd needs channel counts divisible by 8"
    );
    let (r_, rr) = (V::R, V::R * V::R);
    let dw = &mut dw[..rr * block];
    dw.par_chunks_mut(rr * PAIRS)
        .enumerate()
        .for_each(|(chunk, dw)| {
            for (i, taps) in dw.chunks_exact_mut(rr * LANES).enumerate() {
                let first = chunk * PAIRS + i * LANES;
                let mut src = [Lanes::<T>::ZERO; MAX_A * MAX_A];
                for ky in 0..V::A {
                    for kx in 0..V::A {
                        src[ky * MAX_A + kx] = load(du, (ky * V::A + kx) * block + first);
                    }
                }
                let t = both(&src, V::A, r_, V::kernel_t);
                for r in 0..r_ {
                    for c in 0..r_ {
                        for (l, &v) in t[r * MAX_A + c].0.iter().enumerate() {
                            taps[l * rr + r * r_ + c] = v;
                        }
                    }
                }
            }
        });
}
