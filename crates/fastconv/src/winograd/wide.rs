//! The rounds' small products in f32 on sixteen-lane AVX-512 registers, for the
//! AVX-512 build of the rounds (see `simd`).
//!
//! The generic [`super::small_gemm::small_gemm`] works on eight lanes, which compilers
//! keep in 256-bit registers even where 512-bit ones exist. This one computes the same
//! `C (+)= A · B` in blocks of up to 8 rows by 32 columns (two `zmm` registers per row,
//! the last one masked to eight lanes when `n` is an odd multiple of eight): each value
//! is the same chain of fused multiply-adds over `p = 0, 1, ..., k-1` as the AVX2+FMA
//! build's, so the two agree to the bit.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_mask_storeu_ps,
    _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
};

/// Rows per register block.
const ROWS: usize = 8;
/// Lanes per register.
const LANES16: usize = 16;

/// `C (+)= A · B` as [`super::small_gemm::small_gemm`] computes it (the same operand
/// layouts, `n` a multiple of 8), on AVX-512 registers.
///
/// # Safety
/// The CPU has AVX-512 F.
///
/// Panics if an operand is too short for `(m, n, k)` and its strides, or `n` is not a
/// multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
pub(super) unsafe fn small_gemm_f32(
    (m, n, k): (usize, usize, usize),
    (a, ars, aks): (&[f32], usize, usize),
    (b, ldb): (&[f32], usize),
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
) {
    assert_eq!(n % 8, 0, "small_gemm: n is not a multiple of 8");
    // As the generic blocks do: nothing is written when the sum is empty.
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        (m - 1) * ars + (k - 1) * aks < a.len()
            && (k - 1) * ldb + n <= b.len()
            && (m - 1) * ldc + n <= c.len(),
        "small_gemm: operand too short"
    );
    let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    for j0 in (0..n).step_by(2 * LANES16) {
        let cols = (n - j0).min(2 * LANES16);
        let last: __mmask16 = if cols % LANES16 == 0 { 0xffff } else { 0x00ff };
        for i0 in (0..m).step_by(ROWS) {
            // SAFETY: rows i0.. i0 + R <= m and columns j0.. j0 + cols <= n, the last
            // register masked to its `cols % 16` lanes, so every access stays inside
            // the bounds asserted above.
            let (a, b, c) = unsafe { (a.add(i0 * ars), b.add(j0), c.add(i0 * ldc + j0)) };
            let args = (k, (a, ars, aks), (b, ldb), (c, ldc), last, accumulate);
            macro_rules! block {
                ($r:literal) => {
                    if cols > LANES16 {
                        unsafe { block::<$r, 2>(args) }
                    } else {
                        unsafe { block::<$r, 1>(args) }
                    }
                };
            }
            match (m - i0).min(ROWS) {
                1 => block!(1),
                2 => block!(2),
                3 => block!(3),
                4 => block!(4),
                5 => block!(5),
                6 => block!(6),
                7 => block!(7),
                _ => block!(8),
            }
        }
    }
}

/// The arguments of one register block: `k`, `A` with its row and depth strides, `B`
/// with its row stride, `C` with its row stride, the last register's lane mask, and
/// whether `C` is added to.
#[cfg(target_arch = "x86_64")]
type BlockArgs = (
    usize,
    (*const f32, usize, usize),
    (*const f32, usize),
    (*mut f32, usize),
    __mmask16,
    bool,
);

/// One `R x NV*16` block (the last register masked by `last`), its accumulators in
/// registers.
///
/// # Safety
/// AVX-512 F, and every read and write inside the operands (see `small_gemm_f32`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(unsafe_code)]
unsafe fn block<const R: usize, const NV: usize>(
    (k, (a, ars, aks), (b, ldb), (c, ldc), last, accumulate): BlockArgs,
) {
    let mask = |v: usize| if v + 1 == NV { last } else { 0xffff };
    let mut acc: [[__m512; NV]; R] = [[_mm512_setzero_ps(); NV]; R];
    for p in 0..k {
        let mut bv: [__m512; NV] = [_mm512_setzero_ps(); NV];
        for (v, e) in bv.iter_mut().enumerate() {
            // SAFETY: inside B by the caller's contract; masked lanes are not read.
            *e = unsafe { _mm512_maskz_loadu_ps(mask(v), b.add(p * ldb + v * LANES16)) };
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: inside A by the caller's contract.
            let x = _mm512_set1_ps(unsafe { *a.add(r * ars + p * aks) });
            for (acc, &bv) in acc.iter_mut().zip(&bv) {
                *acc = _mm512_fmadd_ps(x, bv, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (v, &e) in acc.iter().enumerate() {
            // SAFETY: inside C by the caller's contract; masked lanes are neither read
            // nor written.
            unsafe {
                let at = c.add(r * ldc + v * LANES16);
                let e = if accumulate {
                    _mm512_add_ps(e, _mm512_maskz_loadu_ps(mask(v), at))
                } else {
                    e
                };
                _mm512_mask_storeu_ps(at, mask(v), e);
            }
        }
    }
}
