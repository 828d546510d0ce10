//! Eight values as one, with element-wise arithmetic: the transforms written for one
//! value run on eight channels (or tiles) at once and compile to vector code.

use std::mem::MaybeUninit;

use crate::kernels::Elem;

/// Lanes processed together by the transforms: eight f32 fill one AVX register.
pub(super) const LANES: usize = 8;

/// `LANES` values with element-wise arithmetic, so the transforms written for one
/// value run on eight columns (or tiles) at once and compile to vector code.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
pub(super) struct Lanes<T>(pub(super) [T; LANES]);

macro_rules! lanes_op {
    ($tr:ident, $f:ident, $op:tt) => {
        impl<T: Elem> std::ops::$tr for Lanes<T> {
            type Output = Self;
            #[inline(always)]
            #[allow(clippy::assign_op_pattern)] // `$op=` is not an operator token
            #[allow(clippy::needless_range_loop)] // index loops on purpose, see below
            fn $f(self, o: Self) -> Self {
                // Index loops, not iterator adaptors: those are separate generic
                // functions that the compiler may keep out of line, without the
                // AVX features of the round that calls them.
                let mut r = self.0;
                for i in 0..LANES {
                    r[i] = r[i] $op o.0[i];
                }
                Lanes(r)
            }
        }
    };
}
lanes_op!(Add, add, +);
lanes_op!(Sub, sub, -);
lanes_op!(Mul, mul, *);

impl<T: Elem> std::ops::AddAssign for Lanes<T> {
    #[inline(always)]
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl<T: Elem> Elem for Lanes<T> {
    const ZERO: Self = Lanes([T::ZERO; LANES]);
    const ONE: Self = Lanes([T::ONE; LANES]);
    fn from_f64(v: f64) -> Self {
        Lanes([T::from_f64(v); LANES])
    }

    #[inline(always)]
    fn elu(self) -> Self {
        Lanes(self.0.map(T::elu))
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // index loops on purpose (see `lanes_op!`)
    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        let mut r = self.0;
        for i in 0..LANES {
            r[i] = r[i].fused_mul_add(a.0[i], b.0[i]);
        }
        Lanes(r)
    }
}

/// The `LANES` values at `src[at..]`.
#[inline(always)]
pub(super) fn load<T: Elem>(src: &[T], at: usize) -> Lanes<T> {
    let mut l = Lanes::<T>::ZERO;
    l.0.copy_from_slice(&src[at..at + LANES]);
    l
}

/// Writes `l` to `dst[at..]`.
#[inline(always)]
pub(super) fn store<T: Elem>(l: Lanes<T>, dst: &mut [T], at: usize) {
    dst[at..at + LANES].copy_from_slice(&l.0);
}

/// [`load`] without the bounds check, for loops that assert their largest index
/// once instead of at every access.
///
/// # Safety
/// `at + LANES <= src.len()`.
#[inline(always)]
#[allow(unsafe_code)]
pub(super) unsafe fn load_unchecked<T: Elem>(src: &[T], at: usize) -> Lanes<T> {
    debug_assert!(at + LANES <= src.len());
    let mut l = Lanes::<T>::ZERO;
    // SAFETY: in bounds by the caller's contract.
    l.0.copy_from_slice(unsafe { src.get_unchecked(at..at + LANES) });
    l
}

/// [`store`] without the bounds check (see [`load_unchecked`]).
///
/// # Safety
/// `at + LANES <= dst.len()`.
#[inline(always)]
#[allow(unsafe_code)]
pub(super) unsafe fn store_unchecked<T: Elem>(l: Lanes<T>, dst: &mut [T], at: usize) {
    debug_assert!(at + LANES <= dst.len());
    // SAFETY: in bounds by the caller's contract.
    unsafe { dst.get_unchecked_mut(at..at + LANES) }.copy_from_slice(&l.0);
}

/// [`store`] into a buffer that may not be written yet.
#[inline(always)]
pub(super) fn store_into<T: Elem>(l: Lanes<T>, dst: &mut [MaybeUninit<T>], at: usize) {
    for (d, &v) in dst[at..at + LANES].iter_mut().zip(&l.0) {
        d.write(v);
    }
}

/// [`store_unchecked`] into a buffer that may not be written yet.
///
/// # Safety
/// `at + LANES <= dst.len()`.
#[inline(always)]
#[allow(unsafe_code)]
pub(super) unsafe fn store_into_unchecked<T: Elem>(
    l: Lanes<T>,
    dst: &mut [MaybeUninit<T>],
    at: usize,
) {
    debug_assert!(at + LANES <= dst.len());
    // SAFETY: in bounds by the caller's contract, and `MaybeUninit<T>` has the layout
    // of `T`.
    unsafe {
        let to = dst.as_mut_ptr().add(at).cast::<T>();
        std::ptr::copy_nonoverlapping(l.0.as_ptr(), to, LANES);
    }
}

impl<T: Elem> Lanes<T> {
    /// ReLU lane by lane; NaN passes through (it is not <= 0), as in candle's relu.
    #[inline(always)]
    pub(super) fn relu(self) -> Self {
        let mut r = self.0;
        for e in r.iter_mut() {
            *e = if *e <= T::ZERO { T::ZERO } else { *e };
        }
        Lanes(r)
    }
}
