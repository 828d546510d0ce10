//! Max-pooling over slices: square windows at a stride equal to their side, each
//! window's first maximum (row by row) found once and used by the value, the gradient
//! and the pooling record (the maximum's offset in its window, one byte).

use rayon::prelude::*;

use crate::kernels::{zeros, Elem};

/// Index within the plane of each window's first maximum, visited row by row.
#[inline(always)]
pub(crate) fn argmax<T: Elem>(plane: &[T], w: usize, k: usize, oy: usize, ox: usize) -> usize {
    let mut best = oy * k * w + ox * k;
    if k == 2 {
        // The common window, unrolled: same order, same first maximum.
        for i in [best + 1, best + w, best + w + 1] {
            if plane[i] > plane[best] {
                best = i;
            }
        }
        return best;
    }
    for dy in 0..k {
        for dx in 0..k {
            let i = (oy * k + dy) * w + ox * k + dx;
            if plane[i] > plane[best] {
                best = i;
            }
        }
    }
    best
}

/// The pooled planes (`planes` of `h x w`, windows `k x k`).
pub(crate) fn forward<T: Elem>(x: &[T], planes: usize, h: usize, w: usize, k: usize) -> Vec<T> {
    let (ho, wo) = (h / k, w / k);
    let mut out = zeros(planes * ho * wo, T::ZERO);
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each(|(out, plane)| {
            for oy in 0..ho {
                for ox in 0..wo {
                    out[oy * wo + ox] = plane[argmax(plane, w, k, oy, ox)];
                }
            }
        });
    out
}

/// The input gradient: each window's gradient at its first maximum, zero elsewhere.
pub(crate) fn backward<T: Elem>(
    x: &[T],
    grad: &[T],
    planes: usize,
    h: usize,
    w: usize,
    k: usize,
) -> Vec<T> {
    let (ho, wo) = (h / k, w / k);
    let mut dx = zeros(planes * h * w, T::ZERO);
    if dx.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w).zip(grad.par_chunks(ho * wo)))
        .for_each(|(dx, (plane, g))| {
            for oy in 0..ho {
                for ox in 0..wo {
                    dx[argmax(plane, w, k, oy, ox)] = g[oy * wo + ox];
                }
            }
        });
    dx
}

/// Pooled planes and, for each pooled value, its window's first maximum as an offset
/// `dy * k + dx` within the window: what the unpooling op (`ops::unpool`) needs
/// instead of the input.
pub(crate) fn forward_with_codes<T: Elem>(
    x: &[T],
    planes: usize,
    (h, w): (usize, usize),
    k: usize,
    (out, codes): (&mut [T], &mut [u8]),
) {
    let (ho, wo) = (h / k, w / k);
    if ho * wo == 0 {
        return;
    }
    out.par_chunks_mut(ho * wo)
        .zip(codes.par_chunks_mut(ho * wo))
        .zip(x.par_chunks(h * w))
        .take(planes)
        .for_each(|((out, codes), plane)| {
            for oy in 0..ho {
                for ox in 0..wo {
                    let best = argmax(plane, w, k, oy, ox);
                    out[oy * wo + ox] = plane[best];
                    let (dy, dx) = (best / w - oy * k, best % w - ox * k);
                    // k <= 15 (checked by the caller), so the offset fits a byte.
                    codes[oy * wo + ox] = (dy * k + dx) as u8;
                }
            }
        });
}

/// Largest window [`forward_with_codes`] takes: offsets within it must fit a byte.
pub(crate) const MAX_CODED_WINDOW: usize = 15;
