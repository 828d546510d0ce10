//! Flush-to-zero for denormal floats on every thread that computes.
//!
//! On x86_64 CPUs an operation on a denormal (|x| < 1.2e-38 in f32) can take far
//! longer than a normal one (figures: `docs/PERFORMANCE.md`); late in training, Adam's
//! second moments and the gradients of dead units drift into that range. Setting MXCSR's
//! FTZ (bit 15) and DAZ (bit 6) treats them as zero, which changes results by less than
//! 1.2e-38 per value.

/// Sets FTZ and DAZ on the calling thread and on every thread of rayon's global pool
/// (candle's and gemm's workers). Threads spawned later by these threads inherit the
/// setting. Returns whether the CPU supports it (false on other architectures, where
/// this does nothing).
pub fn flush_denormals() -> bool {
    if !set_on_this_thread() {
        return false;
    }
    rayon::broadcast(|_| {
        set_on_this_thread();
    });
    true
}

/// Whether FTZ and DAZ are both set on the calling thread.
pub fn denormals_flushed() -> bool {
    imp::read().is_some_and(|csr| csr & imp::FTZ_DAZ == imp::FTZ_DAZ)
}

fn set_on_this_thread() -> bool {
    match imp::read() {
        Some(csr) => {
            imp::write(csr | imp::FTZ_DAZ);
            true
        }
        None => false,
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod imp {
    pub const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

    pub fn read() -> Option<u32> {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit MXCSR register (present on every x86_64
        // CPU) into the given, valid and writable, u32.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
        }
        Some(csr)
    }

    pub fn write(csr: u32) {
        // SAFETY: ldmxcsr loads MXCSR from a valid u32; the value only differs from the
        // current one in the FTZ and DAZ bits, which no reserved bit overlaps.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly));
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub const FTZ_DAZ: u32 = 0;

    pub fn read() -> Option<u32> {
        None
    }

    pub fn write(_csr: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushing_turns_denormal_products_into_zero() {
        // Run on a fresh thread so the rest of the test binary keeps IEEE semantics.
        std::thread::spawn(|| {
            let before = std::hint::black_box(1e-38f32) * std::hint::black_box(0.5f32);
            assert!(before > 0.0, "a denormal result without FTZ");
            if set_on_this_thread() {
                assert!(denormals_flushed());
                let after = std::hint::black_box(1e-38f32) * std::hint::black_box(0.5f32);
                assert_eq!(after, 0.0);
            }
        })
        .join()
        .unwrap();
    }
}
