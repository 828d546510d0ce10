//! ELU over a whole buffer with an `exp` that vectorises and still equals, to the bit,
//! the `expf` candle's `elu` calls on these machines.
//!
//! `f32::exp` is the C library's `expf`; glibc (2.28 on) computes it, on a CPU with FMA,
//! by the single-precision algorithm of Szabolcs Nagy (ARM optimized-routines,
//! `exp2f_data.c` / `expf.c`): `x * 32 / ln 2 = k + r` in double precision with `k`
//! rounded by the 1.5 * 2^52 shift, `2^(k/32)` from a 32-entry table with the exponent
//! added in integer arithmetic, `2^(r/32)` by a cubic, one rounding to f32 at the end.
//! [`expf_fma`] is that algorithm with its published constants and the same operations
//! in the same order, each multiply-add fused as glibc's FMA build fuses them (read off
//! its `__expf_fma`), so its result is the library's to the bit for every input where
//! the library takes this path (|x| < 88); the test checks it against `f32::exp`. Unlike
//! the library call it is plain arithmetic and a table load, which the compiler turns into
//! vector code (gathers for the table) inside the AVX2 and AVX-512 builds below.
//!
//! Only the FMA builds use it: without FMA glibc takes another path (`__expf_sse2`,
//! multiplies and adds rounded apart), so the baseline keeps calling `f32::exp`.

use super::Elem;

/// `2^(i/32)` as f64 bits, less `i << 47` (so that adding `k << 47` makes `2^(k/32)`),
/// for `i < 32`: the table of `__exp2f_data`.
const TABLE: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];

/// 32 / ln 2.
const INV_LN2_N: u64 = 0x40471547652b82fe;
/// 1.5 * 2^52: adding it rounds a double of magnitude < 2^51 to an integer, which
/// then sits in the low bits of the sum.
const SHIFT: u64 = 0x4338000000000000;
/// The cubic's coefficients, scaled for r in units of 1/32: r^3, r^2 and r.
const C0: u64 = 0x3ebc6af84b912394;
const C1: u64 = 0x3f2ebfce50fac4f3;
const C2: u64 = 0x3f962e42ff0c52d6;

/// Below this the library returns (nearly) zero by other paths; every input of ELU
/// below -17.4 gives -1 whatever `exp` returns under 2^-25, so [`elu_fma`] clamps here.
const LOW: f32 = -88.0;

/// `exp(x)` for `|x| < 88` (and NaN), as glibc's `__expf_fma` computes it.
#[inline(always)]
pub(crate) fn expf_fma(x: f32) -> f32 {
    let inv_ln2_n = f64::from_bits(INV_LN2_N);
    let shift = f64::from_bits(SHIFT);
    let xd = f64::from(x);
    // k rounded to an integer (ties to even) by the shift, in the sum's low bits.
    let kd_shifted = inv_ln2_n.mul_add(xd, shift);
    let ki = kd_shifted.to_bits();
    let kd = kd_shifted - shift;
    let r = inv_ln2_n.mul_add(xd, -kd);
    let t = TABLE[(ki % 32) as usize].wrapping_add(ki << 47);
    let s = f64::from_bits(t);
    let z = f64::from_bits(C0).mul_add(r, f64::from_bits(C1));
    let r2 = r * r;
    let y = r.mul_add(f64::from_bits(C2), 1.0);
    let y = z.mul_add(r2, y);
    (y * s) as f32
}

/// ELU (`α = 1`) as [`Elem::elu`] computes it for f32, with [`expf_fma`] for `exp`.
#[inline(always)]
pub(crate) fn elu_fma(x: f32) -> f32 {
    // NaN stays NaN through the comparison; -inf and the deep tail become -88.
    let clamped = if x < LOW { LOW } else { x };
    let e = expf_fma(clamped);
    if x.is_sign_positive() {
        x
    } else {
        (e - 1.0) * 1.0
    }
}

/// `v[i] = v[i].elu()` for every element, on the CPU's best instruction set
/// ([`super::simd_path`]): the same values to the bit on every path.
pub(crate) fn elu_in_place_f32(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match super::simd_path() {
        // SAFETY (both arms): `simd_path` returns a path only when
        // `is_x86_feature_detected!` found its features on this CPU.
        super::SimdPath::Avx512 => {
            #[allow(unsafe_code)]
            unsafe {
                elu_avx512(v)
            };
            return;
        }
        super::SimdPath::Avx2 => {
            #[allow(unsafe_code)]
            unsafe {
                elu_avx2(v)
            };
            return;
        }
        super::SimdPath::Baseline => {}
    }
    v.iter_mut().for_each(|x| *x = x.elu());
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(unsafe_code)]
unsafe fn elu_avx2(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = elu_fma(*x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[allow(unsafe_code)]
unsafe fn elu_avx512(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = elu_fma(*x));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether glibc's `expf` takes its FMA path here (the ifunc asks for FMA and AVX2).
    fn library_uses_fma() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Every `step`-th f32 bit pattern in `[from, to)`.
    fn patterns(from: u32, to: u32, step: usize) -> impl Iterator<Item = f32> {
        (from..to).step_by(step).map(f32::from_bits)
    }

    /// Edge inputs: zeros, infinities, NaNs, the clamp, the library's other paths.
    const EDGES: [f32; 16] = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -88.0,
        -87.999_99,
        -88.000_01,
        -100.0,
        -103.5,
        -104.0,
        -1e30,
        f32::MIN,
        -f32::MIN_POSITIVE,
        -1e-45,
        -17.4,
    ];

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn expf_fma_is_the_library_expf_to_the_bit() {
        if !library_uses_fma() {
            eprintln!("skipped: this CPU has no FMA, so the library's expf takes another path");
            return;
        }
        // Negative inputs down to -88 (0xc2b00000) and positive ones up to 88
        // (0x42b00000): 1 in 37 and 1 in 41 of the bit patterns, ~58 million values.
        let negative = patterns(0x8000_0000, 0xc2b0_0000, 37);
        let positive = patterns(0, 0x42b0_0000, 41);
        let mut checked = 0u64;
        for x in negative.chain(positive) {
            let (ours, library) = (expf_fma(x), x.exp());
            assert!(same(ours, library), "exp({x:e}): {ours:e} vs {library:e}");
            checked += 1;
        }
        assert!(checked > 50_000_000);
    }

    /// The whole negative range, every pattern (about 1.1e9 values, a minute):
    /// `cargo test --release -p fastconv exp_every_negative -- --ignored`.
    #[test]
    #[ignore]
    fn elu_fma_every_negative_input() {
        if !library_uses_fma() {
            return;
        }
        for bits in 0x8000_0000u32..=0xffff_ffff {
            let x = f32::from_bits(bits);
            assert!(same(elu_fma(x), x.elu()), "elu({x:e})");
        }
    }

    #[test]
    fn elu_in_place_equals_elu_on_every_path() {
        let mut input: Vec<f32> = patterns(0x8000_0000, 0xc2c0_0000, 9973)
            .chain(patterns(0, 0x4300_0000, 10007))
            .chain(EDGES)
            .collect();
        // An odd length, so the vector loops end in a partial vector.
        if input.len().is_multiple_of(2) {
            input.push(-0.5);
        }
        let expected: Vec<f32> = input.iter().map(|x| x.elu()).collect();
        assert!(expected.iter().any(|&e| e < 0.0 && e > -1.0));
        assert!(expected.iter().any(|&e| e == -1.0));
        let check = |got: &[f32], path: &str| {
            for ((x, g), e) in input.iter().zip(got).zip(&expected) {
                assert!(same(*g, *e), "{path}: elu({x:e}) = {g:e}, expected {e:e}");
            }
        };
        let mut all = input.clone();
        elu_in_place_f32(&mut all);
        check(&all, "best path");
        // The baseline is `f32::elu` itself; each FMA build against it.
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let fma = library_uses_fma();
            type Build = unsafe fn(&mut [f32]);
            let builds: [(&str, bool, Build); 2] = [
                ("avx2+fma", fma, elu_avx2),
                (
                    "avx512",
                    fma && has!("avx512f") && has!("avx512vl"),
                    elu_avx512,
                ),
            ];
            let mut ran = Vec::new();
            for (name, _, elu) in builds.into_iter().filter(|&(_, present, _)| present) {
                let mut v = input.clone();
                // SAFETY: the build's features are present (its flag, checked above).
                #[allow(unsafe_code)]
                unsafe {
                    elu(&mut v)
                };
                check(&v, name);
                ran.push(name);
            }
            eprintln!("builds checked against the library: {}", ran.join(", "));
        }
    }
}
