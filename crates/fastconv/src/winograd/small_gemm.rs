//! The rounds' `a²` small products, in register blocks straight from the operands.

use gemm::Parallelism;

use super::lanes::{load, store, Lanes, LANES};
use crate::kernels::Elem;
#[cfg(target_arch = "x86_64")]
use crate::kernels::{as_f32, as_f32_mut};

/// `C (+)= A · B` for the rounds' `a²` small products (`m x k` by `k x n`), with
/// `A(r, p) = a[r * ars + p * aks]`, `B(p, j) = b[p * ldb + j]`,
/// `C(r, j) = c[r * ldc + j]` and `n` a multiple of [`LANES`]: register blocks of 6
/// rows by 16 columns straight from the operands, which a round keeps in cache, so
/// nothing is packed. `FMA` fuses the multiply-adds (set only in the AVX builds,
/// where they are single instructions); `WIDE` (set only in the AVX-512 build) runs
/// f32 on sixteen-lane registers ([`super::wide`]), to the same bits.
#[inline(always)]
pub(super) fn small_gemm<T: Elem, const FMA: bool, const WIDE: bool>(
    (m, n, k): (usize, usize, usize),
    (a, ars, aks): (&[T], usize, usize),
    (b, ldb): (&[T], usize),
    (c, ldc): (&mut [T], usize),
    accumulate: bool,
) {
    debug_assert_eq!(n % LANES, 0, "small_gemm: n is not a multiple of the lanes");
    #[cfg(target_arch = "x86_64")]
    if WIDE && FMA {
        if let (Some(a), Some(b), Some(c)) = (as_f32(a), as_f32(b), as_f32_mut(c)) {
            // SAFETY: `WIDE` is set only in the AVX-512 build of the rounds, which
            // runs only after the CPU was found to have AVX-512 F.
            #[allow(unsafe_code)]
            unsafe {
                super::wide::small_gemm_f32(
                    (m, n, k),
                    (a, ars, aks),
                    (b, ldb),
                    (c, ldc),
                    accumulate,
                )
            };
            return;
        }
    }
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
///
/// The rounds call it only when `par` spreads the planes; on one thread they loop over
/// their planes themselves, calling an `#[inline(always)]` function: a closure is a
/// function of its own that the compiler may keep out of line, compiled without the
/// AVX2 round's features, and its products' fused multiply-adds then become calls to
/// the library's `fmaf` (a refactoring that moved the closure one function further
/// from the round made the AVX2 rounds 80x slower, and no value changed).
#[inline(always)]
pub(super) fn each_plane<T: Elem>(
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
pub(super) fn block<T: Elem, const R: usize, const NV: usize, const FMA: bool>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
                            small_gemm::<f64, false, false>(
                                args.0,
                                args.1,
                                args.2,
                                (&mut c, ldc),
                                accumulate,
                            );
                            let mut cf = c0.clone();
                            small_gemm::<f64, true, false>(
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

    /// The AVX-512 build's f32 products ([`super::super::wide`]) against the AVX2+FMA
    /// build's to the bit, and both against the f64 triple loop: every row remainder
    /// of the 8-row blocks, 16- and 32-column blocks and the masked 8-lane tail, both
    /// operand layouts, overwrite and accumulate. Skipped (with a line saying so) on a
    /// CPU without AVX-512 F, AVX2 or FMA.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_avx512_products_equal_the_avx2_ones_to_the_bit() {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx512f") && has!("avx2") && has!("fma")) {
            eprintln!("skipped: this CPU lacks AVX-512 F, AVX2 or FMA");
            return;
        }
        let val = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 25.0;
        let mut checked = 0;
        for m in [1, 7, 8, 9, 16, 23] {
            for n in [8, 16, 24, 32, 40, 48, 56] {
                for k in [1, 3, 16, 33] {
                    for (ars, aks) in [(k + 2, 1), (1, m + 3)] {
                        let a: Vec<f32> = (0..(m - 1) * ars + (k - 1) * aks + 1).map(val).collect();
                        let ldb = n + 8;
                        let b: Vec<f32> = (0..k * ldb).map(|i| val(i + 7)).collect();
                        for accumulate in [false, true] {
                            let ldc = n + 8;
                            let c0: Vec<f32> = (0..m * ldc).map(|i| val(i + 3)).collect();
                            let args = ((m, n, k), (&a[..], ars, aks), (&b[..], ldb));
                            let mut narrow = c0.clone();
                            // SAFETY (both): AVX2, FMA and AVX-512 F were found above.
                            #[allow(unsafe_code)]
                            unsafe {
                                avx2(args, &mut narrow, ldc, accumulate)
                            };
                            let mut wide = c0.clone();
                            #[allow(unsafe_code)]
                            unsafe {
                                avx512(args, &mut wide, ldc, accumulate)
                            };
                            for r in 0..m {
                                for j in 0..ldc {
                                    let at = r * ldc + j;
                                    let what = format!(
                                        "m {m} n {n} k {k} a ({ars}, {aks}) acc {accumulate} at ({r}, {j})"
                                    );
                                    if j >= n {
                                        // Past the block's columns nothing is written.
                                        assert_eq!(wide[at].to_bits(), c0[at].to_bits(), "{what}");
                                        continue;
                                    }
                                    assert_eq!(wide[at].to_bits(), narrow[at].to_bits(), "{what}");
                                    let dot: f64 = (0..k)
                                        .map(|p| {
                                            a[r * ars + p * aks] as f64 * b[p * ldb + j] as f64
                                        })
                                        .sum();
                                    let want = dot + if accumulate { c0[at] as f64 } else { 0.0 };
                                    assert!((wide[at] as f64 - want).abs() < 1e-4, "{what}");
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 10_000);

        type Args<'a> = (
            (usize, usize, usize),
            (&'a [f32], usize, usize),
            (&'a [f32], usize),
        );
        #[target_feature(enable = "avx2,fma")]
        #[allow(unsafe_code)]
        unsafe fn avx2(x: Args<'_>, c: &mut [f32], ldc: usize, accumulate: bool) {
            small_gemm::<f32, true, false>(x.0, x.1, x.2, (c, ldc), accumulate)
        }
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        #[allow(unsafe_code)]
        unsafe fn avx512(x: Args<'_>, c: &mut [f32], ldc: usize, accumulate: bool) {
            small_gemm::<f32, true, true>(x.0, x.1, x.2, (c, ldc), accumulate)
        }
    }
}
