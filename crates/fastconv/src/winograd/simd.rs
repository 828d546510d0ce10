//! The rounds compiled for AVX-512 or AVX2 and FMA when the CPU has them (the build
//! targets the x86-64 baseline, where the transforms' eight-lane arithmetic would run on
//! SSE2).

use gemm::Parallelism;
use std::mem::MaybeUninit;

use super::scratch::Scratch;
use super::source::Source;
use super::variant::Variant;
use super::Tiling;
use crate::kernels::{Elem, Geometry};
use crate::options::{Activation, BatchLayout};

/// `forward_round`'s inputs, less the output and the pooling record.
pub(super) type ForwardArgs<'a, T> = (
    &'a Geometry,
    &'a Tiling,
    &'a mut Scratch<T>,
    &'a [T],
    Source<'a, T>,
    usize,
    &'a [T],
    Activation,
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

/// `backward_round`'s inputs, less the outputs.
pub(super) type BackwardArgs<'a, T> = (
    &'a Geometry,
    &'a Geometry,
    &'a Tiling,
    &'a mut Scratch<T>,
    &'a mut Scratch<T>,
    &'a [T],
    Source<'a, T>,
    Source<'a, T>,
    usize,
    &'a [T],
);

/// `pub(super) fn $name(args, out, par)`, which runs `$body` compiled for AVX-512 (in
/// `$avx512`) or AVX2+FMA (in `$avx`) when [`crate::kernels::simd_path`] says the CPU
/// has them (and no limit forbids them), and for the build's baseline otherwise. The
/// body is the same generic code in all three, and FMA (a single rounding) in both
/// AVX builds, so the two agree to the bit; the baseline rounds twice. `WIDE` only
/// tells the AVX-512 instance from the AVX2 one: the rounds' closures and the iterator
/// code around them are generic functions, and one instance shared by both builds is
/// compiled out of line without either's features (its multiply-adds become calls).
macro_rules! dispatched {
    (
        $name:ident,
        $avx:ident,
        $avx512:ident,
        $args:ident,
        |$a:ident, $o:ident: $oty:ty, $p:ident| $body:expr
    ) => {
        pub(super) fn $name<V: Variant, T: Elem>($a: $args<'_, T>, $o: $oty, $p: Parallelism) {
            const FMA: bool = false;
            const WIDE: bool = false;
            #[cfg(target_arch = "x86_64")]
            match crate::kernels::simd_path() {
                // SAFETY (both arms): `simd_path` returns a path only when
                // `is_x86_feature_detected!` found its features on this CPU, the only
                // requirement of a `target_feature` function.
                crate::kernels::SimdPath::Avx512 => {
                    #[allow(unsafe_code)]
                    unsafe {
                        $avx512::<V, T>($a, $o, $p)
                    };
                    return;
                }
                crate::kernels::SimdPath::Avx2 => {
                    #[allow(unsafe_code)]
                    unsafe {
                        $avx::<V, T>($a, $o, $p)
                    };
                    return;
                }
                crate::kernels::SimdPath::Baseline => {}
            }
            $body
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(unsafe_code)]
        unsafe fn $avx<V: Variant, T: Elem>($a: $args<'_, T>, $o: $oty, $p: Parallelism) {
            const FMA: bool = true;
            const WIDE: bool = false;
            $body
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        #[allow(unsafe_code)]
        unsafe fn $avx512<V: Variant, T: Elem>($a: $args<'_, T>, $o: $oty, $p: Parallelism) {
            const FMA: bool = true;
            const WIDE: bool = true;
            $body
        }
    };
}

dispatched!(
    forward_round,
    forward_avx2,
    forward_avx512,
    ForwardArgs,
    |a, out: (&mut [MaybeUninit<T>], &mut [MaybeUninit<u8>], BatchLayout), par| {
        super::forward::forward_round::<V, T, FMA, WIDE>(
            a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7, a.8, out, par,
        )
    }
);

dispatched!(
    weight_round,
    weight_avx2,
    weight_avx512,
    WeightArgs,
    |a, du: &mut [T], par| {
        super::weight_grad::weight_round::<V, T, FMA, WIDE>(a.0, a.1, a.2, a.3, a.4, a.5, du, par)
    }
);

dispatched!(
    backward_round,
    backward_avx2,
    backward_avx512,
    BackwardArgs,
    |a, out: (&mut [MaybeUninit<T>], &mut [T], BatchLayout), par| {
        super::backward::backward_round::<V, T, FMA, WIDE>(
            (a.0, a.1),
            a.2,
            (a.3, a.4),
            a.5,
            (a.6, a.7),
            a.8,
            a.9,
            out,
            par,
        )
    }
);
