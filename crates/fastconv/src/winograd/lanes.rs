//! Eight (or sixteen) values as one, with element-wise arithmetic: the transforms
//! written for one value run on eight channels (or tiles) at once and compile to vector
//! code; the AVX-512 build runs the f32 transforms on sixteen (`Lanes<f32, WIDE_LANES>`,
//! one `zmm` register). Arithmetic is lane by lane, so the width never changes a value.

use std::mem::MaybeUninit;

use crate::kernels::Elem;

/// Lanes processed together by the transforms: eight f32 fill one AVX register.
pub(super) const LANES: usize = 8;

/// Lanes of the AVX-512 build's f32 transforms: sixteen f32 fill one `zmm` register.
pub(super) const WIDE_LANES: usize = 16;

/// Whether a round compiled for AVX-512 (`wide`) runs its transforms over `c`
/// channels of `T` on [`WIDE_LANES`]: f32 (sixteen fill a `zmm` register; eight f64
/// already do), `c` a multiple of sixteen.
#[inline(always)]
pub(super) fn wide_lanes<T>(wide: bool, c: usize) -> bool {
    wide && std::mem::size_of::<T>() == 4 && c.is_multiple_of(WIDE_LANES)
}

/// `L` values with element-wise arithmetic, so the transforms written for one
/// value run on eight (`L`) columns (or tiles) at once and compile to vector code.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
pub(super) struct Lanes<T, const L: usize = LANES>(pub(super) [T; L]);

macro_rules! lanes_op {
    ($tr:ident, $f:ident, $op:tt) => {
        impl<T: Elem, const L: usize> std::ops::$tr for Lanes<T, L> {
            type Output = Self;
            #[inline(always)]
            #[allow(clippy::assign_op_pattern)] // `$op=` is not an operator token
            #[allow(clippy::needless_range_loop)] // index loops on purpose, see below
            fn $f(self, o: Self) -> Self {
                // Index loops, not iterator adaptors: those are separate generic
                // functions that the compiler may keep out of line, without the
                // AVX features of the round that calls them.
                let mut r = self.0;
                for i in 0..L {
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

impl<T: Elem, const L: usize> std::ops::AddAssign for Lanes<T, L> {
    #[inline(always)]
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl<T: Elem, const L: usize> Elem for Lanes<T, L> {
    const ZERO: Self = Lanes([T::ZERO; L]);
    const ONE: Self = Lanes([T::ONE; L]);
    fn from_f64(v: f64) -> Self {
        Lanes([T::from_f64(v); L])
    }

    #[inline(always)]
    fn elu(self) -> Self {
        Lanes(self.0.map(T::elu))
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // index loops on purpose (see `lanes_op!`)
    fn fused_mul_add(self, a: Self, b: Self) -> Self {
        let mut r = self.0;
        for i in 0..L {
            r[i] = r[i].fused_mul_add(a.0[i], b.0[i]);
        }
        Lanes(r)
    }
}

/// The `L` values at `src[at..]`.
#[inline(always)]
pub(super) fn load<T: Elem, const L: usize>(src: &[T], at: usize) -> Lanes<T, L> {
    let mut l = Lanes::<T, L>::ZERO;
    l.0.copy_from_slice(&src[at..at + L]);
    l
}

/// Writes `l` to `dst[at..]`.
#[inline(always)]
pub(super) fn store<T: Elem, const L: usize>(l: Lanes<T, L>, dst: &mut [T], at: usize) {
    dst[at..at + L].copy_from_slice(&l.0);
}

/// [`load`] without the bounds check, for loops that assert their largest index
/// once instead of at every access.
///
/// # Safety
/// `at + L <= src.len()`.
#[inline(always)]
#[allow(unsafe_code)]
pub(super) unsafe fn load_unchecked<T: Elem, const L: usize>(src: &[T], at: usize) -> Lanes<T, L> {
    debug_assert!(at + L <= src.len());
    let mut l = Lanes::<T, L>::ZERO;
    // SAFETY: in bounds by the caller's contract.
    l.0.copy_from_slice(unsafe { src.get_unchecked(at..at + L) });
    l
}

/// [`store`] without the bounds check (see [`load_unchecked`]).
///
/// # Safety
/// `at + L <= dst.len()`.
#[inline(always)]
#[allow(unsafe_code)]
pub(super) unsafe fn store_unchecked<T: Elem, const L: usize>(
    l: Lanes<T, L>,
    dst: &mut [T],
    at: usize,
) {
    debug_assert!(at + L <= dst.len());
    // SAFETY: in bounds by the caller's contract.
    unsafe { dst.get_unchecked_mut(at..at + L) }.copy_from_slice(&l.0);
}

/// [`store`] into a buffer that may not be written yet.
#[inline(always)]
pub(super) fn store_into<T: Elem, const L: usize>(
    l: Lanes<T, L>,
    dst: &mut [MaybeUninit<T>],
    at: usize,
) {
    for (d, &v) in dst[at..at + L].iter_mut().zip(&l.0) {
        d.write(v);
    }
}

/// [`store_unchecked`] into a buffer that may not be written yet.
///
/// # Safety
/// `at + L <= dst.len()`.
#[inline(always)]
#[allow(unsafe_code)]
pub(super) unsafe fn store_into_unchecked<T: Elem, const L: usize>(
    l: Lanes<T, L>,
    dst: &mut [MaybeUninit<T>],
    at: usize,
) {
    debug_assert!(at + L <= dst.len());
    // SAFETY: in bounds by the caller's contract, and `MaybeUninit<T>` has the layout
    // of `T`.
    unsafe {
        let to = dst.as_mut_ptr().add(at).cast::<T>();
        std::ptr::copy_nonoverlapping(l.0.as_ptr(), to, L);
    }
}

impl<T: Elem, const L: usize> Lanes<T, L> {
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
