//! One checked wrapper around the `gemm` crate's matrix product: the only call into
//! `gemm`, its operands bounds-checked against their shapes and strides.

use gemm::Parallelism;
use std::mem::MaybeUninit;

use crate::kernels::Elem;

/// A strided matrix operand: `data[i * rs + j * cs]` is element `(i, j)`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn rows_t(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

fn covers(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

/// `dst (m x n, row-major) (+)= lhs (m x k) * rhs (k x n)`, through `gemm`.
///
/// Panics if an operand is too short for its shape and strides: every caller sizes
/// its buffers from one [`Geometry`], so a failure here is a bug, not bad input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallelism: Parallelism,
) {
    matmul_strided(m, n, k, (dst, n, 1), accumulate, lhs, rhs, parallelism);
}

/// [`matmul`] into a destination with row stride `rs` and column stride `cs`.
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_strided<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    (dst, rs, cs): (&mut [T], usize, usize),
    accumulate: bool,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallelism: Parallelism,
) {
    assert!(
        covers(dst.len(), m, n, rs, cs),
        "matmul: destination too short"
    );
    // SAFETY: every index gemm touches in dst, (i, j) with i < m, j < n, lies inside
    // it (asserted above), and dst is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm_into(
            m,
            n,
            k,
            (dst.as_mut_ptr(), rs, cs),
            accumulate,
            lhs,
            rhs,
            parallelism,
        )
    }
}

/// [`matmul`] into a destination not written yet (see [`unwritten`]), which the
/// product writes in full (`m x n`, row-major, `k > 0`): the written values.
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_unwritten<'a, T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &'a mut [MaybeUninit<T>],
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallelism: Parallelism,
) -> &'a mut [T] {
    assert!(
        dst.len() == m * n && k > 0,
        "matmul: the destination is not m x n, or there is nothing to sum"
    );
    let (to, len) = (dst.as_mut_ptr().cast::<T>(), dst.len());
    // SAFETY: the (i, j) with i < m, j < n that gemm writes lie inside dst (its length
    // is m * n, asserted above; `MaybeUninit<T>` has the layout of `T`), dst is borrowed
    // mutably, so it aliases neither operand, and without accumulation gemm reads
    // nothing from it.
    unsafe { gemm_into(m, n, k, (to, n, 1), false, lhs, rhs, parallelism) };
    // SAFETY: with k > 0 the product wrote every one of the m * n values.
    unsafe { std::slice::from_raw_parts_mut(to, len) }
}

/// `dst (+)= lhs · rhs` through `gemm`, for a destination given as a pointer with row
/// and column strides; checks the operands, not the destination.
///
/// # Safety
/// `dst + i * rs + j * cs` must be valid for writes (and for reads when `accumulate`)
/// for every `i < m`, `j < n`, and alias neither operand.
#[allow(unsafe_code)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    (dst, rs, cs): (*mut T, usize, usize),
    accumulate: bool,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallelism: Parallelism,
) {
    assert!(
        covers(lhs.data.len(), m, k, lhs.rs, lhs.cs),
        "matmul: lhs too short"
    );
    assert!(
        covers(rhs.data.len(), k, n, rhs.rs, rhs.cs),
        "matmul: rhs too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index gemm reads from lhs, (i, l) with
    // i < m, l < k, and from rhs, (l, j) with l < k, j < n, inside its slice; the
    // caller vouches for dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            cs as isize,
            rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}
