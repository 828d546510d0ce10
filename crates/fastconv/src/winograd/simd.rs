//! The rounds compiled for AVX2 and FMA when the CPU has them (the build targets the
//! x86-64 baseline, where the transforms' eight-lane arithmetic would run on SSE2).

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
    |a, out: (&mut [MaybeUninit<T>], &mut [MaybeUninit<u8>], BatchLayout), par| {
        super::forward::forward_round::<V, T, FMA>(
            a.0, a.1, a.2, a.3, a.4, a.5, a.6, a.7, a.8, out, par,
        )
    }
);

dispatched!(
    weight_round,
    weight_avx2,
    WeightArgs,
    |a, du: &mut [T], par| {
        super::weight_grad::weight_round::<V, T, FMA>(a.0, a.1, a.2, a.3, a.4, a.5, du, par)
    }
);
