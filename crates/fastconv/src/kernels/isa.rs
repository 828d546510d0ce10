//! The instruction sets the Winograd rounds (and the ELUs' vectorised `exp`) are built
//! for, and the process-wide cap on which of them runs (at the bottom of the crate:
//! `winograd` dispatches on it, and the crate root re-exports it).

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction sets the Winograd rounds are compiled for, chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdPath {
    /// The build's x86-64 baseline (SSE2), or any other architecture.
    Baseline,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 (F, VL) with AVX2 and FMA: the same arithmetic in 32 vector registers
    /// and EVEX encodings.
    Avx512,
}

impl std::fmt::Display for SimdPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SimdPath::Baseline => "baseline",
            SimdPath::Avx2 => "avx2+fma",
            SimdPath::Avx512 => "avx512",
        })
    }
}

/// The best path this CPU runs.
pub fn cpu_simd_path() -> SimdPath {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            if has!("avx512f") && has!("avx512vl") {
                return SimdPath::Avx512;
            }
            return SimdPath::Avx2;
        }
    }
    SimdPath::Baseline
}

/// 0: no limit; otherwise 1 + the highest path allowed (see [`limit_simd_path`]).
static SIMD_LIMIT: AtomicU8 = AtomicU8::new(0);

/// Caps the instruction set of the Winograd rounds for the whole process (`None`: the
/// best the CPU has, the default): for comparing paths, or ruling one out when a result
/// looks wrong. Every path computes the same products in the same order, so they agree
/// to the bit.
pub fn limit_simd_path(limit: Option<SimdPath>) {
    let code = limit.map_or(0, |p| 1 + p as u8);
    SIMD_LIMIT.store(code, Ordering::Relaxed);
}

/// The path the Winograd rounds take now: the CPU's best, capped by
/// [`limit_simd_path`].
pub fn simd_path() -> SimdPath {
    let best = cpu_simd_path();
    match SIMD_LIMIT.load(Ordering::Relaxed) {
        0 => best,
        1 => SimdPath::Baseline,
        2 => best.min(SimdPath::Avx2),
        _ => best,
    }
}
