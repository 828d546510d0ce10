//! The loops behind the fast convolutions: im2col / col2im over NCHW images and one
//! checked wrapper around the `gemm` crate's matrix product.
//!
//! Every routine works on one image at a time with caller-provided scratch, so the
//! batch can be split across threads with one scratch buffer per thread.

use gemm::Parallelism;
use std::mem::MaybeUninit;

/// The element types the fast path runs on (f32, and f64 for gradient checks).
pub(crate) trait Elem:
    Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::AddAssign
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    /// A constant, rounded to this type.
    fn from_f64(v: f64) -> Self;

    /// `self * a + b` with one rounding. Fast only where the compiler may use FMA
    /// instructions (it is a library call elsewhere).
    fn fused_mul_add(self, a: Self, b: Self) -> Self;

    /// `dst[j * ds + i] = src[i * ss + j]` for `i, j < 8`: one 8 x 8 block of a
    /// transpose, into a destination that may not be written yet.
    ///
    /// Panics if a slice is too short for the block.
    #[inline(always)]
    fn transpose8(src: &[Self], ss: usize, dst: &mut [MaybeUninit<Self>], ds: usize) {
        let mut b = [[Self::ZERO; 8]; 8];
        for (i, row) in b.iter_mut().enumerate() {
            row.copy_from_slice(&src[i * ss..i * ss + 8]);
        }
        for j in 0..8 {
            let mut col = [Self::ZERO; 8];
            for (i, e) in col.iter_mut().enumerate() {
                *e = b[i][j];
            }
            for (d, &v) in dst[j * ds..j * ds + 8].iter_mut().zip(&col) {
                d.write(v);
            }
        }
    }
}

impl Elem for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v as f32
    }

    #[inline(always)]
    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }

    /// With AVX, eight row loads, 24 shuffles and eight column stores (compilers turn
    /// the generic version into 128 scalar moves).
    #[inline(always)]
    fn transpose8(src: &[f32], ss: usize, dst: &mut [MaybeUninit<f32>], ds: usize) {
        assert!(
            src.len() >= 7 * ss + 8 && dst.len() >= 7 * ds + 8,
            "transpose8: short"
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX is present (checked above), and the assert above keeps the
            // eight 8-wide rows read from `src` and written to `dst` in bounds.
            #[allow(unsafe_code)]
            unsafe {
                transpose8_avx(src.as_ptr(), ss, dst.as_mut_ptr().cast::<f32>(), ds)
            };
            return;
        }
        let mut b = [[0.0f32; 8]; 8];
        for (i, row) in b.iter_mut().enumerate() {
            row.copy_from_slice(&src[i * ss..i * ss + 8]);
        }
        for j in 0..8 {
            let mut col = [0.0f32; 8];
            for (i, e) in col.iter_mut().enumerate() {
                *e = b[i][j];
            }
            for (d, &v) in dst[j * ds..j * ds + 8].iter_mut().zip(&col) {
                d.write(v);
            }
        }
    }
}

/// The 8 x 8 transpose of [`Elem::transpose8`] in AVX registers.
///
/// # Safety
/// The CPU must support AVX; `src + i * ss` and `dst + i * ds` must be valid for eight
/// f32 each, for `i < 8`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[allow(unsafe_code)]
#[inline]
unsafe fn transpose8_avx(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ss)));
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let out = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (j, v) in out.into_iter().enumerate() {
        _mm256_storeu_ps(dst.add(j * ds), v);
    }
}

impl Elem for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v
    }

    #[inline(always)]
    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
}

/// `dst[j * dst_stride + i] = src[i * src_stride + j]` for `i < rows`, `j < cols`,
/// in 8 x 8 blocks.
#[allow(unsafe_code)]
#[inline(always)]
pub(crate) fn transpose<T: Elem>(
    src: &[T],
    dims: (usize, usize, usize),
    dst: &mut [T],
    dst_stride: usize,
) {
    // SAFETY: `transpose_into` only stores values read from `src`.
    transpose_into(src, dims, unsafe { as_unwritten(dst) }, dst_stride);
}

/// [`transpose`] into a destination that may not be written yet (see [`unwritten`]).
#[inline(always)]
pub(crate) fn transpose_into<T: Elem>(
    src: &[T],
    (rows, cols, src_stride): (usize, usize, usize),
    dst: &mut [MaybeUninit<T>],
    dst_stride: usize,
) {
    const B: usize = 8;
    for i0 in (0..rows).step_by(B) {
        let ri = B.min(rows - i0);
        for j0 in (0..cols).step_by(B) {
            let cj = B.min(cols - j0);
            if ri == B && cj == B {
                T::transpose8(
                    &src[i0 * src_stride + j0..],
                    src_stride,
                    &mut dst[j0 * dst_stride + i0..],
                    dst_stride,
                );
            } else {
                for i in i0..i0 + ri {
                    for j in j0..j0 + cj {
                        dst[j * dst_stride + i].write(src[i * src_stride + j]);
                    }
                }
            }
        }
    }
}

/// A buffer of `n` values not written yet, for a pass that writes every one of them
/// before anything reads the buffer ([`assume_written`] then gives the values):
/// filling a 13 MB output with zeros first costs a pass over memory for nothing.
/// This crate's unit tests (and builds with debug assertions) fill it with `0xFF`
/// bytes (NaN as a float), so that a value a pass leaves unwritten shows in their
/// comparisons against candle instead of reading as a plausible zero.
#[allow(unsafe_code)]
pub(crate) fn unwritten<T>(n: usize) -> Vec<MaybeUninit<T>> {
    let mut v: Vec<MaybeUninit<T>> = Vec::with_capacity(n);
    // SAFETY: the capacity is `n`, and `MaybeUninit` values need no initialisation.
    unsafe { v.set_len(n) };
    if cfg!(any(test, debug_assertions)) {
        // SAFETY: the `n` values lie inside the allocation, and `MaybeUninit<T>` may
        // hold any bytes.
        unsafe { std::ptr::write_bytes(v.as_mut_ptr(), 0xFF, n) };
    }
    v
}

/// The values of a buffer from [`unwritten`] once a pass has written all of them.
///
/// # Safety
/// Every element of `v` has been written.
#[allow(unsafe_code)]
pub(crate) unsafe fn assume_written<T>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr().cast::<T>(), v.len(), v.capacity());
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, so the allocation is that of a
    // `Vec<T>` of the same length and capacity, whose values the caller has written;
    // `ManuallyDrop` keeps `v` from freeing it.
    unsafe { Vec::from_raw_parts(ptr, len, cap) }
}

/// `s` seen as values that may not be written yet, for the writers that also fill
/// [`unwritten`] buffers.
///
/// # Safety
/// Only initialised values may be stored through the result (never
/// `MaybeUninit::uninit()`), so that `s` stays initialised.
#[allow(unsafe_code)]
pub(crate) unsafe fn as_unwritten<T>(s: &mut [T]) -> &mut [MaybeUninit<T>] {
    let len = s.len();
    // SAFETY: same layout and length; the caller keeps the values initialised.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<MaybeUninit<T>>(), len) }
}

/// `n` copies of `zero`, written by all of rayon's threads: the outputs of the passes
/// are large, and a zero fill (with its page faults) on the calling thread alone
/// leaves the other cores idle.
pub(crate) fn zeros<T: Copy + Send + Sync>(n: usize, zero: T) -> Vec<T> {
    use rayon::prelude::*;
    let mut v = Vec::with_capacity(n);
    rayon::iter::repeat_n(zero, n).collect_into_vec(&mut v);
    v
}

/// The sum of `v`, in eight interleaved partial sums so that it vectorises (a single
/// running sum is one dependent addition per value).
pub(crate) fn sum<T: Elem>(v: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let mut total = T::ZERO;
    for &x in chunks.remainder() {
        total += x;
    }
    acc.iter().fold(total, |t, &a| t + a)
}

/// ReLU's backward from its output: `g` where `y` is positive, else zero (NaN is not
/// positive, as in candle's relu backward).
#[inline(always)]
pub(crate) fn relu_grad<T: Elem>(g: T, y: T) -> T {
    if y > T::ZERO {
        g
    } else {
        T::ZERO
    }
}

/// Shapes of one convolution: `n x c_in x h x w` input, `c_out x c_in x k x k` kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geometry {
    /// Checks the shapes and derives the output size (PyTorch's floor rule).
    pub fn new(
        x: (usize, usize, usize, usize),
        kernel: (usize, usize, usize, usize),
        stride: usize,
        pad: usize,
    ) -> std::result::Result<Self, String> {
        let (n, c_in, h, w) = x;
        let (c_out, kc, kh, kw) = kernel;
        if kc != c_in {
            return Err(format!(
                "kernel has {kc} input channels, the input has {c_in}"
            ));
        }
        if kh != kw || kh == 0 {
            return Err(format!("kernel {kh}x{kw} is not square"));
        }
        if stride == 0 {
            return Err("stride 0".into());
        }
        let k = kh;
        if h + 2 * pad < k || w + 2 * pad < k {
            return Err(format!(
                "kernel {k}x{k} is larger than the padded {}x{} input",
                h + 2 * pad,
                w + 2 * pad
            ));
        }
        Ok(Self {
            n,
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
            ho: (h + 2 * pad - k) / stride + 1,
            wo: (w + 2 * pad - k) / stride + 1,
        })
    }

    /// Rows of the im2col matrix: `c_in * k * k`.
    pub fn ckk(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// Elements of one input image.
    pub fn in_len(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// Output pixels of one channel.
    pub fn out_hw(&self) -> usize {
        self.ho * self.wo
    }

    /// Elements of one output image.
    pub fn out_len(&self) -> usize {
        self.c_out * self.out_hw()
    }

    /// Multiply-adds of the whole forward pass, times two.
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.out_len() * self.ckk()) as f64
    }

    /// The valid output columns `lo..hi` of kernel column `kx` at stride 1, where the
    /// input column `ox + kx - pad` lies inside the image.
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(kx).min(self.wo);
        let hi = (self.w + self.pad).saturating_sub(kx).min(self.wo);
        (lo, hi.max(lo))
    }
}

/// Unfolds one image (`c_in x h x w`) into `cols` (`ckk x out_hw`, row-major): row
/// `(c, ky, kx)` holds the input pixel each output pixel sees through that tap, zero in
/// the padding.
pub(crate) fn im2col<T: Elem>(g: &Geometry, x: &[T], cols: &mut [T]) {
    let hw_out = g.out_hw();
    let (k, s, pad) = (g.k, g.stride, g.pad);
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let r = (c * k + ky) * k + kx;
                let row = &mut cols[r * hw_out..(r + 1) * hw_out];
                let (lo, hi) = g.valid_cols(kx);
                for (oy, seg) in row.chunks_exact_mut(g.wo).enumerate() {
                    let iy = oy * s + ky;
                    if iy < pad || iy - pad >= g.h {
                        seg.fill(T::ZERO);
                        continue;
                    }
                    let src = &plane[(iy - pad) * g.w..(iy - pad + 1) * g.w];
                    if s == 1 {
                        seg[..lo].fill(T::ZERO);
                        seg[hi..].fill(T::ZERO);
                        seg[lo..hi].copy_from_slice(&src[lo + kx - pad..hi + kx - pad]);
                    } else {
                        for (ox, v) in seg.iter_mut().enumerate() {
                            let ix = ox * s + kx;
                            *v = if ix < pad || ix - pad >= g.w {
                                T::ZERO
                            } else {
                                src[ix - pad]
                            };
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every entry of `cols` back onto the input pixel it
/// was read from. `dx` (`c_in x h x w`) must start zeroed.
pub(crate) fn col2im<T: Elem>(g: &Geometry, cols: &[T], dx: &mut [T]) {
    let hw_out = g.out_hw();
    let (k, s, pad) = (g.k, g.stride, g.pad);
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let r = (c * k + ky) * k + kx;
                let row = &cols[r * hw_out..(r + 1) * hw_out];
                for (oy, seg) in row.chunks_exact(g.wo).enumerate() {
                    let iy = oy * s + ky;
                    if iy < pad || iy - pad >= g.h {
                        continue;
                    }
                    let dst = &mut plane[(iy - pad) * g.w..(iy - pad + 1) * g.w];
                    for (ox, &v) in seg.iter().enumerate() {
                        let ix = ox * s + kx;
                        if ix >= pad && ix - pad < g.w {
                            dst[ix - pad] += v;
                        }
                    }
                }
            }
        }
    }
}

/// A strided matrix operand: `data[i * rs + j * cs]` is element `(i, j)`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn rows_t(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

fn covers(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

/// `dst (m x n, row-major) (+)= lhs (m x k) * rhs (k x n)`, through `gemm`.
///
/// Panics if an operand is too short for its shape and strides: every caller sizes
/// its buffers from one [`Geometry`], so a failure here is a bug, not bad input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallelism: Parallelism,
) {
    matmul_strided(m, n, k, (dst, n, 1), accumulate, lhs, rhs, parallelism);
}

/// [`matmul`] into a destination with row stride `rs` and column stride `cs`.
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_strided<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    (dst, rs, cs): (&mut [T], usize, usize),
    accumulate: bool,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallelism: Parallelism,
) {
    assert!(
        covers(dst.len(), m, n, rs, cs),
        "matmul: destination too short"
    );
    // SAFETY: every index gemm touches in dst, (i, j) with i < m, j < n, lies inside
    // it (asserted above), and dst is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm_into(
            m,
            n,
            k,
            (dst.as_mut_ptr(), rs, cs),
            accumulate,
            lhs,
            rhs,
            parallelism,
        )
    }
}

/// [`matmul`] into a destination not written yet (see [`unwritten`]), which the
/// product writes in full (`m x n`, row-major, `k > 0`): the written values.
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_unwritten<'a, T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &'a mut [MaybeUninit<T>],
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallelism: Parallelism,
) -> &'a mut [T] {
    assert!(
        dst.len() == m * n && k > 0,
        "matmul: the destination is not m x n, or there is nothing to sum"
    );
    let (to, len) = (dst.as_mut_ptr().cast::<T>(), dst.len());
    // SAFETY: the (i, j) with i < m, j < n that gemm writes lie inside dst (its length
    // is m * n, asserted above; `MaybeUninit<T>` has the layout of `T`), dst is borrowed
    // mutably, so it aliases neither operand, and without accumulation gemm reads
    // nothing from it.
    unsafe { gemm_into(m, n, k, (to, n, 1), false, lhs, rhs, parallelism) };
    // SAFETY: with k > 0 the product wrote every one of the m * n values.
    unsafe { std::slice::from_raw_parts_mut(to, len) }
}

/// `dst (+)= lhs · rhs` through `gemm`, for a destination given as a pointer with row
/// and column strides; checks the operands, not the destination.
///
/// # Safety
/// `dst + i * rs + j * cs` must be valid for writes (and for reads when `accumulate`)
/// for every `i < m`, `j < n`, and alias neither operand.
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    (dst, rs, cs): (*mut T, usize, usize),
    accumulate: bool,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallelism: Parallelism,
) {
    assert!(
        covers(lhs.data.len(), m, k, lhs.rs, lhs.cs),
        "matmul: lhs too short"
    );
    assert!(
        covers(rhs.data.len(), k, n, rhs.rs, rhs.cs),
        "matmul: rhs too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index gemm reads from lhs, (i, l) with
    // i < m, l < k, and from rhs, (l, j) with l < k, j < n, inside its slice; the
    // caller vouches for dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            cs as isize,
            rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn transposes<T: Elem + std::fmt::Debug>(of: impl Fn(usize) -> T) {
        let (ss, ds) = (11, 9);
        let src: Vec<T> = (0..7 * ss + 8).map(&of).collect();
        let mut dst = vec![T::ZERO; 7 * ds + 8 + 3];
        // SAFETY: transpose8 stores only values read from `src`.
        T::transpose8(&src, ss, unsafe { as_unwritten(&mut dst) }, ds);
        for i in 0..8 {
            for j in 0..8 {
                assert!(dst[j * ds + i] == src[i * ss + j], "({i}, {j})");
            }
        }
        // Between the written columns and past the block nothing is touched.
        assert!(dst[8] == T::ZERO && dst[7 * ds + 8] == T::ZERO);
    }

    #[test]
    fn transpose8_matches_the_definition() {
        transposes(|i| i as f32 + 0.5);
        transposes(|i| i as f64 - 0.25);
    }

    /// The direct definition of one output pixel, for comparison.
    fn direct(g: &Geometry, x: &[f64], w: &[f64], co: usize, oy: usize, ox: usize) -> f64 {
        let mut acc = 0.0;
        for c in 0..g.c_in {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                        continue;
                    }
                    acc += x[(c * g.h + iy as usize) * g.w + ix as usize]
                        * w[((co * g.c_in + c) * g.k + ky) * g.k + kx];
                }
            }
        }
        acc
    }

    #[test]
    fn im2col_then_matmul_is_the_direct_convolution() {
        for &(h, w, k, stride, pad) in &[
            (7, 5, 3, 1, 1),
            (8, 8, 3, 2, 1),
            (6, 9, 4, 2, 1),
            (5, 5, 5, 1, 2),
            (4, 4, 1, 1, 0),
            (5, 6, 3, 3, 0),
        ] {
            let g = Geometry::new((1, 2, h, w), (3, 2, k, k), stride, pad).unwrap();
            let x: Vec<f64> = (0..g.in_len()).map(|i| (i as f64 * 0.37).sin()).collect();
            let wt: Vec<f64> = (0..3 * g.ckk()).map(|i| (i as f64 * 0.61).cos()).collect();
            let mut cols = vec![f64::NAN; g.ckk() * g.out_hw()];
            im2col(&g, &x, &mut cols);
            let mut out = vec![0.0; g.out_len()];
            matmul(
                3,
                g.out_hw(),
                g.ckk(),
                &mut out,
                false,
                Mat::rows(&wt, g.ckk()),
                Mat::rows(&cols, g.out_hw()),
                Parallelism::None,
            );
            for co in 0..3 {
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let got = out[(co * g.ho + oy) * g.wo + ox];
                        let want = direct(&g, &x, &wt, co, oy, ox);
                        assert!((got - want).abs() < 1e-12, "{g:?} {co} {oy} {ox}");
                    }
                }
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for any x and c.
        for &(h, w, k, stride, pad) in &[(7, 5, 3, 1, 1), (8, 8, 3, 2, 1), (6, 9, 4, 2, 1)] {
            let g = Geometry::new((1, 2, h, w), (1, 2, k, k), stride, pad).unwrap();
            let x: Vec<f64> = (0..g.in_len()).map(|i| (i as f64 * 0.37).sin()).collect();
            let c: Vec<f64> = (0..g.ckk() * g.out_hw())
                .map(|i| (i as f64 * 0.13).cos())
                .collect();
            let mut cols = vec![0.0; c.len()];
            im2col(&g, &x, &mut cols);
            let mut back = vec![0.0; x.len()];
            col2im(&g, &c, &mut back);
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-9, "{lhs} vs {rhs}");
        }
    }

    #[test]
    fn geometry_rejects_mismatches() {
        assert!(Geometry::new((1, 2, 5, 5), (3, 1, 3, 3), 1, 1).is_err());
        assert!(Geometry::new((1, 2, 5, 5), (3, 2, 3, 2), 1, 1).is_err());
        assert!(Geometry::new((1, 2, 5, 5), (3, 2, 3, 3), 0, 1).is_err());
        assert!(Geometry::new((1, 2, 2, 2), (3, 2, 5, 5), 1, 0).is_err());
        let g = Geometry::new((1, 2, 28, 28), (3, 2, 3, 3), 2, 1).unwrap();
        assert_eq!((g.ho, g.wo), (14, 14));
    }
}
