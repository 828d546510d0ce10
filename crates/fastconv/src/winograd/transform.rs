//! The transforms into the Winograd domain: the kernels' (`G g Gᵀ`, once per call) and
//! the tiles' (`Bᵀ d B` of input patches, `A dY Aᵀ` of gradient tiles, per round).

use super::lanes::{
    load_unchecked, store_into, store_unchecked, wide_lanes, Lanes, LANES, WIDE_LANES,
};
use super::scratch::{plane, Scratch};
use super::source::Source;
use super::variant::{both, Variant, MAX_A};
use super::Tiling;
use crate::kernels::{assume_written, transpose_into, unwritten, Elem, Geometry};

/// `U[k][ci][co]`: the transformed kernels, `a² x C_in x C_out`, computed eight
/// channel pairs at a time (the pair count is a multiple of 64 wherever Winograd
/// applies), on all of rayon's threads. Neither buffer is zeroed first: every value
/// of both is written (`perf` had the zeroing at a fifth of this function's time).
#[allow(unsafe_code)]
pub(super) fn transform_kernels<V: Variant, T: Elem>(g: &Geometry, w: &[T]) -> Vec<T> {
    use rayon::prelude::*;
    let a2 = V::A * V::A;
    let block = g.c_out * g.c_in;
    debug_assert_eq!(
        block % LANES,
        0,
        "Winograd needs channel counts divisible by 8"
    );
    // Every eight pairs' a² transformed taps, `[pairs / 8][k][8]`.
    let mut by_pairs = unwritten::<T>(a2 * block);
    by_pairs
        .par_chunks_mut(a2 * LANES)
        .zip(w.par_chunks_exact(V::R * V::R * LANES))
        .for_each(|(out, taps)| {
            let (r_, rr) = (V::R, V::R * V::R);
            let mut src = [Lanes::<T>::ZERO; MAX_A * MAX_A];
            for r in 0..r_ {
                for c in 0..r_ {
                    for (l, e) in src[r * MAX_A + c].0.iter_mut().enumerate() {
                        *e = taps[l * rr + r * r_ + c];
                    }
                }
            }
            let t = both(&src, r_, V::A, V::kernel);
            for ky in 0..V::A {
                for kx in 0..V::A {
                    store_into(t[ky * MAX_A + kx], out, (ky * V::A + kx) * LANES);
                }
            }
        });
    // SAFETY: the chunks cover `by_pairs`, and each chunk's a² x 8 values are stored.
    let by_pairs = unsafe { assume_written(by_pairs) };
    // Plane by plane: gathered `[co][ci]`, then transposed.
    let mut u = unwritten::<T>(a2 * block);
    u.par_chunks_mut(block).enumerate().for_each_init(
        || Vec::with_capacity(block),
        |pairs, (k, plane)| {
            pairs.clear();
            for p in 0..block / LANES {
                pairs.extend_from_slice(&by_pairs[(p * a2 + k) * LANES..][..LANES]);
            }
            transpose_into(pairs, (g.c_out, g.c_in, g.c_in), plane, g.c_out);
        },
    );
    // SAFETY: each plane is the whole `C_out x C_in` transpose of its gathered pairs.
    unsafe { assume_written(u) }
}

/// Transforms the tiles of image `$i` of a round, channels-last in `$src` (rows `$w`
/// pixels wide, each tile an `$n x $n` block with its corner at `(ty*M, tx*M)`): `$f`
/// down the block's columns, then across the resulting `a` rows, into
/// `$dst[k][tile][c]` (planes `$stride` apart), `L` channels at a time (`$l`, 8 or
/// 16), calling `$each_tile` with each tile's index within the image before its
/// transform. A macro rather than a function: with `$n` a constant at each use the loops
/// unroll, which a function argument (even inlined) did not achieve (its measured
/// cost: `docs/PERFORMANCE.md`).
macro_rules! transform_tiles {
    ($v:ty, ($t:ty, $l:expr), $tiling:expr, $i:expr, $c:expr, $source:expr, $f:path,
     ($dst:expr, $stride:expr), $each_tile:expr) => {{
        let t: &Tiling = $tiling;
        // The source: channels-last rows `width` pixels wide, blocks `n x n`.
        let (src, width, n): (&[$t], usize, usize) = $source;
        let dst: &mut [$t] = $dst;
        let c = $c;
        let mut half = [[Lanes::<$t, { $l }>::ZERO; MAX_A]; MAX_A];
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let tile = $i * t.per_image() + ty * t.tw + tx;
                $each_tile(ty * t.tw + tx);
                let corner = (ty * <$v>::M * width + tx * <$v>::M) * c;
                // The largest indices below, with c0 + L <= c (c is a multiple of
                // the lanes L): checked once per tile instead of at every access.
                assert!(
                    c % $l == 0
                        && corner + ((n - 1) * width + n - 1) * c + c <= src.len()
                        && (<$v>::A * <$v>::A - 1) * $stride + (tile + 1) * c <= dst.len(),
                    "Winograd transform: tile out of bounds"
                );
                for c0 in (0..c).step_by($l) {
                    for col in 0..n {
                        let mut d = [Lanes::<$t, { $l }>::ZERO; MAX_A];
                        for (r, e) in d.iter_mut().enumerate().take(n) {
                            // SAFETY: r, col < n and c0 + L <= c: within the bound
                            // asserted above.
                            *e =
                                unsafe { load_unchecked(src, corner + (r * width + col) * c + c0) };
                        }
                        let o = $f(d);
                        for r in 0..<$v>::A {
                            half[r][col] = o[r];
                        }
                    }
                    for (r, row) in half.iter().enumerate().take(<$v>::A) {
                        let o = $f(*row);
                        for (col, &e) in o.iter().enumerate().take(<$v>::A) {
                            let at = (r * <$v>::A + col) * $stride + tile * c + c0;
                            // SAFETY: r, col < A and c0 + L <= c: within the bound
                            // asserted above.
                            unsafe { store_unchecked(e, dst, at) };
                        }
                    }
                }
            }
        }
    }};
}
pub(super) use transform_tiles;

/// Fills `V` for `x` (`images` consecutive images): `V[k][tile][ci]`, where a round's
/// tiles are numbered image by image, row by row.
#[inline(always)]
pub(super) fn transform_inputs<V: Variant, T: Elem, const WIDE: bool>(
    g: &Geometry,
    t: &Tiling,
    s: &mut Scratch<T>,
    x: Source<'_, T>,
    images: usize,
) {
    let tiles = images * t.per_image();
    let c = g.c_in;
    let stride_k = plane(tiles, c);
    let wp = t.wp;
    for i in 0..images {
        // Only the interior is written, so the borders stay zero.
        let scratch = (&mut s.compact[..], &mut s.masked[..], &mut s.codes[..]);
        let wide = wide_lanes::<T>(WIDE, c);
        x.fill(
            i,
            (c, g.h, g.w),
            wp,
            (g.pad, g.pad),
            scratch,
            &mut s.padded,
            wide,
        );
        input_tiles::<V, T, WIDE>(g, t, i, &s.padded, (&mut s.v, stride_k), x);
    }
}

/// Image `i`'s tiles, `Bᵀ d B` of its patches in the zero-padded plane `padded` (`hp x
/// wp x C_in`), into `v` (planes `stride_k` apart), fetching image `i + 1` of `x`
/// into cache meanwhile, a share per tile (see `Source::prefetch`; past the last
/// image there is nothing to fetch).
#[inline(always)]
// Tiles are read down their columns, which the range loops index.
#[allow(clippy::needless_range_loop)]
// transform_tiles! reads and writes without per-access bounds checks.
#[allow(unsafe_code)]
pub(super) fn input_tiles<V: Variant, T: Elem, const WIDE: bool>(
    g: &Geometry,
    t: &Tiling,
    i: usize,
    padded: &[T],
    (v, stride_k): (&mut [T], usize),
    x: Source<'_, T>,
) {
    let c = g.c_in;
    // Bᵀ down the patch's columns, then across its rows into V.
    let ab = (padded, t.wp, V::A);
    let ahead = |tile: usize| x.prefetch(i + 1, g.in_len(), (tile, t.per_image()));
    if wide_lanes::<T>(WIDE, c) {
        transform_tiles!(
            V,
            (T, WIDE_LANES),
            t,
            i,
            c,
            ab,
            V::input,
            (v, stride_k),
            ahead
        );
    } else {
        transform_tiles!(V, (T, LANES), t, i, c, ab, V::input, (v, stride_k), ahead);
    }
}
