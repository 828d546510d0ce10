//! A layer with one input channel on a channels-last batch (GapCnn's conv1; the oracle
//! and the SVAE run channels-first), directly: the forward pass and the weight
//! gradient, the output channels in registers.
//!
//! im2col and a GEMM per image is a poor fit for such a layer: its products are
//! `Ho*Wo x k² x C_out` with `k² = 9` on one side, and the weight gradient's
//! `C_out x Ho*Wo` by `Ho*Wo x k²` writes a 9-column result, where the GEMM kernels run
//! a fraction of their rate (about 5 % of GapCnn's training step went there). Here each
//! output pixel's `C_out` values are eight or sixteen lanes at a time: the forward pass
//! sums `k²` taps of the zero-padded image, broadcast, times the kernel's lanes; the
//! weight gradient keeps `k² + 1` accumulators (the taps and the bias) in registers over
//! the whole image and adds them to the caller's sums once per image.
//!
//! f32 runs on AVX-512 or AVX2+FMA registers where the CPU has them (`vector`), f64 and
//! the baseline on generic code. Each value is the same chain of operations on every
//! instruction set with FMA (multiply-adds with one rounding, in the same order), so
//! those agree to the bit; the baseline rounds each multiply-add twice.

use std::mem::MaybeUninit;

#[cfg(target_arch = "x86_64")]
use crate::kernels::{as_f32, as_f32_mut};
use crate::kernels::{relu_grad, Elem, Geometry};
use crate::options::{Activation, BatchLayout};

/// Whether the direct path runs `g` on a batch in `layout`: channels-last, one input
/// channel, a square kernel of 1 to 5 taps a side, and output channels in whole groups
/// of eight lanes.
pub(crate) fn applies(g: &Geometry, layout: BatchLayout) -> bool {
    layout.is_channels_last()
        && g.c_in == 1
        && (1..=MAX_K).contains(&g.k)
        && g.c_out > 0
        && g.c_out.is_multiple_of(8)
}

/// The largest kernel side the direct path is built for.
const MAX_K: usize = 5;

/// The forward pass of `images` (each `H x W`, one channel) into `out` (each image
/// `Ho*Wo x C_out`): `act(conv(x, w) + b)`, `act` ReLU or the identity; `w` is
/// `C_out x 1 x k x k`.
///
/// Panics if `g` is not one [`applies`] takes, the activation is ELU, or a slice is
/// not the length `g` says.
pub(crate) fn forward<T: Elem>(
    g: &Geometry,
    images: &[T],
    (w, bias): (&[T], Option<&[T]>),
    activation: Activation,
    out: &mut [MaybeUninit<T>],
) {
    assert!(
        applies(g, BatchLayout::ChannelsLast) && activation != Activation::Elu,
        "one-channel forward: not a layer of this path"
    );
    assert!(
        images.len().is_multiple_of(g.in_len())
            && out.len() == images.len() / g.in_len() * g.out_len()
            && w.len() == g.c_out * g.k * g.k
            && bias.is_none_or(|b| b.len() == g.c_out),
        "one-channel forward: a slice has the wrong length"
    );
    let relu = activation.is_relu();
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::SimdPath;
        let path = crate::kernels::simd_path();
        if path != SimdPath::Baseline {
            if let (Some(images), Some(w), Some(out)) = (as_f32(images), as_f32(w), as_f32_out(out))
            {
                let bias = bias.map(|b| as_f32(b).expect("the bias has the input's type"));
                let wide = path == SimdPath::Avx512 && g.c_out.is_multiple_of(16);
                // SAFETY (both arms): `simd_path` returns a path other than the
                // baseline only when `is_x86_feature_detected!` found AVX2 and FMA (and
                // AVX-512 F and VL for that path) on this CPU.
                #[allow(unsafe_code)]
                unsafe {
                    if wide {
                        vector::zmm::forward(g, images, (w, bias), relu, out)
                    } else {
                        vector::ymm::forward(g, images, (w, bias), relu, out)
                    }
                };
                return;
            }
            // SAFETY: as above, AVX2 and FMA are there.
            #[allow(unsafe_code)]
            unsafe {
                forward_fma(g, images, (w, bias), relu, out)
            };
            return;
        }
    }
    by_side!(forward_k, false, g.k, (g, images, (w, bias), relu, out));
}

/// Adds the weight and bias gradients of `images` (each `H x W`) to `acc`, flat
/// `dW | db` (`C_out x 1 x k x k`, then `C_out`), from the output gradients `gy`
/// (each image `Ho*Wo x C_out`), through ReLU's mask where `y` (the layer's output) is
/// given.
///
/// Panics if `g` is not one [`applies`] takes or a slice is not the length `g` says.
pub(crate) fn weight_grad<T: Elem>(
    g: &Geometry,
    images: &[T],
    (gy, y): (&[T], Option<&[T]>),
    acc: &mut [T],
) {
    assert!(
        applies(g, BatchLayout::ChannelsLast),
        "one-channel weight gradient: not a layer of this path"
    );
    let n = images.len() / g.in_len().max(1);
    assert!(
        images.len() == n * g.in_len()
            && gy.len() == n * g.out_len()
            && y.is_none_or(|y| y.len() == gy.len())
            && acc.len() == g.c_out * g.k * g.k + g.c_out,
        "one-channel weight gradient: a slice has the wrong length"
    );
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::SimdPath;
        let path = crate::kernels::simd_path();
        if path != SimdPath::Baseline {
            if let (Some(images), Some(gy), Some(acc)) =
                (as_f32(images), as_f32(gy), as_f32_mut(acc))
            {
                let y = y.map(|y| as_f32(y).expect("the output has the input's type"));
                let wide = path == SimdPath::Avx512 && g.c_out.is_multiple_of(16);
                // SAFETY: as in `forward`.
                #[allow(unsafe_code)]
                unsafe {
                    if wide {
                        vector::zmm::weight_grad(g, images, (gy, y), acc)
                    } else {
                        vector::ymm::weight_grad(g, images, (gy, y), acc)
                    }
                };
                return;
            }
            // SAFETY: as in `forward`.
            #[allow(unsafe_code)]
            unsafe {
                weight_grad_fma(g, images, (gy, y), acc)
            };
            return;
        }
    }
    by_side!(weight_grad_k, false, g.k, (g, images, (gy, y), acc));
}

/// Whether [`input_grad`] runs `g` on a batch in `layout`: a layer [`applies`] takes,
/// at stride 1 with less padding than the kernel side (the input gradient is then the
/// convolution of the output gradient with the flipped kernel).
pub(crate) fn applies_input_grad(g: &Geometry, layout: BatchLayout) -> bool {
    applies(g, layout) && g.stride == 1 && g.pad < g.k
}

/// The input gradient of `gy` (each image `Ho*Wo x C_out`) into `dx` (each image
/// `H x W`): `dx[i, j] = Σ_taps Σ_c w[c, k-1-ky, k-1-kx] gy[i + ky - q, j + kx - q, c]`
/// with `q = k - 1 - pad` and the gradient zero outside its image.
///
/// Each pixel's sum runs in a fixed order on every path: per group of eight channels
/// a multiply-add chain over the taps (row by row), the groups added in turn, then
/// the eight lanes as `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
///
/// Panics if `g` is not one [`applies_input_grad`] takes or a slice is not the length
/// `g` says.
pub(crate) fn input_grad<T: Elem>(g: &Geometry, gy: &[T], w: &[T], dx: &mut [MaybeUninit<T>]) {
    assert!(
        applies_input_grad(g, BatchLayout::ChannelsLast),
        "one-channel input gradient: not a layer of this path"
    );
    let n = dx.len() / g.in_len().max(1);
    assert!(
        dx.len() == n * g.in_len() && gy.len() == n * g.out_len() && w.len() == g.c_out * g.k * g.k,
        "one-channel input gradient: a slice has the wrong length"
    );
    let flipped = flipped_taps(g, w);
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::SimdPath;
        let path = crate::kernels::simd_path();
        if path != SimdPath::Baseline {
            if let (Some(gy), Some(wf), Some(dx)) = (as_f32(gy), as_f32(&flipped), as_f32_out(dx)) {
                let wide = path == SimdPath::Avx512 && g.c_out.is_multiple_of(16);
                // SAFETY: as in `forward`.
                #[allow(unsafe_code)]
                unsafe {
                    if wide {
                        vector::input_grad_zmm(g, gy, wf, dx)
                    } else {
                        vector::input_grad_ymm(g, gy, wf, dx)
                    }
                };
                return;
            }
            // SAFETY: as in `forward`.
            #[allow(unsafe_code)]
            unsafe {
                input_grad_fma(g, gy, &flipped, dx)
            };
            return;
        }
    }
    input_grad_any::<T, false>(g, gy, &flipped, dx);
}

/// The kernel flipped in space, tap-major: `C_out` values for tap `(ky, kx)` at
/// `(ky * k + kx) * C_out`, from `w[c, k-1-ky, k-1-kx]`.
fn flipped_taps<T: Elem>(g: &Geometry, w: &[T]) -> Vec<T> {
    let (k, c) = (g.k, g.c_out);
    let mut out = vec![T::ZERO; k * k * c];
    for co in 0..c {
        for t in 0..k * k {
            out[(k * k - 1 - t) * c + co] = w[co * k * k + t];
        }
    }
    out
}

/// One image's output gradient, channels-last, zero-padded by `q` on every side into
/// `plane` (`(Ho + 2q) x (Wo + 2q) x C_out`); returns the padded row length in pixels.
/// The plane is zeroed when it is first sized; after that only its interior is
/// written, so the border stays zero from image to image.
#[inline(always)]
fn pad_gradient<T: Copy>(g: &Geometry, gy: &[T], plane: &mut Vec<T>, zero: T) -> usize {
    let q = g.k - 1 - g.pad;
    let (hp, wp, c) = (g.ho + 2 * q, g.wo + 2 * q, g.c_out);
    if plane.len() != hp * wp * c {
        plane.clear();
        plane.resize(hp * wp * c, zero);
    }
    for (r, row) in gy.chunks_exact(g.wo * c).enumerate() {
        let at = ((r + q) * wp + q) * c;
        plane[at..at + g.wo * c].copy_from_slice(row);
    }
    wp
}

/// The eight lanes' sum in [`input_grad`]'s order.
#[inline(always)]
fn sum8<T: Elem>(v: [T; 8]) -> T {
    let a = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    let b = [a[0] + a[2], a[1] + a[3]];
    b[0] + b[1]
}

/// The generic input gradient with fused multiply-adds (f64 on the AVX paths).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
unsafe fn input_grad_fma<T: Elem>(g: &Geometry, gy: &[T], wf: &[T], dx: &mut [MaybeUninit<T>]) {
    input_grad_any::<T, true>(g, gy, wf, dx);
}

#[allow(clippy::needless_range_loop)] // index loops on purpose, see `forward_k`
#[inline(always)]
fn input_grad_any<T: Elem, const FMA: bool>(
    g: &Geometry,
    gy: &[T],
    wf: &[T],
    dx: &mut [MaybeUninit<T>],
) {
    let (k, c) = (g.k, g.c_out);
    let mut plane = Vec::new();
    for (gy, dx) in gy
        .chunks_exact(g.out_len())
        .zip(dx.chunks_exact_mut(g.in_len()))
    {
        let wp = pad_gradient(g, gy, &mut plane, T::ZERO);
        for i in 0..g.h {
            for j in 0..g.w {
                let mut total = [T::ZERO; L];
                for cb in (0..c).step_by(L) {
                    let mut acc = [T::ZERO; L];
                    for ky in 0..k {
                        for kx in 0..k {
                            let d = &plane[((i + ky) * wp + j + kx) * c + cb..][..L];
                            let w = &wf[(ky * k + kx) * c + cb..][..L];
                            for l in 0..L {
                                acc[l] = mul_add::<T, FMA>(w[l], d[l], acc[l]);
                            }
                        }
                    }
                    for l in 0..L {
                        total[l] = if cb == 0 { acc[l] } else { total[l] + acc[l] };
                    }
                }
                dx[i * g.w + j] = MaybeUninit::new(sum8([
                    total[0], total[1], total[2], total[3], total[4], total[5], total[6], total[7],
                ]));
            }
        }
    }
}

/// [`as_f32`](crate::kernels::as_f32) for an output buffer.
#[cfg(target_arch = "x86_64")]
fn as_f32_out<T: Elem>(s: &mut [MaybeUninit<T>]) -> Option<&mut [MaybeUninit<f32>]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()).then(|| {
        // SAFETY: `T` is f32, and `MaybeUninit<f32>` has f32's layout.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<MaybeUninit<f32>>(), s.len())
        }
    })
}

/// The generic forward pass with fused multiply-adds (f64 on the AVX paths).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
unsafe fn forward_fma<T: Elem>(
    g: &Geometry,
    images: &[T],
    wb: (&[T], Option<&[T]>),
    relu: bool,
    out: &mut [MaybeUninit<T>],
) {
    by_side!(forward_k, true, g.k, (g, images, wb, relu, out));
}

/// The generic weight gradient with fused multiply-adds (f64 on the AVX paths).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
unsafe fn weight_grad_fma<T: Elem>(
    g: &Geometry,
    images: &[T],
    gy: (&[T], Option<&[T]>),
    acc: &mut [T],
) {
    by_side!(weight_grad_k, true, g.k, (g, images, gy, acc));
}

/// Calls `$f::<T, FMA, K>($args)` for the kernel side `$k` (1 to [`MAX_K`]).
macro_rules! by_side {
    ($f:ident, $fma:literal, $k:expr, $args:expr) => {
        match $k {
            1 => $f::<_, $fma, 1>($args),
            2 => $f::<_, $fma, 2>($args),
            3 => $f::<_, $fma, 3>($args),
            4 => $f::<_, $fma, 4>($args),
            _ => $f::<_, $fma, 5>($args),
        }
    };
}
use by_side;

/// Lanes of the generic code: eight values, which compilers keep in vector registers.
const L: usize = 8;

/// `a * b + c`, with one rounding where the build has FMA.
#[inline(always)]
fn mul_add<T: Elem, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.fused_mul_add(b, c)
    } else {
        a * b + c
    }
}

/// One image into the interior of `plane` (`hp x wp`, zero-padded by `g.pad` on every
/// side). Only the interior is written, so a plane that starts zeroed keeps its
/// border from image to image.
#[inline(always)]
fn pad_image<T: Copy>(g: &Geometry, image: &[T], plane: &mut [T], wp: usize) {
    for (r, row) in image.chunks_exact(g.w).enumerate() {
        let at = (r + g.pad) * wp + g.pad;
        plane[at..at + g.w].copy_from_slice(row);
    }
}

/// The padded plane's sides: `(hp, wp)`.
fn padded(g: &Geometry) -> (usize, usize) {
    (g.h + 2 * g.pad, g.w + 2 * g.pad)
}

type ForwardArgs<'a, T> = (
    &'a Geometry,
    &'a [T],
    (&'a [T], Option<&'a [T]>),
    bool,
    &'a mut [MaybeUninit<T>],
);

type WeightArgs<'a, T> = (
    &'a Geometry,
    &'a [T],
    (&'a [T], Option<&'a [T]>),
    &'a mut [T],
);

// Index loops below, not iterator adaptors: those are separate generic functions
// that the compiler may keep out of line, without the AVX features of the caller.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn forward_k<T: Elem, const FMA: bool, const K: usize>(
    (g, images, (w, bias), relu, out): ForwardArgs<'_, T>,
) {
    let (hp, wp) = padded(g);
    let mut plane = vec![T::ZERO; hp * wp];
    let c = g.c_out;
    for (image, out) in images
        .chunks_exact(g.in_len())
        .zip(out.chunks_exact_mut(g.out_len()))
    {
        pad_image(g, image, &mut plane, wp);
        for cb in (0..c).step_by(L) {
            for oy in 0..g.ho {
                let top = oy * g.stride * wp;
                for ox in 0..g.wo {
                    let at = top + ox * g.stride;
                    let mut s = [T::ZERO; L];
                    for ky in 0..K {
                        for kx in 0..K {
                            let x = plane[at + ky * wp + kx];
                            for l in 0..L {
                                let w = w[(cb + l) * K * K + ky * K + kx];
                                s[l] = mul_add::<T, FMA>(x, w, s[l]);
                            }
                        }
                    }
                    let o = &mut out[(oy * g.wo + ox) * c + cb..][..L];
                    for l in 0..L {
                        let v = s[l] + bias.map_or(T::ZERO, |b| b[cb + l]);
                        // NaN passes through (it is not <= 0), as in candle's relu.
                        let v = if relu && v <= T::ZERO { T::ZERO } else { v };
                        o[l] = MaybeUninit::new(v);
                    }
                }
            }
        }
    }
}

#[allow(clippy::needless_range_loop)] // index loops on purpose, see `forward_k`
#[inline(always)]
fn weight_grad_k<T: Elem, const FMA: bool, const K: usize>(
    (g, images, (gy, y), acc): WeightArgs<'_, T>,
) {
    let (hp, wp) = padded(g);
    let mut plane = vec![T::ZERO; hp * wp];
    let c = g.c_out;
    let (dw, db) = acc.split_at_mut(c * K * K);
    for (i, image) in images.chunks_exact(g.in_len()).enumerate() {
        pad_image(g, image, &mut plane, wp);
        let gy = &gy[i * g.out_len()..(i + 1) * g.out_len()];
        let y = y.map(|y| &y[i * g.out_len()..(i + 1) * g.out_len()]);
        for cb in (0..c).step_by(L) {
            let mut taps = [[[T::ZERO; L]; K]; K];
            let mut sum = [T::ZERO; L];
            for oy in 0..g.ho {
                let top = oy * g.stride * wp;
                for ox in 0..g.wo {
                    let p = (oy * g.wo + ox) * c + cb;
                    let mut d = [T::ZERO; L];
                    d.copy_from_slice(&gy[p..p + L]);
                    if let Some(y) = y {
                        for l in 0..L {
                            d[l] = relu_grad(d[l], y[p + l]);
                        }
                    }
                    for l in 0..L {
                        sum[l] += d[l];
                    }
                    let at = top + ox * g.stride;
                    for ky in 0..K {
                        for kx in 0..K {
                            let x = plane[at + ky * wp + kx];
                            for l in 0..L {
                                taps[ky][kx][l] = mul_add::<T, FMA>(x, d[l], taps[ky][kx][l]);
                            }
                        }
                    }
                }
            }
            for l in 0..L {
                for ky in 0..K {
                    for kx in 0..K {
                        dw[(cb + l) * K * K + ky * K + kx] += taps[ky][kx][l];
                    }
                }
                db[cb + l] += sum[l];
            }
        }
    }
}

/// The f32 kernels on AVX-512 (`zmm`, sixteen lanes) and AVX2+FMA (`ymm`, eight)
/// registers: the generic code's operations, lane by lane, in the same order.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod vector {
    /// Calls `$f::<K>($args)` (an unsafe function) for the kernel side `$k` (1 to
    /// [`super::MAX_K`]).
    macro_rules! by_k {
        ($f:ident, $k:expr, $args:expr) => {
            match $k {
                1 => unsafe { $f::<1>($args) },
                2 => unsafe { $f::<2>($args) },
                3 => unsafe { $f::<3>($args) },
                4 => unsafe { $f::<4>($args) },
                _ => unsafe { $f::<5>($args) },
            }
        };
    }
    /// `pub(super) mod $name` with `forward` and `weight_grad` on the register type
    /// `$reg` of `$lanes` f32, compiled for `$features`, from its intrinsics.
    macro_rules! kernels {
        (
            $name:ident, $features:literal, $reg:ty, $lanes:literal,
            zero: $zero:ident, splat: $splat:ident, load: $load:ident, store: $store:ident,
            fmadd: $fmadd:ident, add: $add:ident,
            relu: |$rv:ident, $rz:ident| $relu:expr,
            relu_grad: |$gd:ident, $gy:ident, $gz:ident| $relu_grad:expr
        ) => {
            pub(super) mod $name {
                use std::arch::x86_64::*;
                use std::mem::MaybeUninit;

                use super::super::{pad_image, padded};
                use crate::kernels::Geometry;

                const LANES: usize = $lanes;

                /// [`super::super::forward`] on f32, `C_out` a multiple of the lanes.
                ///
                /// # Safety
                /// The CPU has `$features`.
                #[target_feature(enable = $features)]
                pub(crate) unsafe fn forward(
                    g: &Geometry,
                    images: &[f32],
                    wb: (&[f32], Option<&[f32]>),
                    relu: bool,
                    out: &mut [MaybeUninit<f32>],
                ) {
                    assert!(
                        g.c_out.is_multiple_of(LANES),
                        "one-channel: channels not in lanes"
                    );
                    let args = (g, images, wb, relu, out);
                    by_k!(forward_k, g.k, args)
                }

                /// [`super::super::weight_grad`] on f32, `C_out` a multiple of the
                /// lanes.
                ///
                /// # Safety
                /// The CPU has `$features`.
                #[target_feature(enable = $features)]
                pub(crate) unsafe fn weight_grad(
                    g: &Geometry,
                    images: &[f32],
                    gy: (&[f32], Option<&[f32]>),
                    acc: &mut [f32],
                ) {
                    assert!(
                        g.c_out.is_multiple_of(LANES),
                        "one-channel: channels not in lanes"
                    );
                    let args = (g, images, gy, acc);
                    by_k!(weight_grad_k, g.k, args)
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn forward_k<const K: usize>(
                    (g, images, (w, bias), relu, out): (
                        &Geometry,
                        &[f32],
                        (&[f32], Option<&[f32]>),
                        bool,
                        &mut [MaybeUninit<f32>],
                    ),
                ) {
                    let (hp, wp) = padded(g);
                    let mut plane = vec![0f32; hp * wp];
                    let c = g.c_out;
                    for (image, out) in images
                        .chunks_exact(g.in_len())
                        .zip(out.chunks_exact_mut(g.out_len()))
                    {
                        pad_image(g, image, &mut plane, wp);
                        for cb in (0..c).step_by(LANES) {
                            // This block's kernel lanes, tap by tap, and its bias.
                            let mut wv = [[$zero(); K]; K];
                            let mut lane = [0f32; LANES];
                            for ky in 0..K {
                                for kx in 0..K {
                                    for (l, v) in lane.iter_mut().enumerate() {
                                        *v = w[(cb + l) * K * K + ky * K + kx];
                                    }
                                    // SAFETY: `lane` holds the register's lanes.
                                    wv[ky][kx] = unsafe { $load(lane.as_ptr()) };
                                }
                            }
                            let bv = match bias {
                                // SAFETY: `cb + LANES <= C_out`, the bias's length.
                                Some(b) => unsafe { $load(b[cb..cb + LANES].as_ptr()) },
                                None => $zero(),
                            };
                            for oy in 0..g.ho {
                                let top = oy * g.stride * wp;
                                let row =
                                    &plane[top..top + (K - 1) * wp + (g.wo - 1) * g.stride + K];
                                let orow = &mut out[oy * g.wo * c..(oy + 1) * g.wo * c];
                                for ox in 0..g.wo {
                                    let at = ox * g.stride;
                                    let mut s = $zero();
                                    for ky in 0..K {
                                        for kx in 0..K {
                                            let x = $splat(row[at + ky * wp + kx]);
                                            s = $fmadd(x, wv[ky][kx], s);
                                        }
                                    }
                                    let $rv = $add(s, bv);
                                    let $rz = $zero();
                                    let v = if relu { $relu } else { $rv };
                                    let o = &mut orow[ox * c + cb..ox * c + cb + LANES];
                                    // SAFETY: `o` holds the register's lanes.
                                    unsafe { $store(o.as_mut_ptr().cast::<f32>(), v) };
                                }
                            }
                        }
                    }
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn weight_grad_k<const K: usize>(
                    (g, images, (gy, y), acc): (
                        &Geometry,
                        &[f32],
                        (&[f32], Option<&[f32]>),
                        &mut [f32],
                    ),
                ) {
                    let (hp, wp) = padded(g);
                    let mut plane = vec![0f32; hp * wp];
                    let c = g.c_out;
                    let (dw, db) = acc.split_at_mut(c * K * K);
                    for (i, image) in images.chunks_exact(g.in_len()).enumerate() {
                        pad_image(g, image, &mut plane, wp);
                        let gy = &gy[i * g.out_len()..(i + 1) * g.out_len()];
                        let y = y.map(|y| &y[i * g.out_len()..(i + 1) * g.out_len()]);
                        for cb in (0..c).step_by(LANES) {
                            let mut taps = [[$zero(); K]; K];
                            let mut sum = $zero();
                            for oy in 0..g.ho {
                                let top = oy * g.stride * wp;
                                let row =
                                    &plane[top..top + (K - 1) * wp + (g.wo - 1) * g.stride + K];
                                for ox in 0..g.wo {
                                    let p = (oy * g.wo + ox) * c + cb;
                                    // SAFETY: `p + LANES <= Ho*Wo*C_out`, the image's
                                    // gradient (and output) length.
                                    let $gd = unsafe { $load(gy[p..p + LANES].as_ptr()) };
                                    let d = match y {
                                        Some(y) => {
                                            // SAFETY: as above.
                                            let $gy = unsafe { $load(y[p..p + LANES].as_ptr()) };
                                            let $gz = $zero();
                                            $relu_grad
                                        }
                                        None => $gd,
                                    };
                                    sum = $add(sum, d);
                                    let at = ox * g.stride;
                                    for ky in 0..K {
                                        for kx in 0..K {
                                            let x = $splat(row[at + ky * wp + kx]);
                                            taps[ky][kx] = $fmadd(x, d, taps[ky][kx]);
                                        }
                                    }
                                }
                            }
                            let mut lane = [0f32; LANES];
                            for ky in 0..K {
                                for kx in 0..K {
                                    // SAFETY: `lane` holds the register's lanes.
                                    unsafe { $store(lane.as_mut_ptr(), taps[ky][kx]) };
                                    for (l, &v) in lane.iter().enumerate() {
                                        dw[(cb + l) * K * K + ky * K + kx] += v;
                                    }
                                }
                            }
                            // SAFETY: as above.
                            unsafe { $store(lane.as_mut_ptr(), sum) };
                            for (d, &v) in db[cb..cb + LANES].iter_mut().zip(&lane) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        };
    }

    kernels!(
        zmm, "avx512f,avx512vl,avx2,fma", __m512, 16,
        zero: _mm512_setzero_ps, splat: _mm512_set1_ps, load: _mm512_loadu_ps,
        store: _mm512_storeu_ps, fmadd: _mm512_fmadd_ps, add: _mm512_add_ps,
        // Zero where `v <= 0` (ordered: NaN passes through, as in candle's relu).
        relu: |v, z| _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, z), z),
        // `d` where `y > 0` (ordered: not where `y` is NaN), zero elsewhere.
        relu_grad: |d, y, z| _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(y, z), d)
    );

    kernels!(
        ymm, "avx2,fma", __m256, 8,
        zero: _mm256_setzero_ps, splat: _mm256_set1_ps, load: _mm256_loadu_ps,
        store: _mm256_storeu_ps, fmadd: _mm256_fmadd_ps, add: _mm256_add_ps,
        relu: |v, z| _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(v, z), v),
        relu_grad: |d, y, z| _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(y, z), d)
    );

    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::pad_gradient;
    use crate::kernels::Geometry;

    /// The lanes' sum of an eight-lane register in [`super::input_grad`]'s order.
    ///
    /// # Safety
    /// The CPU has AVX.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn sum8(v: __m256) -> f32 {
        // (l0 + l4, l1 + l5, l2 + l6, l3 + l7)
        let a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        // (a0 + a2, a1 + a3, ..)
        let b = _mm_add_ps(a, _mm_movehl_ps(a, a));
        _mm_cvtss_f32(_mm_add_ss(b, _mm_shuffle_ps::<1>(b, b)))
    }

    /// Pixels of a row whose sums run side by side (independent multiply-add chains).
    const PIXELS: usize = 4;

    /// `$name(g, gy, wf, dx)`: [`super::input_grad`] on f32 in registers of `$lanes`
    /// lanes, compiled for `$features`; `$group(acc) -> __m256` gives a register's
    /// groups of eight channels summed in turn onto a running total (`None` at the
    /// first group), as the eight-lane build adds them, so every build gives the same
    /// bits.
    macro_rules! input_grad_kernel {
        (
            $name:ident, $inner:ident, $pixels:ident, $features:literal, $reg:ty, $lanes:literal,
            zero: $zero:ident, load: $load:ident, fmadd: $fmadd:ident,
            groups: |$acc:ident, $total:ident| $groups:expr
        ) => {
            /// See [`input_grad_kernel`].
            ///
            /// # Safety
            /// The CPU has the features this is compiled for.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(
                g: &Geometry,
                gy: &[f32],
                wf: &[f32],
                dx: &mut [MaybeUninit<f32>],
            ) {
                assert!(g.c_out.is_multiple_of($lanes) && wf.len() == g.k * g.k * g.c_out);
                let args = (g, gy, wf, dx);
                by_k!($inner, g.k, args)
            }

            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn $inner<const K: usize>(
                (g, gy, wf, dx): (&Geometry, &[f32], &[f32], &mut [MaybeUninit<f32>]),
            ) {
                let mut plane = Vec::new();
                for (gy, dx) in gy
                    .chunks_exact(g.out_len())
                    .zip(dx.chunks_exact_mut(g.in_len()))
                {
                    let wp = pad_gradient(g, gy, &mut plane, 0.0);
                    for i in 0..g.h {
                        // PIXELS at a time, then one at a time at the row's end.
                        let mut j = 0;
                        while j + PIXELS <= g.w {
                            unsafe { $pixels::<K, PIXELS>(g, (&plane, wp), wf, (i, j), dx) };
                            j += PIXELS;
                        }
                        while j < g.w {
                            unsafe { $pixels::<K, 1>(g, (&plane, wp), wf, (i, j), dx) };
                            j += 1;
                        }
                    }
                }
            }

            /// Input pixels `(i, j..j + P)` of one image from its padded gradient
            /// `plane` (rows of `wp` pixels).
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn $pixels<const K: usize, const P: usize>(
                g: &Geometry,
                (plane, wp): (&[f32], usize),
                wf: &[f32],
                (i, j): (usize, usize),
                dx: &mut [MaybeUninit<f32>],
            ) {
                let c = g.c_out;
                let mut totals = [_mm256_setzero_ps(); P];
                for cb in (0..c).step_by($lanes) {
                    let mut accs = [$zero(); P];
                    for ky in 0..K {
                        let row = &plane[((i + ky) * wp + j) * c..][..(P + K - 1) * c];
                        let wrow = &wf[ky * K * c..][..K * c];
                        for kx in 0..K {
                            let at = kx * c + cb;
                            // SAFETY: `at + lanes <= K * C_out`.
                            let w = unsafe { $load(wrow[at..at + $lanes].as_ptr()) };
                            for (q, acc) in accs.iter_mut().enumerate() {
                                let d = &row[q * c + at..q * c + at + $lanes];
                                // SAFETY: `d` holds the register's lanes.
                                *acc = $fmadd(w, unsafe { $load(d.as_ptr()) }, *acc);
                            }
                        }
                    }
                    for (total, &$acc) in totals.iter_mut().zip(&accs) {
                        let $total = (cb > 0).then_some(*total);
                        *total = $groups;
                    }
                }
                for (q, &total) in totals.iter().enumerate() {
                    dx[i * g.w + j + q] = MaybeUninit::new(sum8(total));
                }
            }
        };
    }

    input_grad_kernel!(
        input_grad_ymm, input_grad_ymm_k, input_grad_ymm_pixels, "avx2,fma", __m256, 8,
        zero: _mm256_setzero_ps, load: _mm256_loadu_ps, fmadd: _mm256_fmadd_ps,
        groups: |acc, total| match total {
            None => acc,
            Some(t) => _mm256_add_ps(t, acc),
        }
    );

    input_grad_kernel!(
        input_grad_zmm, input_grad_zmm_k, input_grad_zmm_pixels, "avx512f,avx512vl,avx2,fma", __m512, 16,
        zero: _mm512_setzero_ps, load: _mm512_loadu_ps, fmadd: _mm512_fmadd_ps,
        // The low eight channels, then the high eight.
        groups: |acc, total| {
            let lo = _mm512_castps512_ps256(acc);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
            let t = match total {
                None => lo,
                Some(t) => _mm256_add_ps(t, lo),
            };
            _mm256_add_ps(t, hi)
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Calls `f(o, t, x)` for every output value `o` (its index in a channels-last
    /// batch), every tap `t` of its channel's kernel (its index in `C_out x k x k`), in
    /// order, and the input value under that tap (its index in the batch; `None` in the
    /// zero padding).
    fn each_tap(g: &Geometry, mut f: impl FnMut(usize, usize, Option<usize>)) {
        for i in 0..g.n {
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    for co in 0..g.c_out {
                        let o = i * g.out_len() + (oy * g.wo + ox) * g.c_out + co;
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let (r, c) = (oy * g.stride + ky, ox * g.stride + kx);
                                let inside =
                                    r >= g.pad && c >= g.pad && r - g.pad < g.h && c - g.pad < g.w;
                                let x =
                                    inside.then(|| i * g.in_len() + (r - g.pad) * g.w + c - g.pad);
                                f(o, co * g.k * g.k + ky * g.k + kx, x);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The pre-activation output `conv(x, w) + b`, channels-last, summed tap by tap in
    /// f64.
    fn direct(g: &Geometry, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
        let mut y: Vec<f64> = (0..g.n * g.out_len()).map(|o| b[o % g.c_out]).collect();
        each_tap(g, |o, t, xi| {
            if let Some(xi) = xi {
                y[o] += w[t] * x[xi];
            }
        });
        y
    }

    /// `dW | db` of `sum(gy * conv(x, w) + b)`: each weight's gradient by the linear
    /// map's own definition, the sum over every output of its gradient times the input
    /// value under that tap.
    fn direct_weight_grad(g: &Geometry, x: &[f64], gy: &[f64]) -> Vec<f64> {
        let wlen = g.c_out * g.k * g.k;
        let mut acc = vec![0.0; wlen + g.c_out];
        for (o, &d) in gy.iter().enumerate() {
            acc[wlen + o % g.c_out] += d;
        }
        each_tap(g, |o, t, xi| {
            if let Some(xi) = xi {
                acc[t] += gy[o] * x[xi];
            }
        });
        acc
    }

    fn worst_relative(got: &[f64], exact: &[f64]) -> f64 {
        assert_eq!(got.len(), exact.len());
        let scale = exact.iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(exact)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        err / scale
    }

    /// Every geometry the path takes up to a 5x5 kernel (strides 1-3, padding 0 to
    /// past the kernel, 8 to 32 channels, the AVX-512 build's sixteen lanes and eight),
    /// on small odd-sized batches.
    fn geometries() -> Vec<Geometry> {
        let mut out = Vec::new();
        for k in 1..=MAX_K {
            for stride in 1..=3 {
                for pad in 0..=k {
                    for (i, c_out) in [8, 16, 24, 32].into_iter().enumerate() {
                        let (h, w) = (5 + (k + i) % 4, 6 + (stride + pad) % 5);
                        let g = Geometry::new((2, 1, h, w), (c_out, 1, k, k), stride, pad).unwrap();
                        assert!(applies(&g, BatchLayout::ChannelsLast));
                        out.push(g);
                    }
                }
            }
        }
        out
    }

    fn uniform(rng: &mut StdRng, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(-scale..scale)).collect()
    }

    fn forward_as<T: Elem>(
        g: &Geometry,
        x: &[f64],
        wb: (&[f64], &[f64]),
        act: Activation,
    ) -> Vec<f64>
    where
        f64: From<T>,
    {
        let t = |v: &[f64]| v.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>();
        let (x, w, b) = (t(x), t(wb.0), t(wb.1));
        let mut out = vec![MaybeUninit::new(T::ZERO); g.n * g.out_len()];
        forward(g, &x, (&w, Some(&b)), act, &mut out);
        // SAFETY: the buffer was written with zeros before the pass.
        #[allow(unsafe_code)]
        out.iter()
            .map(|v| f64::from(unsafe { v.assume_init() }))
            .collect()
    }

    fn weight_grad_as<T: Elem>(g: &Geometry, x: &[f64], gy: &[f64], y: Option<&[f64]>) -> Vec<f64>
    where
        f64: From<T>,
    {
        let t = |v: &[f64]| v.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>();
        let (x, gy, y) = (t(x), t(gy), y.map(t));
        let mut acc = vec![T::ZERO; g.c_out * g.k * g.k + g.c_out];
        weight_grad(g, &x, (&gy, y.as_deref()), &mut acc);
        acc.into_iter().map(f64::from).collect()
    }

    #[test]
    fn the_forward_pass_is_the_direct_sum_on_every_geometry() {
        let mut rng = StdRng::seed_from_u64(3);
        for g in geometries() {
            let x = uniform(&mut rng, g.n * g.in_len(), 1.0);
            let w = uniform(&mut rng, g.c_out * g.k * g.k, 0.5);
            let b = uniform(&mut rng, g.c_out, 0.3);
            let exact = direct(&g, &x, &w, &b);
            let relu: Vec<f64> = exact.iter().map(|&v| v.max(0.0)).collect();
            assert!(relu.contains(&0.0) && relu.iter().any(|&v| v > 0.0));
            for (act, exact) in [(Activation::Identity, &exact), (Activation::Relu, &relu)] {
                let label = format!("{g:?} {act:?}");
                let got = forward_as::<f64>(&g, &x, (&w, &b), act);
                let e64 = worst_relative(&got, exact);
                assert!(e64 < 1e-14, "{label} f64: off by {e64:e} of the scale");
                let got = forward_as::<f32>(&g, &x, (&w, &b), act);
                let e32 = worst_relative(&got, exact);
                assert!(e32 < 2e-6, "{label} f32: off by {e32:e} of the scale");
            }
        }
    }

    #[test]
    fn the_weight_gradient_is_the_direct_sum_on_every_geometry() {
        let mut rng = StdRng::seed_from_u64(4);
        for g in geometries() {
            let x = uniform(&mut rng, g.n * g.in_len(), 1.0);
            let gy = uniform(&mut rng, g.n * g.out_len(), 1.0);
            // A layer output with zeros, as ReLU leaves them, and a few exact ties.
            let y: Vec<f64> = uniform(&mut rng, gy.len(), 1.0)
                .into_iter()
                .map(|v| if v.abs() < 0.05 { 0.0 } else { v.max(0.0) })
                .collect();
            let masked: Vec<f64> = gy
                .iter()
                .zip(&y)
                .map(|(&d, &y)| if y > 0.0 { d } else { 0.0 })
                .collect();
            for (mask, through) in [(None, &gy), (Some(&y[..]), &masked)] {
                let exact = direct_weight_grad(&g, &x, through);
                let label = format!("{g:?} masked {}", mask.is_some());
                let got = weight_grad_as::<f64>(&g, &x, &gy, mask);
                let e64 = worst_relative(&got, &exact);
                assert!(e64 < 1e-13, "{label} f64: off by {e64:e} of the scale");
                let got = weight_grad_as::<f32>(&g, &x, &gy, mask);
                let e32 = worst_relative(&got, &exact);
                assert!(e32 < 1e-5, "{label} f32: off by {e32:e} of the scale");
            }
            // The caller's sums are added to, not replaced.
            let once = weight_grad_as::<f64>(&g, &x, &gy, None);
            let mut acc = vec![1.0; once.len()];
            weight_grad(&g, &x, (&gy, None), &mut acc);
            assert!(acc
                .iter()
                .zip(&once)
                .all(|(a, o)| (a - 1.0 - o).abs() < 1e-12));
        }
    }

    /// The input gradient of `sum(gy * conv(x, w))`: every output's gradient times
    /// each tap's weight, added to the input pixel under that tap.
    fn direct_input_grad(g: &Geometry, gy: &[f64], w: &[f64]) -> Vec<f64> {
        let mut dx = vec![0.0; g.n * g.in_len()];
        each_tap(g, |o, t, xi| {
            if let Some(xi) = xi {
                dx[xi] += gy[o] * w[t];
            }
        });
        dx
    }

    fn input_grad_as<T: Elem>(g: &Geometry, gy: &[f64], w: &[f64]) -> Vec<f64>
    where
        f64: From<T>,
    {
        let t = |v: &[f64]| v.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>();
        let (gy, w) = (t(gy), t(w));
        let mut dx = vec![MaybeUninit::new(T::ZERO); g.n * g.in_len()];
        input_grad(g, &gy, &w, &mut dx);
        // SAFETY: the buffer was written with zeros before the pass.
        #[allow(unsafe_code)]
        dx.iter()
            .map(|v| f64::from(unsafe { v.assume_init() }))
            .collect()
    }

    #[test]
    fn the_input_gradient_is_the_direct_sum_on_every_stride_1_geometry() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut ran = 0;
        for g in geometries() {
            if !applies_input_grad(&g, BatchLayout::ChannelsLast) {
                assert!(g.stride > 1 || g.pad >= g.k);
                continue;
            }
            let gy = uniform(&mut rng, g.n * g.out_len(), 1.0);
            let w = uniform(&mut rng, g.c_out * g.k * g.k, 0.5);
            let exact = direct_input_grad(&g, &gy, &w);
            let got = input_grad_as::<f64>(&g, &gy, &w);
            let e64 = worst_relative(&got, &exact);
            assert!(e64 < 1e-14, "{g:?} f64: off by {e64:e} of the scale");
            let got = input_grad_as::<f32>(&g, &gy, &w);
            let e32 = worst_relative(&got, &exact);
            assert!(e32 < 2e-6, "{g:?} f32: off by {e32:e} of the scale");
            ran += 1;
        }
        assert_eq!(ran, 60, "stride 1, padding 0 to k - 1, four channel counts");
    }

    #[test]
    fn other_layers_are_not_taken() {
        let g = |c_in, c_out, k| Geometry::new((1, c_in, 8, 8), (c_out, c_in, k, k), 1, 1).unwrap();
        assert!(applies(&g(1, 32, 3), BatchLayout::ChannelsLast));
        assert!(!applies(&g(1, 32, 3), BatchLayout::ChannelsFirst));
        assert!(!applies(&g(2, 32, 3), BatchLayout::ChannelsLast));
        assert!(!applies(&g(1, 12, 3), BatchLayout::ChannelsLast));
        assert!(!applies(&g(1, 32, 7), BatchLayout::ChannelsLast));
        let strided = Geometry::new((1, 1, 8, 8), (16, 1, 3, 3), 2, 1).unwrap();
        assert!(applies(&strided, BatchLayout::ChannelsLast));
        assert!(!applies_input_grad(&strided, BatchLayout::ChannelsLast));
    }
}
