//! Keeping freed memory for reuse instead of returning it to the kernel.
//!
//! A training step allocates and frees tens of tensors of about 13 MB (batch 128).
//! glibc serves blocks that large with fresh `mmap`s and trims the heap when it frees
//! them, so every step page-faults and zeroes the same memory again (a measured share:
//! `docs/PERFORMANCE.md`). Raising the mmap and trim
//! thresholds keeps the memory in the heap, where the next step reuses it; peak memory
//! stays what the step needs. One arena for all threads: the work runs on a rayon
//! worker ([`super::on_pool_worker`]), and a thread's own arena grows by heaps of at
//! most 64 MB, so it serves larger blocks (GapCnn's activations for a batch of 1,000
//! images are 100 MB) by fresh maps whatever the threshold (inference at batch 1,000
//! fell from 17,400 to 11,000 images/s before this).

/// Blocks up to this size come from the heap and are reused.
const MMAP_THRESHOLD: i32 = 512 << 20;
/// Free memory kept at the top of the heap before it is returned.
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Tells glibc's malloc to reuse freed large blocks, from one arena. Returns whether it
/// took effect (false with another C library, where it does nothing). Call it before any
/// thread but the main one allocates (as [`super::tune_cpu_runtime`] does): glibc fixes
/// its arena count at that first allocation, and a thread that got an arena of its own
/// keeps it.
pub fn keep_freed_memory() -> bool {
    imp::keep_freed_memory()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod imp {
    pub fn keep_freed_memory() -> bool {
        // SAFETY: mallopt only changes malloc's tuning parameters, may be called at
        // any time from any thread, and rejects values out of range (returning 0).
        let a = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, super::MMAP_THRESHOLD) };
        let b = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, super::TRIM_THRESHOLD) };
        let c = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        a == 1 && b == 1 && c == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn keep_freed_memory() -> bool {
        false
    }
}
