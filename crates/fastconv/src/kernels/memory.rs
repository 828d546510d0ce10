//! Output buffers: not zeroed first where a pass writes every value, zeroed on all
//! threads where it does not.

use std::mem::MaybeUninit;

/// A buffer of `n` values not written yet, for a pass that writes every one of them
/// before anything reads the buffer ([`assume_written`] then gives the values):
/// filling a 13 MB output with zeros first costs a pass over memory for nothing.
/// This crate's unit tests (and builds with debug assertions) fill it with `0xFF`
/// bytes (NaN as a float), so that a value a pass leaves unwritten shows in their
/// comparisons against candle instead of reading as a plausible zero.
#[allow(unsafe_code)]
pub(crate) fn unwritten<T>(n: usize) -> Vec<MaybeUninit<T>> {
    let mut v: Vec<MaybeUninit<T>> = Vec::with_capacity(n);
    // SAFETY: the capacity is `n`, and `MaybeUninit` values need no initialisation.
    unsafe { v.set_len(n) };
    if cfg!(any(test, debug_assertions)) {
        // SAFETY: the `n` values lie inside the allocation, and `MaybeUninit<T>` may
        // hold any bytes.
        unsafe { std::ptr::write_bytes(v.as_mut_ptr(), 0xFF, n) };
    }
    v
}

/// The values of a buffer from [`unwritten`] once a pass has written all of them.
///
/// # Safety
/// Every element of `v` has been written.
#[allow(unsafe_code)]
pub(crate) unsafe fn assume_written<T>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr().cast::<T>(), v.len(), v.capacity());
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, so the allocation is that of a
    // `Vec<T>` of the same length and capacity, whose values the caller has written;
    // `ManuallyDrop` keeps `v` from freeing it.
    unsafe { Vec::from_raw_parts(ptr, len, cap) }
}

/// `s` seen as values that may not be written yet, for the writers that also fill
/// [`unwritten`] buffers.
///
/// # Safety
/// Only initialised values may be stored through the result (never
/// `MaybeUninit::uninit()`), so that `s` stays initialised.
#[allow(unsafe_code)]
pub(crate) unsafe fn as_unwritten<T>(s: &mut [T]) -> &mut [MaybeUninit<T>] {
    let len = s.len();
    // SAFETY: same layout and length; the caller keeps the values initialised.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<MaybeUninit<T>>(), len) }
}

/// `n` copies of `zero`, written by all of rayon's threads: the outputs of the passes
/// are large, and a zero fill (with its page faults) on the calling thread alone
/// leaves the other cores idle.
pub(crate) fn zeros<T: Copy + Send + Sync>(n: usize, zero: T) -> Vec<T> {
    use rayon::prelude::*;
    let mut v = Vec::with_capacity(n);
    rayon::iter::repeat_n(zero, n).collect_into_vec(&mut v);
    v
}
