//! Winograd convolutions for 3x3 kernels at stride 1 (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", CVPR 2016).
//!
//! The output is cut into `m x m` tiles, each computed from an `a x a` input patch
//! (`a = m + 2`) as `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Summed over input channels, the
//! element-wise product becomes `a²` independent matrix products, one per position of
//! the transformed tile: `M[k] = U[k] · V[k]` with `U[k]` the transformed kernels
//! (`C_out x C_in`) and `V[k]` the transformed patches (`C_in x tiles`). F(4x4, 3x3)
//! needs 36 multiplies per 16 outputs where the direct convolution needs 144: a 4x
//! smaller GEMM, for transforms that cost a few additions per value.
//!
//! The map is bilinear in kernel and patch, so its adjoints give the backward passes:
//! - input gradient: a stride-1 convolution of the output gradient with the flipped,
//!   transposed kernel (the caller's `forward` of the backward geometry), so it runs
//!   here too;
//! - weight gradient: `dU[k] = Σ_tiles (A dY Aᵀ)[k] ⊙ V[k]`, again `a²` GEMMs
//!   (`C_out x tiles` by `tiles x C_in`), then `dW = Gᵀ dU G`.
//!
//! Tiles that stick out of the output are computed and cropped (forward), or fed zero
//! gradient (backward); patches that stick out of the input read zeros, which is the
//! convolution's zero padding.
//!
//! Storage is channels-last, `V[k]` and `M[k]` as `tiles x channels`, so that every
//! transform works on eight channels at once (one AVX register of f32) with contiguous
//! loads and stores; images are transposed in and out in 8 x 8 blocks. Work is cut
//! into rounds of about 128 tiles per thread, and the rounds run in functions compiled
//! for AVX2+FMA when the CPU has them.

use super::kernels::{as_unwritten, relu_grad, transpose, transpose_into, Elem, Geometry};
use gemm::Parallelism;
use std::mem::MaybeUninit;

/// Largest transformed tile side (F(5x5, 3x3)).
const MAX_A: usize = 7;

/// A tile: small fixed vectors; only the first `A` (or `M`) entries are used.
type Row<T> = [T; MAX_A];
/// A transformed tile, row-major with row stride [`MAX_A`].
type Tile<T> = [T; MAX_A * MAX_A];

/// One Winograd algorithm F(m x m, 3 x 3): its output tile `M`, its transformed tile
/// `A = M + 2`, and the one-dimensional transforms and their transposes.
pub(crate) trait Variant: Sync {
    /// Output tile side.
    const M: usize;
    /// Transformed tile side, `M + 2`.
    const A: usize;
    /// `Bᵀ d`: an input patch row or column.
    fn input<T: Elem>(d: Row<T>) -> Row<T>;
    /// `Aᵀ m`: back to `M` outputs.
    fn output<T: Elem>(m: Row<T>) -> Row<T>;
    /// `A y`: the transpose of [`Variant::output`], `M` values to `A`.
    fn output_t<T: Elem>(y: Row<T>) -> Row<T>;
    /// `G g`: 3 kernel taps to `A` values.
    fn kernel<T: Elem>(g: Row<T>) -> Row<T>;
    /// `Gᵀ u`: the transpose of [`Variant::kernel`], `A` values to 3.
    fn kernel_t<T: Elem>(u: Row<T>) -> Row<T>;
}

/// F(4x4, 3x3), interpolation points 0, ±1, ±2 and infinity.
pub(crate) struct F4;

impl Variant for F4 {
    const M: usize = 4;
    const A: usize = 6;

    #[inline(always)]
    fn input<T: Elem>(d: Row<T>) -> Row<T> {
        let (c2, c4, c5) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(5.0));
        // Shared partial sums, as in Lavin's formulation.
        let t0 = d[4] - c4 * d[2];
        let t1 = d[3] - c4 * d[1];
        let t2 = d[4] - d[2];
        let t3 = c2 * (d[3] - d[1]);
        [
            c4 * d[0] - c5 * d[2] + d[4],
            t0 + t1,
            t0 - t1,
            t2 + t3,
            t2 - t3,
            c4 * d[1] - c5 * d[3] + d[5],
            T::ZERO,
        ]
    }

    #[inline(always)]
    fn output<T: Elem>(m: Row<T>) -> Row<T> {
        let z = T::ZERO;
        let (c2, c4, c8) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
        let s12 = m[1] + m[2];
        let d12 = m[1] - m[2];
        let s34 = m[3] + m[4];
        let d34 = m[3] - m[4];
        [
            m[0] + s12 + s34,
            d12 + c2 * d34,
            s12 + c4 * s34,
            d12 + c8 * d34 + m[5],
            z,
            z,
            z,
        ]
    }

    #[inline(always)]
    fn output_t<T: Elem>(y: Row<T>) -> Row<T> {
        let (c2, c4, c8) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
        let even1 = y[0] + y[2];
        let odd1 = y[1] + y[3];
        let even2 = y[0] + c4 * y[2];
        let odd2 = c2 * y[1] + c8 * y[3];
        [
            y[0],
            even1 + odd1,
            even1 - odd1,
            even2 + odd2,
            even2 - odd2,
            y[3],
            T::ZERO,
        ]
    }

    #[inline(always)]
    fn kernel<T: Elem>(g: Row<T>) -> Row<T> {
        let (q, s, t, e) = (
            T::from_f64(0.25),
            T::from_f64(1.0 / 6.0),
            T::from_f64(1.0 / 12.0),
            T::from_f64(1.0 / 24.0),
        );
        let even = g[0] + g[2];
        let far = e * g[0] + s * g[2];
        [
            q * g[0],
            T::ZERO - s * (even + g[1]),
            T::ZERO - s * (even - g[1]),
            far + t * g[1],
            far - t * g[1],
            g[2],
            T::ZERO,
        ]
    }

    #[inline(always)]
    fn kernel_t<T: Elem>(u: Row<T>) -> Row<T> {
        let z = T::ZERO;
        let (q, s, t, e) = (
            T::from_f64(0.25),
            T::from_f64(1.0 / 6.0),
            T::from_f64(1.0 / 12.0),
            T::from_f64(1.0 / 24.0),
        );
        let s12 = u[1] + u[2];
        let s34 = u[3] + u[4];
        [
            q * u[0] - s * s12 + e * s34,
            s * (u[2] - u[1]) + t * (u[3] - u[4]),
            s * (s34 - s12) + u[5],
            z,
            z,
            z,
            z,
        ]
    }
}

/// F(5x5, 3x3), interpolation points 0, ±1, ±2, 1/2 and infinity: 49 multiplies per
/// 25 outputs where F(4x4) needs 36 per 16, so 23 % fewer where the output's side
/// is a multiple of 5 but not of 4 (a 14 x 14 output takes 9 tiles of 15 x 15 instead
/// of 16 of 16 x 16). Its f32 rounding error is about 1.5 times F(4x4)'s. The
/// matrices come from the Toom-Cook construction (`Aᵀ` the powers of the points, `G`
/// divided by the products of the points' differences, `Bᵀ` solved so that the
/// algorithm is exact); the tests check the identity and the transposes.
pub(crate) struct F5;

impl Variant for F5 {
    const M: usize = 5;
    const A: usize = 7;

    #[inline(always)]
    fn input<T: Elem>(d: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let (half, c1_5, c2, c2_5, c4, c5) = (c(0.5), c(1.5), c(2.0), c(2.5), c(4.0), c(5.0));
        // Rows 1-4 (points ±1, ±2) as even and odd parts that share terms.
        let t = d[2] - c2 * d[3];
        let u = d[1] - c2 * d[2];
        let even2 = half * (t - d[4]) + d[5];
        let even1 = even2 + c1_5 * t;
        let odd2 = u - d[3] + c2 * d[4];
        let odd1 = half * odd2 + c1_5 * u;
        let r5 = c4 * d[1] - c5 * d[3] + d[5];
        [
            r5 - c2 * d[0] + c2_5 * d[2] - half * d[4],
            even1 + odd1,
            even1 - odd1,
            even2 + odd2,
            even2 - odd2,
            r5,
            c4 * d[2] - c5 * d[4] - half * r5 + d[6],
        ]
    }

    #[inline(always)]
    fn output<T: Elem>(m: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let z = T::ZERO;
        let s12 = m[1] + m[2];
        let d12 = m[1] - m[2];
        let s34 = m[3] + m[4];
        let d34 = m[3] - m[4];
        [
            m[0] + s12 + s34 + m[5],
            d12 + c(2.0) * d34 + c(0.5) * m[5],
            s12 + c(4.0) * s34 + c(0.25) * m[5],
            d12 + c(8.0) * d34 + c(0.125) * m[5],
            s12 + c(16.0) * s34 + c(0.0625) * m[5] + m[6],
            z,
            z,
        ]
    }

    #[inline(always)]
    fn output_t<T: Elem>(y: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let even1 = y[0] + y[2] + y[4];
        let odd1 = y[1] + y[3];
        let even2 = y[0] + c(4.0) * y[2] + c(16.0) * y[4];
        let odd2 = c(2.0) * y[1] + c(8.0) * y[3];
        [
            y[0],
            even1 + odd1,
            even1 - odd1,
            even2 + odd2,
            even2 - odd2,
            y[0] + c(0.5) * y[1] + c(0.25) * y[2] + c(0.125) * y[3] + c(0.0625) * y[4],
            y[4],
        ]
    }

    #[inline(always)]
    fn kernel<T: Elem>(g: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let two = c(2.0);
        let four = c(4.0);
        [
            c(-0.5) * g[0],
            c(-1.0 / 3.0) * (g[0] + g[1] + g[2]),
            c(1.0 / 9.0) * (g[0] - g[1] + g[2]),
            c(1.0 / 36.0) * (g[0] + two * g[1] + four * g[2]),
            c(-1.0 / 60.0) * (g[0] - two * g[1] + four * g[2]),
            c(8.0 / 45.0) * (four * g[0] + two * g[1] + g[2]),
            g[2],
        ]
    }

    #[inline(always)]
    fn kernel_t<T: Elem>(u: Row<T>) -> Row<T> {
        let c = T::from_f64;
        let z = T::ZERO;
        let third = c(-1.0 / 3.0) * u[1];
        let ninth = c(1.0 / 9.0) * u[2];
        [
            c(-0.5) * u[0] + third + ninth + c(1.0 / 36.0) * u[3] - c(1.0 / 60.0) * u[4]
                + c(32.0 / 45.0) * u[5],
            third - ninth + c(1.0 / 18.0) * u[3] + c(1.0 / 30.0) * u[4] + c(16.0 / 45.0) * u[5],
            third + ninth + c(1.0 / 9.0) * u[3] - c(1.0 / 15.0) * u[4]
                + c(8.0 / 45.0) * u[5]
                + u[6],
            z,
            z,
            z,
            z,
        ]
    }
}

/// Whether F(5x5, 3x3) computes an `ho x wo` output with fewer transformed values
/// (and so fewer multiplies) than F(4x4, 3x3); ties go to F(4x4), the more accurate.
pub(crate) fn prefers_f5(ho: usize, wo: usize) -> bool {
    let cost = |m: usize, a: usize| ho.div_ceil(m) * wo.div_ceil(m) * a * a;
    cost(5, 7) < cost(4, 6)
}

/// `out = F src Fᵀ` for a one-dimensional map `f` from `n_in` to `n_out` values:
/// `f` on every column of the `n_in x n_in` tile, then on every row.
#[inline(always)]
fn both<T: Elem>(
    src: &Tile<T>,
    n_in: usize,
    n_out: usize,
    f: impl Fn(Row<T>) -> Row<T>,
) -> Tile<T> {
    let mut mid = [T::ZERO; MAX_A * MAX_A];
    for col in 0..n_in {
        let mut v = [T::ZERO; MAX_A];
        for (r, e) in v.iter_mut().enumerate().take(n_in) {
            *e = src[r * MAX_A + col];
        }
        let t = f(v);
        for (r, &e) in t.iter().enumerate().take(n_out) {
            mid[r * MAX_A + col] = e;
        }
    }
    let mut out = [T::ZERO; MAX_A * MAX_A];
    for row in 0..n_out {
        let mut v = [T::ZERO; MAX_A];
        v[..n_in].copy_from_slice(&mid[row * MAX_A..row * MAX_A + n_in]);
        let t = f(v);
        out[row * MAX_A..row * MAX_A + n_out].copy_from_slice(&t[..n_out]);
    }
    out
}

/// Whether a geometry runs through Winograd: stride 1, 3x3, padding up to 2, and
/// channel counts on both sides that are multiples of the eight lanes the transforms
/// run on (which also keeps the `a²` GEMMs from being degenerate).
pub(crate) fn applies(g: &Geometry) -> bool {
    g.stride == 1
        && g.k == 3
        && g.pad <= 2
        && g.c_in % LANES == 0
        && g.c_out % LANES == 0
        && g.c_in > 0
        && g.c_out > 0
}

/// Tiles per image and the padded plane that their patches are read from.
#[derive(Clone, Copy)]
struct Tiling {
    /// Tiles down and across.
    th: usize,
    tw: usize,
    /// The zero-padded input plane: `hp x wp`, the image at `(pad, pad)`.
    hp: usize,
    wp: usize,
}

impl Tiling {
    fn new<V: Variant>(g: &Geometry) -> Self {
        let th = g.ho.div_ceil(V::M);
        let tw = g.wo.div_ceil(V::M);
        Self {
            th,
            tw,
            hp: th * V::M + 2,
            wp: tw * V::M + 2,
        }
    }

    fn per_image(&self) -> usize {
        self.th * self.tw
    }
}

/// Images per GEMM round: enough tiles to keep the products efficient, few enough that
/// the transformed operands stay in cache.
fn images_per_round(tiles: usize) -> usize {
    const TARGET_TILES: usize = 128;
    TARGET_TILES.div_ceil(tiles.max(1)).max(1)
}

/// `U[k][ci][co]`: the transformed kernels, `a² x C_in x C_out`, computed eight
/// channel pairs at a time (the pair count is a multiple of 64 wherever Winograd
/// applies), on all of rayon's threads.
fn transform_kernels<V: Variant, T: Elem>(g: &Geometry, w: &[T]) -> Vec<T> {
    use rayon::prelude::*;
    let a2 = V::A * V::A;
    let block = g.c_out * g.c_in;
    debug_assert_eq!(
        block % LANES,
        0,
        "Winograd needs channel counts divisible by 8"
    );
    // Every eight pairs' a² transformed taps, `[pairs / 8][k][8]`.
    let mut by_pairs = vec![T::ZERO; a2 * block];
    by_pairs
        .par_chunks_mut(a2 * LANES)
        .zip(w.par_chunks_exact(9 * LANES))
        .for_each(|(out, taps)| {
            let mut src = [Lanes::<T>::ZERO; MAX_A * MAX_A];
            for r in 0..3 {
                for c in 0..3 {
                    for (l, e) in src[r * MAX_A + c].0.iter_mut().enumerate() {
                        *e = taps[l * 9 + r * 3 + c];
                    }
                }
            }
            let t = both(&src, 3, V::A, V::kernel);
            for ky in 0..V::A {
                for kx in 0..V::A {
                    store(t[ky * MAX_A + kx], out, (ky * V::A + kx) * LANES);
                }
            }
        });
    // Plane by plane: gathered `[co][ci]`, then transposed.
    let mut u = vec![T::ZERO; a2 * block];
    u.par_chunks_mut(block).enumerate().for_each(|(k, plane)| {
        let mut pairs = vec![T::ZERO; block];
        for (p, dst) in pairs.chunks_exact_mut(LANES).enumerate() {
            dst.copy_from_slice(&by_pairs[(p * a2 + k) * LANES..][..LANES]);
        }
        transpose(&pairs, (g.c_out, g.c_in, g.c_in), plane, g.c_out);
    });
    u
}

/// `C (+)= A · B` for the rounds' `a²` small products (`m x k` by `k x n`), with
/// `A(r, p) = a[r * ars + p * aks]`, `B(p, j) = b[p * ldb + j]`,
/// `C(r, j) = c[r * ldc + j]` and `n` a multiple of [`LANES`]: register blocks of 6
/// rows by 16 columns straight from the operands, which a round keeps in cache, so
/// nothing is packed. `FMA` fuses the multiply-adds (set only in the AVX2+FMA build,
/// where they are single instructions).
#[inline(always)]
fn small_gemm<T: Elem, const FMA: bool>(
    (m, n, k): (usize, usize, usize),
    (a, ars, aks): (&[T], usize, usize),
    (b, ldb): (&[T], usize),
    (c, ldc): (&mut [T], usize),
    accumulate: bool,
) {
    debug_assert_eq!(n % LANES, 0, "small_gemm: n is not a multiple of the lanes");
    for j0 in (0..n).step_by(2 * LANES) {
        let wide = n - j0 >= 2 * LANES;
        for i0 in (0..m).step_by(6) {
            let a = (&a[i0 * ars..], ars, aks);
            let b = (&b[j0..], ldb);
            let c = (&mut c[i0 * ldc + j0..], ldc);
            macro_rules! block {
                ($r:literal) => {
                    if wide {
                        block::<T, $r, 2, FMA>(k, a, b, c, accumulate)
                    } else {
                        block::<T, $r, 1, FMA>(k, a, b, c, accumulate)
                    }
                };
            }
            match m - i0 {
                1 => block!(1),
                2 => block!(2),
                3 => block!(3),
                4 => block!(4),
                5 => block!(5),
                _ => block!(6),
            }
        }
    }
}

/// `f(k, plane k)` for every `len`-long plane of `planes`, spread over rayon's threads
/// when `par` asks for it (a batch too small to give every thread its own images).
#[inline(always)]
fn each_plane<T: Elem>(
    planes: &mut [T],
    len: usize,
    par: Parallelism,
    f: impl Fn((usize, &mut [T])) + Sync + Send,
) {
    use rayon::prelude::*;
    match par {
        Parallelism::None => planes.chunks_mut(len).enumerate().for_each(f),
        _ => planes.par_chunks_mut(len).enumerate().for_each(f),
    }
}

/// One `R x NV*LANES` block of [`small_gemm`], its accumulators in registers.
#[inline(always)]
fn block<T: Elem, const R: usize, const NV: usize, const FMA: bool>(
    k: usize,
    (a, ars, aks): (&[T], usize, usize),
    (b, ldb): (&[T], usize),
    (c, ldc): (&mut [T], usize),
    accumulate: bool,
) {
    let mut acc = [[Lanes::<T>::ZERO; NV]; R];
    if k == 0 {
        return;
    }
    assert!(
        (R - 1) * ars + (k - 1) * aks < a.len() && (k - 1) * ldb + NV * LANES <= b.len(),
        "small_gemm: operand too short"
    );
    for p in 0..k {
        let mut bv = [Lanes::<T>::ZERO; NV];
        for (v, e) in bv.iter_mut().enumerate() {
            // SAFETY: p < k and v < NV, so the read ends at most at
            // (k - 1) * ldb + NV * LANES <= b.len() (asserted above).
            #[allow(unsafe_code)]
            unsafe {
                e.0.copy_from_slice(
                    b.get_unchecked(p * ldb + v * LANES..p * ldb + (v + 1) * LANES),
                );
            }
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: r < R and p < k, so the index is at most
            // (R - 1) * ars + (k - 1) * aks < a.len() (asserted above).
            #[allow(unsafe_code)]
            let x = Lanes([unsafe { *a.get_unchecked(r * ars + p * aks) }; LANES]);
            for (acc, &bv) in acc.iter_mut().zip(&bv) {
                *acc = if FMA {
                    x.fused_mul_add(bv, *acc)
                } else {
                    x * bv + *acc
                };
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (v, &e) in acc.iter().enumerate() {
            let at = r * ldc + v * LANES;
            let e = if accumulate { e + load(c, at) } else { e };
            store(e, c, at);
        }
    }
}

/// Per-thread buffers. Transformed tiles are stored channels-last, `[k][tile][c]`, so
/// every transform runs on eight channels at once with contiguous loads and stores.
struct Scratch<T> {
    /// One image, zero-padded and channels-last: `hp x wp x C_in`. Only its interior
    /// is ever written, so its borders stay zero.
    padded: Vec<T>,
    /// The output gradient, channels-last, zero past the output over whole tiles:
    /// `th*m x tw*m x C_out` (weight gradient only).
    grad: Vec<T>,
    /// One image or output channels-last and unpadded: `h*w x C` (either side).
    compact: Vec<T>,
    /// A gradient through ReLU, channels-first (same size).
    masked: Vec<T>,
    /// The window offsets of an unpooled gradient, channels-last (same size).
    codes: Vec<u8>,
    /// `V`: `a² x tiles x C_in` for one round.
    v: Vec<T>,
    /// `M` (forward) or the transformed output gradient (backward): `a² x tiles x C_out`.
    m: Vec<T>,
}

thread_local! {
    /// Scratch buffers returned by the calls that ran on this thread, one per element
    /// type (more only while calls nest through rayon's work stealing).
    static KEPT: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes `v` at least `len` long; with `clear`, zeroes its first `len` values (the
/// rest of a kept buffer holds what an earlier call left there).
fn fit<T: Copy>(v: &mut Vec<T>, len: usize, zero: T, clear: bool) {
    if v.len() < len {
        v.clear();
        v.resize(len, zero);
    } else if clear {
        v[..len].fill(zero);
    }
}

impl<T: Elem> Scratch<T> {
    fn empty() -> Self {
        Self {
            padded: Vec::new(),
            grad: Vec::new(),
            compact: Vec::new(),
            masked: Vec::new(),
            codes: Vec::new(),
            v: Vec::new(),
            m: Vec::new(),
        }
    }

    /// This thread's buffers, sized for rounds of `images` images of `g`: allocated
    /// only when an earlier call's are too short, and zeroed only where they are read
    /// before written (the padding of `padded`, the tail tiles of `grad`). Give them
    /// back with [`Scratch::keep`].
    fn take<V: Variant>(g: &Geometry, t: &Tiling, images: usize) -> Self {
        let mut s = KEPT
            .with(|kept| {
                let mut kept = kept.borrow_mut();
                let at = kept.iter().position(|b| b.is::<Self>())?;
                kept.swap_remove(at).downcast::<Self>().ok()
            })
            .map_or_else(Self::empty, |b| *b);
        let a2 = V::A * V::A;
        let tiles = images * t.per_image();
        let side = (g.h * g.w).max(g.out_hw()) * g.c_in.max(g.c_out);
        let z = T::ZERO;
        fit(&mut s.padded, t.hp * t.wp * g.c_in, z, true);
        fit(&mut s.grad, t.th * V::M * t.tw * V::M * g.c_out, z, true);
        fit(&mut s.compact, side, z, false);
        fit(&mut s.masked, side, z, false);
        fit(&mut s.codes, side, 0, false);
        fit(&mut s.v, a2 * plane(tiles, g.c_in), z, false);
        fit(&mut s.m, a2 * plane(tiles, g.c_out), z, false);
        s
    }

    /// Keeps the buffers for this thread's next call.
    fn keep(self) {
        KEPT.with(|kept| kept.borrow_mut().push(Box::new(self)));
    }
}

/// Elements between the starts of two of the `a²` planes of `V` or `M` (`tiles x c`
/// each): one cache line more than a plane, so that the transforms' `a²` streams, one
/// per plane, do not all fall into the same cache set (planes are often a multiple of
/// 4 KiB, which made them evict each other).
fn plane(tiles: usize, c: usize) -> usize {
    tiles * c + 16
}

/// Lanes processed together by the transforms: eight f32 fill one AVX register.
const LANES: usize = 8;

/// `LANES` values with element-wise arithmetic, so the transforms written for one
/// value run on eight columns (or tiles) at once and compile to vector code.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
struct Lanes<T>([T; LANES]);

macro_rules! lanes_op {
    ($tr:ident, $f:ident, $op:tt) => {
        impl<T: Elem> std::ops::$tr for Lanes<T> {
            type Output = Self;
            #[inline(always)]
            #[allow(clippy::assign_op_pattern)] // `$op=` is not an operator token
            fn $f(self, o: Self) -> Self {
                let mut r = self.0;
                for (a, b) in r.iter_mut().zip(o.0) {
                    *a = *a $op b;
                }
                Lanes(r)
            }
        }
    };
}
lanes_op!(Add, add, +);
lanes_op!(Sub, sub, -);
lanes_op!(Mul, mul, *);

impl<T: Elem> std::ops::AddAssign for Lanes<T> {
    #[inline(always)]
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl<T: Elem> Elem for Lanes<T> {
    const ZERO: Self = Lanes([T::ZERO; LANES]);
    const ONE: Self = Lanes([T::ONE; LANES]);
    fn from_f64(v: f64) -> Self {
        Lanes([T::from_f64(v); LANES])
    }

    #[inline(always)]
    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        let mut r = self.0;
        for ((e, a), b) in r.iter_mut().zip(a.0).zip(b.0) {
            *e = e.fused_mul_add(a, b);
        }
        Lanes(r)
    }
}

/// The `LANES` values at `src[at..]`.
#[inline(always)]
fn load<T: Elem>(src: &[T], at: usize) -> Lanes<T> {
    let mut l = Lanes::<T>::ZERO;
    l.0.copy_from_slice(&src[at..at + LANES]);
    l
}

/// Writes `l` to `dst[at..]`.
#[inline(always)]
fn store<T: Elem>(l: Lanes<T>, dst: &mut [T], at: usize) {
    dst[at..at + LANES].copy_from_slice(&l.0);
}

/// [`load`] without the bounds check, for loops that assert their largest index
/// once instead of at every access.
///
/// # Safety
/// `at + LANES <= src.len()`.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn load_unchecked<T: Elem>(src: &[T], at: usize) -> Lanes<T> {
    debug_assert!(at + LANES <= src.len());
    let mut l = Lanes::<T>::ZERO;
    // SAFETY: in bounds by the caller's contract.
    l.0.copy_from_slice(unsafe { src.get_unchecked(at..at + LANES) });
    l
}

/// [`store`] without the bounds check (see [`load_unchecked`]).
///
/// # Safety
/// `at + LANES <= dst.len()`.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn store_unchecked<T: Elem>(l: Lanes<T>, dst: &mut [T], at: usize) {
    debug_assert!(at + LANES <= dst.len());
    // SAFETY: in bounds by the caller's contract.
    unsafe { dst.get_unchecked_mut(at..at + LANES) }.copy_from_slice(&l.0);
}

/// [`store`] into a buffer that may not be written yet.
#[inline(always)]
fn store_into<T: Elem>(l: Lanes<T>, dst: &mut [MaybeUninit<T>], at: usize) {
    for (d, &v) in dst[at..at + LANES].iter_mut().zip(&l.0) {
        d.write(v);
    }
}

/// [`store_unchecked`] into a buffer that may not be written yet.
///
/// # Safety
/// `at + LANES <= dst.len()`.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn store_into_unchecked<T: Elem>(l: Lanes<T>, dst: &mut [MaybeUninit<T>], at: usize) {
    debug_assert!(at + LANES <= dst.len());
    // SAFETY: in bounds by the caller's contract, and `MaybeUninit<T>` has the layout
    // of `T`.
    unsafe {
        let to = dst.as_mut_ptr().add(at).cast::<T>();
        std::ptr::copy_nonoverlapping(l.0.as_ptr(), to, LANES);
    }
}

impl<T: Elem> Lanes<T> {
    /// ReLU lane by lane; NaN passes through (it is not <= 0), as in candle's relu.
    #[inline(always)]
    fn relu(self) -> Self {
        let mut r = self.0;
        for e in r.iter_mut() {
            *e = if *e <= T::ZERO { T::ZERO } else { *e };
        }
        Lanes(r)
    }
}

/// Copies one `C x h x w` image (channels-first) into the channels-last buffer
/// `rows x cols x C` at `(top, left)`, through `tmp` (`h*w x C`); the rest of the
/// buffer is left as it is.
#[inline(always)]
fn to_channels_last<T: Elem>(
    src: &[T],
    (c, h, w): (usize, usize, usize),
    cols: usize,
    (top, left): (usize, usize),
    tmp: &mut [T],
    dst: &mut [T],
) {
    transpose(src, (c, h * w, h * w), tmp, c);
    for y in 0..h {
        dst[((y + top) * cols + left) * c..][..w * c].copy_from_slice(&tmp[y * w * c..][..w * c]);
    }
}

/// Where a pass reads its `C x H x W` images (or output gradients) from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a, T> {
    /// The images themselves, channels-first (`C x H x W` each).
    Dense(&'a [T]),
    /// The images themselves, channels-last (`H x W x C` each).
    ChannelsLast(&'a [T]),
    /// The gradient with respect to the input of `max_pool(relu(.), k)` (of `relu`
    /// alone when `k == 1`), built on the fly from the gradient of its output (`grad`),
    /// its output (`y`, ReLU's mask) and each window's first maximum (`codes`, as
    /// [`forward`] records them; empty when `k == 1`), all `C x H/k x W/k` per image
    /// (`H/k x W/k x C` when `channels_last`): never materialised at full size.
    ThroughRelu {
        grad: &'a [T],
        y: &'a [T],
        codes: &'a [u8],
        k: usize,
        channels_last: bool,
    },
}

impl<'a, T: Elem> Source<'a, T> {
    /// Images `from..from + count` (or as many as there are), each `len` values at
    /// full size.
    pub(crate) fn images(self, len: usize, from: usize, count: usize) -> Self {
        let cut = |l: usize, n: usize| {
            from.saturating_mul(l).min(n)..(from + count).saturating_mul(l).min(n)
        };
        match self {
            Source::Dense(x) => Source::Dense(&x[cut(len, x.len())]),
            Source::ChannelsLast(x) => Source::ChannelsLast(&x[cut(len, x.len())]),
            Source::ThroughRelu {
                grad,
                y,
                codes,
                k,
                channels_last,
            } => {
                let l = len / (k * k);
                Source::ThroughRelu {
                    grad: &grad[cut(l, grad.len())],
                    y: &y[cut(l, y.len())],
                    codes: if k > 1 {
                        &codes[cut(l, codes.len())]
                    } else {
                        codes
                    },
                    k,
                    channels_last,
                }
            }
        }
    }

    /// How many images of `len` values (at full size) there are.
    fn count(self, len: usize) -> usize {
        match self {
            Source::Dense(x) | Source::ChannelsLast(x) => x.len() / len,
            Source::ThroughRelu { grad, k, .. } => grad.len() / (len / (k * k)),
        }
    }

    /// Writes image `i`, `c x h x w`, channels-last into `dst` (`cols` pixels per row)
    /// with its corner at `(top, left)`, through the scratch `tmp` and `masked`
    /// (`h*w x c` values each) and `codes_cl` (as many bytes); the rest of `dst` is left
    /// as it is.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn fill(
        self,
        i: usize,
        (c, h, w): (usize, usize, usize),
        cols: usize,
        (top, left): (usize, usize),
        (tmp, masked, codes_cl): (&mut [T], &mut [T], &mut [u8]),
        dst: &mut [T],
    ) {
        let (grad, y, codes, k) = match self {
            Source::Dense(x) => {
                let len = c * h * w;
                to_channels_last(
                    &x[i * len..(i + 1) * len],
                    (c, h, w),
                    cols,
                    (top, left),
                    tmp,
                    dst,
                );
                return;
            }
            Source::ChannelsLast(x) => {
                let (row, len) = (w * c, c * h * w);
                let x = &x[i * len..(i + 1) * len];
                for (yy, src) in x.chunks_exact(row).enumerate() {
                    dst[((yy + top) * cols + left) * c..][..row].copy_from_slice(src);
                }
                return;
            }
            Source::ThroughRelu {
                grad,
                y,
                codes,
                k,
                channels_last,
            } => {
                if channels_last {
                    let image = (grad, y, codes, i);
                    unpool_channels_last(image, (c, h, w, k), cols, (top, left), dst);
                    return;
                }
                (grad, y, codes, k)
            }
        };
        let (ph, pw) = (h / k, w / k);
        let (hw, len) = (ph * pw, c * ph * pw);
        let (grad, y) = (&grad[i * len..(i + 1) * len], &y[i * len..(i + 1) * len]);
        // Without pooling every value is its own window's maximum.
        // ReLU's mask, channels-first, then channels-last.
        for ((m, &g), &y) in masked.iter_mut().zip(grad).zip(y) {
            *m = relu_grad(g, y);
        }
        if k == 1 {
            to_channels_last(&masked[..len], (c, h, w), cols, (top, left), tmp, dst);
            return;
        }
        transpose(&masked[..len], (c, hw, hw), tmp, c);
        // Each value's window offset, channels-last.
        let codes = &codes[i * len..(i + 1) * len];
        for p in 0..hw {
            for ch in 0..c {
                codes_cl[p * c + ch] = codes[ch * hw + p];
            }
        }
        for py in 0..ph {
            for px in 0..pw {
                let p = py * pw + px;
                for c0 in (0..c).step_by(LANES) {
                    let g = load(tmp, p * c + c0);
                    // Zero where ReLU blocks it, so its window offset does not matter.
                    let at = &codes_cl[p * c + c0..p * c + c0 + LANES];
                    for d in 0..k * k {
                        let mut v = Lanes::<T>::ZERO;
                        for ((v, &g), &at) in v.0.iter_mut().zip(&g.0).zip(at) {
                            if usize::from(at) == d {
                                *v = g;
                            }
                        }
                        let (yy, xx) = (top + py * k + d / k, left + px * k + d % k);
                        store(v, dst, (yy * cols + xx) * c + c0);
                    }
                }
            }
        }
    }
}

/// [`Source::fill`] for a channels-last [`Source::ThroughRelu`]: image `i` of
/// (`grad`, `y`, `codes`), `h/k x w/k x c` each, masked by ReLU and spread over each
/// window's maximum, into `dst` (`cols` pixels per row) with its corner at
/// `(top, left)`. Every pixel of the `h x w` block is written, so the rest of each
/// window gets zeros.
#[inline(always)]
fn unpool_channels_last<T: Elem>(
    (grad, y, codes, i): (&[T], &[T], &[u8], usize),
    (c, h, w, k): (usize, usize, usize, usize),
    cols: usize,
    (top, left): (usize, usize),
    dst: &mut [T],
) {
    let (ph, pw) = (h / k, w / k);
    let len = ph * pw * c;
    let (grad, y) = (&grad[i * len..(i + 1) * len], &y[i * len..(i + 1) * len]);
    let codes = if k > 1 {
        &codes[i * len..(i + 1) * len]
    } else {
        &[][..]
    };
    // Each window offset's distance from the window's corner in `dst` (no division in
    // the loop below; windows divide Winograd's 4x4 tiles, so `k <= 4`).
    assert!(k <= 4, "Winograd pooling window above 4");
    let mut offsets = [0usize; 16];
    for (d, o) in offsets.iter_mut().enumerate().take(k * k) {
        *o = ((d / k) * cols + d % k) * c;
    }
    for py in 0..ph {
        for px in 0..pw {
            let p = py * pw + px;
            for c0 in (0..c).step_by(LANES) {
                let at = p * c + c0;
                let (g, yv) = (load(grad, at), load(y, at));
                // ReLU's mask.
                let mut m = Lanes::<T>::ZERO;
                for ((m, &g), &y) in m.0.iter_mut().zip(&g.0).zip(&yv.0) {
                    *m = relu_grad(g, y);
                }
                if k == 1 {
                    store(m, dst, ((top + py) * cols + left + px) * c + c0);
                    continue;
                }
                // Zeros over the window, then each lane's value at its maximum.
                let corner = ((top + py * k) * cols + left + px * k) * c + c0;
                for &o in &offsets[..k * k] {
                    store(Lanes::ZERO, dst, corner + o);
                }
                for (l, (&m, &d)) in m.0.iter().zip(&codes[at..at + LANES]).enumerate() {
                    dst[corner + offsets[usize::from(d)] + l] = m;
                }
            }
        }
    }
}

/// Transforms the tiles of image `$i` of a round, channels-last in `$src` (rows `$w`
/// pixels wide, each tile an `$n x $n` block with its corner at `(ty*M, tx*M)`): `$f`
/// down the block's columns, then across the resulting `a` rows, into
/// `$dst[k][tile][c]` (planes `$stride` apart). A macro rather than a function: with
/// `$n` a constant at each use the loops unroll, which a function argument (even
/// inlined) did not achieve, at a cost of 15-30 % on a layer.
macro_rules! transform_tiles {
    ($v:ty, $t:ty, $tiling:expr, $i:expr, $c:expr, ($src:expr, $w:expr, $n:expr), $f:path,
     ($dst:expr, $stride:expr)) => {{
        let t: &Tiling = $tiling;
        let (c, width) = ($c, $w);
        let mut half = [[Lanes::<$t>::ZERO; MAX_A]; MAX_A];
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let tile = $i * t.per_image() + ty * t.tw + tx;
                let corner = (ty * <$v>::M * width + tx * <$v>::M) * c;
                // The largest indices below, with c0 + LANES <= c (c is a multiple of
                // LANES): checked once per tile instead of at every access.
                assert!(
                    c % LANES == 0
                        && corner + (($n - 1) * width + $n - 1) * c + c <= $src.len()
                        && (<$v>::A * <$v>::A - 1) * $stride + (tile + 1) * c <= $dst.len(),
                    "Winograd transform: tile out of bounds"
                );
                for c0 in (0..c).step_by(LANES) {
                    for col in 0..$n {
                        let mut d = [Lanes::<$t>::ZERO; MAX_A];
                        for (r, e) in d.iter_mut().enumerate().take($n) {
                            // SAFETY: r, col < $n and c0 + LANES <= c: within the bound
                            // asserted above.
                            *e = unsafe {
                                load_unchecked(&$src, corner + (r * width + col) * c + c0)
                            };
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
                            // SAFETY: r, col < A and c0 + LANES <= c: within the bound
                            // asserted above.
                            unsafe { store_unchecked(e, &mut $dst, at) };
                        }
                    }
                }
            }
        }
    }};
}

/// Fills `V` for `x` (`images` consecutive images): `V[k][tile][ci]`, where a round's
/// tiles are numbered image by image, row by row.
#[inline(always)]
// Tiles are read down their columns, which the range loops index.
#[allow(clippy::needless_range_loop)]
// transform_tiles! reads and writes without per-access bounds checks.
#[allow(unsafe_code)]
fn transform_inputs<V: Variant, T: Elem>(
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
        x.fill(i, (c, g.h, g.w), wp, (g.pad, g.pad), scratch, &mut s.padded);
        // Bᵀ down the patch's columns, then across its rows into V.
        transform_tiles!(
            V,
            T,
            t,
            i,
            c,
            (s.padded, wp, V::A),
            V::input,
            (s.v, stride_k)
        );
    }
}

/// Whether ReLU then `k x k` max-pooling fuses into the output transform: the windows
/// must not straddle tiles.
pub(crate) fn pools<V: Variant>(k: usize) -> bool {
    k >= 1 && V::M % k == 0
}

/// Where [`forward`] writes: the output (not necessarily written yet), the pooling
/// window `k` with one code per pooled output (see [`forward`]), and whether the output
/// is channels-last.
pub(crate) type Destination<'a, T> = (
    &'a mut [MaybeUninit<T>],
    (usize, &'a mut [MaybeUninit<u8>]),
    bool,
);

/// Forward convolution of a contiguous batch with bias and ReLU fused into the output
/// transform; `out` is `N x C_out x ho x wo`, or `N x ho x wo x C_out` when
/// `channels_last`, and every one of its values is written (as is every code), so it
/// may come from [`super::kernels::unwritten`]. With `pool.0 = k > 1` (see [`pools`];
/// `relu` set) the output is also max-pooled over `k x k` windows, `out` is `N x C_out x ho/k x wo/k` (or
/// channels-last) and `pool.1` gets each window's first maximum as the offset
/// `dy * k + dx` (one byte per output, in the output's order; empty when `k == 1`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<V: Variant, T: Elem>(
    g: &Geometry,
    x: Source<'_, T>,
    w: &[T],
    bias: Option<&[T]>,
    relu: bool,
    (out, pool, channels_last): Destination<'_, T>,
    per_thread: usize,
    par: Parallelism,
) {
    use rayon::prelude::*;
    let t = Tiling::new::<V>(g);
    let u = transform_kernels::<V, T>(g, w);
    let round = images_per_round(t.per_image()).min(per_thread);
    let zero = vec![T::ZERO; g.c_out];
    let bias = bias.unwrap_or(&zero);
    let (k, codes) = pool;
    debug_assert!(k == 1 || (relu && pools::<V>(k) && g.ho % k == 0 && g.wo % k == 0));
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
                let x = x.images(g.in_len(), r * round, round);
                let images = x.count(g.in_len());
                let codes = if k > 1 {
                    &mut codes[r * round * out_len..][..images * out_len]
                } else {
                    &mut []
                };
                let args = (g, &t, &mut s, &u[..], x, images, bias, relu, k);
                simd::forward_round::<V, T>(args, (out, codes, channels_last), par);
            }
            s.keep();
        });
}

/// One round of the forward pass: transforms, `a²` GEMMs, and the output transform
/// with bias and ReLU, written channels-first or, with `channels_last`, straight into
/// the output.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
// Tiles are read down their columns, which the range loops index.
#[allow(clippy::needless_range_loop)]
// The output transform reads and writes without per-access bounds checks.
#[allow(unsafe_code)]
fn forward_round<V: Variant, T: Elem, const FMA: bool>(
    g: &Geometry,
    t: &Tiling,
    s: &mut Scratch<T>,
    u: &[T],
    x: Source<'_, T>,
    images: usize,
    bias: &[T],
    relu: bool,
    pool: usize,
    (out, codes, channels_last): (&mut [MaybeUninit<T>], &mut [MaybeUninit<u8>], bool),
    par: Parallelism,
) {
    let a2 = V::A * V::A;
    let tiles = images * t.per_image();
    transform_inputs::<V, T>(g, t, s, x, images);
    let (v_k, m_k, u_k) = (
        plane(tiles, g.c_in),
        plane(tiles, g.c_out),
        g.c_out * g.c_in,
    );
    // M[k] (tiles x C_out) = V[k] (tiles x C_in) · U[k] (C_in x C_out).
    let product = |(k, m): (usize, &mut [T])| {
        small_gemm::<T, FMA>(
            (tiles, g.c_out, g.c_in),
            (&s.v[k * v_k..k * v_k + tiles * g.c_in], g.c_in, 1),
            (&u[k * u_k..(k + 1) * u_k], g.c_out),
            (&mut m[..tiles * g.c_out], g.c_out),
            false,
        )
    };
    each_plane(&mut s.m[..a2 * m_k], m_k, par, product);
    let c = g.c_out;
    let k = pool;
    // The (pooled) output plane.
    let (ph, pw) = (g.ho / k, g.wo / k);
    let mut half = [[Lanes::<T>::ZERO; MAX_A]; MAX_A];
    let mut full = [[Lanes::<T>::ZERO; MAX_A]; MAX_A];
    // Every tile, row and column index below stays inside these two bounds (tile <
    // tiles, output pixels inside the output), which replace per-access checks.
    assert!(
        c % LANES == 0
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
                for c0 in (0..c).step_by(LANES) {
                    // Aᵀ down the columns of the transformed tile, then across rows.
                    for col in 0..V::A {
                        let mut d = [Lanes::<T>::ZERO; MAX_A];
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
                            let mut at = [0u8; LANES];
                            for d in 1..k * k {
                                let v = full[py * k + d / k][px * k + d % k];
                                for l in 0..LANES {
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
                                let to = &mut codes[p * c + c0..p * c + c0 + LANES];
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

/// The rounds compiled for AVX2 and FMA when the CPU has them (the build targets the
/// x86-64 baseline, where the transforms' eight-lane arithmetic would run on SSE2).
mod simd {
    use super::{Elem, Geometry, MaybeUninit, Parallelism, Scratch, Source, Tiling, Variant};

    /// `forward_round`'s inputs, less the output and the pooling record.
    pub(super) type ForwardArgs<'a, T> = (
        &'a Geometry,
        &'a Tiling,
        &'a mut Scratch<T>,
        &'a [T],
        Source<'a, T>,
        usize,
        &'a [T],
        bool,
        usize,
    );

    /// `weight_round`'s inputs, less the accumulator.
    pub(super) type WeightArgs<'a, T> = (
        &'a Geometry,
        &'a Tiling,
        &'a mut Scratch<T>,
        Source<'a, T>,
        Source<'a, T>,
        usize,
    );

    #[cfg(target_arch = "x86_64")]
    fn has_avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// `pub(super) fn $name(args, out, par)`, which runs `$body` compiled for AVX2+FMA
    /// (in `$avx`) when the CPU has them and for the build's baseline otherwise.
    macro_rules! dispatched {
        ($name:ident, $avx:ident, $args:ident, |$a:ident, $o:ident: $oty:ty, $p:ident| $body:expr) => {
            pub(super) fn $name<V: Variant, T: Elem>($a: $args<'_, T>, $o: $oty, $p: Parallelism) {
                const FMA: bool = false;
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above), the
                    // only requirement of a `target_feature` function.
                    #[allow(unsafe_code)]
                    unsafe {
                        $avx::<V, T>($a, $o, $p)
                    };
                    return;
                }
                $body
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(unsafe_code)]
            unsafe fn $avx<V: Variant, T: Elem>($a: $args<'_, T>, $o: $oty, $p: Parallelism) {
                const FMA: bool = true;
                $body
            }
        };
    }

    dispatched!(
        forward_round,
        forward_avx2,
        ForwardArgs,
        |a, out: (&mut [MaybeUninit<T>], &mut [MaybeUninit<u8>], bool), par| {
            super::forward_round::<V, T, FMA>(a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7, a.8, out, par)
        }
    );

    dispatched!(
        weight_round,
        weight_avx2,
        WeightArgs,
        |a, du: &mut [T], par| {
            super::weight_round::<V, T, FMA>(a.0, a.1, a.2, a.3, a.4, a.5, du, par)
        }
    );
}

/// Adds the weight gradient of `x` (`images` images) and their output gradient `gy`
/// into `du` (`a² x C_out x C_in`, transformed), and the bias gradient (the output
/// gradient summed per channel) into the `C_out` values after it.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
// Tiles are read down their columns, which the range loops index.
#[allow(clippy::needless_range_loop)]
// transform_tiles! reads and writes without per-access bounds checks.
#[allow(unsafe_code)]
fn weight_round<V: Variant, T: Elem, const FMA: bool>(
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
    transform_inputs::<V, T>(g, t, s, x, images);
    let c = g.c_out;
    let m_k = plane(tiles, c);
    // The output gradient, channels-last and zero past the output's last row and
    // column, so every tile reads a full `m x m` block.
    let wm = t.tw * V::M;
    // Past the output it stays zero: only the output's own pixels are ever written
    // here, and the forward pass, which writes whole tiles, uses its own scratch.
    for i in 0..images {
        let scratch = (&mut s.compact[..], &mut s.masked[..], &mut s.codes[..]);
        gy.fill(i, (c, g.ho, g.wo), wm, (0, 0), scratch, &mut s.grad);
        // The bias gradient from the filled gradient while it is in cache (the columns
        // past the output add zeros).
        let db = &mut du[a2 * g.c_out * g.c_in..][..c];
        for pixel in s.grad[..g.ho * wm * c].chunks_exact(c) {
            for (d, &v) in db.iter_mut().zip(pixel) {
                *d += v;
            }
        }
        // A down the columns of each gradient tile, then across its rows into M.
        transform_tiles!(V, T, t, i, c, (s.grad, wm, V::M), V::output_t, (s.m, m_k));
    }
    let (v_k, u_k) = (plane(tiles, g.c_in), g.c_out * g.c_in);
    // dU[k] (C_out x C_in) += dM[k]ᵀ (C_out x tiles) · V[k] (tiles x C_in).
    let product = |(k, du): (usize, &mut [T])| {
        small_gemm::<T, FMA>(
            (g.c_out, g.c_in, tiles),
            (&s.m[k * m_k..k * m_k + tiles * g.c_out], 1, g.c_out),
            (&s.v[k * v_k..k * v_k + tiles * g.c_in], g.c_in),
            (du, g.c_in),
            true,
        )
    };
    each_plane(&mut du[..a2 * u_k], u_k, par, product);
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
    let round = images_per_round(t.per_image());
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
    let dw = &mut dw[..9 * block];
    dw.par_chunks_mut(9 * PAIRS)
        .enumerate()
        .for_each(|(chunk, dw)| {
            for (i, taps) in dw.chunks_exact_mut(9 * LANES).enumerate() {
                let first = chunk * PAIRS + i * LANES;
                let mut src = [Lanes::<T>::ZERO; MAX_A * MAX_A];
                for ky in 0..V::A {
                    for kx in 0..V::A {
                        src[ky * MAX_A + kx] = load(du, (ky * V::A + kx) * block + first);
                    }
                }
                let t = both(&src, V::A, 3, V::kernel_t);
                for r in 0..3 {
                    for c in 0..3 {
                        for (l, &v) in t[r * MAX_A + c].0.iter().enumerate() {
                            taps[l * 9 + r * 3 + c] = v;
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense matrix of a one-dimensional map, column by column.
    fn matrix(f: impl Fn(Row<f64>) -> Row<f64>, n_in: usize, n_out: usize) -> Vec<Vec<f64>> {
        let mut m = vec![vec![0.0; n_in]; n_out];
        for j in 0..n_in {
            let mut e = [0.0; MAX_A];
            e[j] = 1.0;
            let col = f(e);
            for (i, row) in m.iter_mut().enumerate() {
                row[j] = col[i];
            }
        }
        m
    }

    fn transposes_agree<V: Variant>() {
        let a = matrix(V::output, V::A, V::M);
        let at = matrix(V::output_t, V::M, V::A);
        let g = matrix(V::kernel, 3, V::A);
        let gt = matrix(V::kernel_t, V::A, 3);
        for i in 0..V::M {
            for j in 0..V::A {
                assert_eq!(a[i][j], at[j][i], "output transpose ({i}, {j})");
            }
        }
        for i in 0..V::A {
            for j in 0..3 {
                assert!((g[i][j] - gt[j][i]).abs() < 1e-15, "kernel transpose");
            }
        }
    }

    /// The one-dimensional identity `Aᵀ[(G g) ⊙ (Bᵀ d)] = correlation of d with g`.
    fn computes_correlation<V: Variant>() {
        let d: Vec<f64> = (0..V::A).map(|i| (i as f64 * 0.37).sin() + 0.2).collect();
        let g = [0.3, -1.1, 0.7];
        let mut dv = [0.0; MAX_A];
        dv[..V::A].copy_from_slice(&d);
        let mut gv = [0.0; MAX_A];
        gv[..3].copy_from_slice(&g);
        let (bd, gg) = (V::input(dv), V::kernel(gv));
        let mut prod = [0.0; MAX_A];
        for i in 0..V::A {
            prod[i] = bd[i] * gg[i];
        }
        let y = V::output(prod);
        for i in 0..V::M {
            let direct: f64 = (0..3).map(|j| d[i + j] * g[j]).sum();
            assert!(
                (y[i] - direct).abs() < 1e-13,
                "output {i}: {} vs {direct}",
                y[i]
            );
        }
    }

    /// `small_gemm` against the triple loop: every row remainder of its 6-row blocks,
    /// 8- and 16-column blocks, both operand layouts the rounds use, overwrite and
    /// accumulate, with and without fused multiply-adds.
    #[test]
    fn small_gemm_matches_the_triple_loop() {
        let val = |i: usize| ((i * 37 % 101) as f64 - 50.0) / 25.0;
        for m in [1, 5, 6, 7, 12, 17] {
            for n in [8, 16, 24, 40] {
                for k in [1, 3, 16] {
                    // Row-major A (the forward pass) and column-major A (the weight
                    // gradient), each inside a longer buffer.
                    for (ars, aks) in [(k + 2, 1), (1, m + 3)] {
                        let a: Vec<f64> = (0..(m - 1) * ars + (k - 1) * aks + 1).map(val).collect();
                        let ldb = n + 8;
                        let b: Vec<f64> = (0..k * ldb).map(|i| val(i + 7)).collect();
                        for accumulate in [false, true] {
                            let ldc = n + 8;
                            let c0: Vec<f64> = (0..m * ldc).map(|i| val(i + 3)).collect();
                            let mut want = c0.clone();
                            for r in 0..m {
                                for j in 0..n {
                                    let dot: f64 =
                                        (0..k).map(|p| a[r * ars + p * aks] * b[p * ldb + j]).sum();
                                    let base = if accumulate { c0[r * ldc + j] } else { 0.0 };
                                    want[r * ldc + j] = base + dot;
                                }
                            }
                            let mut c = c0.clone();
                            let args = ((m, n, k), (&a[..], ars, aks), (&b[..], ldb));
                            small_gemm::<f64, false>(
                                args.0,
                                args.1,
                                args.2,
                                (&mut c, ldc),
                                accumulate,
                            );
                            let mut cf = c0.clone();
                            small_gemm::<f64, true>(
                                args.0,
                                args.1,
                                args.2,
                                (&mut cf, ldc),
                                accumulate,
                            );
                            for (i, ((&x, &y), &w)) in c.iter().zip(&cf).zip(&want).enumerate() {
                                let what = format!(
                                    "m {m} n {n} k {k} a ({ars}, {aks}) acc {accumulate} at {i}"
                                );
                                assert!((x - w).abs() < 1e-12, "{what}: {x} vs {w}");
                                assert!((y - w).abs() < 1e-12, "{what} (fma): {y} vs {w}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f4_transforms_are_consistent() {
        transposes_agree::<F4>();
        computes_correlation::<F4>();
    }

    #[test]
    fn f5_transforms_are_consistent() {
        transposes_agree::<F5>();
        computes_correlation::<F5>();
    }

    #[test]
    fn f5_is_chosen_where_it_needs_fewer_multiplies() {
        // 14 x 14: 9 tiles of 49 against 16 of 36; 28 x 28: a tie; 7 x 7: 4 of 49
        // against 4 of 36.
        assert!(prefers_f5(14, 14));
        assert!(!prefers_f5(28, 28));
        assert!(!prefers_f5(7, 7));
        assert!(prefers_f5(10, 10));
    }
}
