//! Process tuning for fast CPU work, in one place: denormals flushed to zero on every
//! worker thread ([`flush_denormals`]), malloc keeping freed large blocks
//! ([`keep_freed_memory`]), and a short spin for candle's element-wise worker pool.
//! [`tune_cpu_runtime`] does all three; binaries call it once at start-up, libraries
//! never do. Binaries then run their work through [`on_pool_worker`]. None of it changes which algorithm runs, and only the flush changes
//! results (by less than 1.2e-38 per value).

mod allocator;
mod denormal;

pub use allocator::keep_freed_memory;
pub use denormal::{denormals_flushed, flush_denormals};

/// What [`tune_cpu_runtime`] could switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTuning {
    /// Denormals flush to zero on this thread and rayon's workers.
    pub denormals_flushed: bool,
    /// malloc keeps freed large blocks for reuse.
    pub freed_memory_kept: bool,
    /// candle's element-wise worker threads park soon after their work instead of
    /// spinning (false when `CANDLE_BARRIER_POOL_SPIN_LIMIT` was already set).
    pub candle_spin_limited: bool,
}

/// Process-wide settings for fast CPU work, for binaries to call once at start-up
/// (before spawning threads of their own and before any candle operation):
/// flush-to-zero for denormals, malloc tuning, and a short spin for candle's
/// element-wise worker pool. Libraries never call it.
pub fn tune_cpu_runtime() -> CpuTuning {
    // Before any thread is spawned: glibc fixes the number of arenas the first time a
    // thread other than the main one allocates. Set later, a rayon worker that
    // allocated first keeps an arena of its own, whose heaps (64 MB at most) are
    // unmapped when their last block is freed: the worker that runs the binaries' work
    // then mapped, faulted in and unmapped a fresh heap for every large tensor of every
    // step (CW-L2: ~100,000 page faults a second, `docs/PERFORMANCE.md`).
    let freed_memory_kept = keep_freed_memory();
    // The binaries' work runs on these workers (see `on_pool_worker`): give them the
    // main thread's usual 8 MiB of stack rather than the 2 MiB of a spawned thread.
    // (Fails harmlessly when the pool already exists.)
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global();
    CpuTuning {
        candle_spin_limited: limit_candle_spinning(),
        freed_memory_kept,
        denormals_flushed: flush_denormals(),
    }
}

/// Runs `work` on a thread of rayon's global pool and returns its result (a panic in
/// `work` resumes on the caller). For binaries, after [`tune_cpu_runtime`]: every
/// parallel step of the passes (the convolutions, `gemm`'s products) then starts on a
/// worker, which does its share itself and wakes only the others. Called from the main
/// thread instead, each step wakes every worker and puts the caller to sleep until they
/// finish: one more thread than cores asleep and woken hundreds of times an iteration.
/// The Type I attack's iterations were 10-20 % faster and the class transition's 25 %
/// (90 pairs, 2 threads, `docs/PERFORMANCE.md`). Nothing in the arithmetic depends on
/// the thread it runs on.
pub fn on_pool_worker<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// candle 0.11's element-wise ops run on a worker pool of its own, whose threads spin
/// 25,000 times after each op before they park: where cores are few, that spinning
/// takes them from the rayon workers that run these convolutions. 1,000 spins leave
/// them to the convolutions (the measured gain: `docs/PERFORMANCE.md`). Sets
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` unless the user did, which candle reads when it
/// starts the pool (its first element-wise op).
fn limit_candle_spinning() -> bool {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_some() {
        return false;
    }
    std::env::set_var(VAR, "1000");
    true
}
