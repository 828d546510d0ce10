//! The element types the passes run on, and the transposes and small reductions they
//! share.

use std::mem::MaybeUninit;

use super::memory::as_unwritten;

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

    /// ELU with `α = 1` as candle computes it: `self` when its sign bit is clear,
    /// `(exp(self) - 1) * 1` otherwise.
    fn elu(self) -> Self;

    /// `v[i] = v[i].elu()` for every element (f32 on the CPU's best instruction set,
    /// with the same values to the bit).
    fn elu_in_place(v: &mut [Self]) {
        v.iter_mut().for_each(|x| *x = x.elu());
    }

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
    fn elu(self) -> Self {
        if self.is_sign_positive() {
            self
        } else {
            (self.exp() - 1.0) * 1.0
        }
    }

    fn elu_in_place(v: &mut [f32]) {
        super::exp::elu_in_place_f32(v);
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
    fn elu(self) -> Self {
        if self.is_sign_positive() {
            self
        } else {
            (self.exp() - 1.0) * 1.0
        }
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

/// ELU's (`α = 1`) backward from its output `y`: `g` where `y > 0` (the input was
/// positive), `g * (y + 1)` (that is `g * exp(x)`) elsewhere, as candle computes it.
#[inline(always)]
pub(crate) fn elu_grad<T: Elem>(g: T, y: T) -> T {
    if y > T::ZERO {
        g
    } else {
        g * (y + T::ONE)
    }
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

/// `s` as f32, when `T` is f32.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) fn as_f32<T: Elem>(s: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()).then(|| {
        // SAFETY: `T` is f32, so this is the same slice under its own type.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len())
        }
    })
}

/// [`as_f32`] for a mutable slice.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) fn as_f32_mut<T: Elem>(s: &mut [T]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()).then(|| {
        // SAFETY: `T` is f32, so this is the same slice under its own type.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<f32>(), s.len())
        }
    })
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
}
