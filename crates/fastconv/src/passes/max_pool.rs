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
            if k == 2 {
                return pool2_with_codes(plane, (w, wo), (out, codes));
            }
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

/// [`forward_with_codes`] of one plane of width `w` for 2 x 2 windows, two input rows
/// at a time without index arithmetic (which kept the general loop scalar): the same
/// first maximum, in the same order, as [`argmax`], with its code `dy * 2 + dx`.
#[inline(always)]
fn pool2_with_codes<T: Elem>(
    plane: &[T],
    (w, wo): (usize, usize),
    (out, codes): (&mut [T], &mut [u8]),
) {
    let rows = plane.chunks_exact(2 * w);
    for ((out, codes), rows) in out
        .chunks_exact_mut(wo)
        .zip(codes.chunks_exact_mut(wo))
        .zip(rows)
    {
        let (r0, r1) = rows.split_at(w);
        let windows = r0.chunks_exact(2).zip(r1.chunks_exact(2));
        for ((o, c), (p0, p1)) in out.iter_mut().zip(codes.iter_mut()).zip(windows) {
            let (mut m, mut code) = (p0[0], 0u8);
            if p0[1] > m {
                (m, code) = (p0[1], 1);
            }
            if p1[0] > m {
                (m, code) = (p1[0], 2);
            }
            if p1[1] > m {
                (m, code) = (p1[1], 3);
            }
            *o = m;
            *c = code;
        }
    }
}

/// Largest window [`forward_with_codes`] takes: offsets within it must fit a byte.
pub(crate) const MAX_CODED_WINDOW: usize = 15;

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2 x 2 loop against [`argmax`] window by window: values with many ties (ReLU's
    /// zeros), NaNs, odd plane sizes (the last row and column unpooled).
    #[test]
    fn two_by_two_windows_keep_argmaxs_first_maximum_and_code() {
        for (planes, h, w) in [(3, 6, 8), (2, 7, 9), (1, 2, 2), (4, 5, 3)] {
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| match (i * 7919) % 13 {
                    0..=4 => 0.0,
                    5 => f32::NAN,
                    6 => 1.0,
                    r => (r as f32 * 0.37).sin(),
                })
                .collect();
            let (ho, wo) = (h / 2, w / 2);
            let (mut out, mut codes) = (vec![0f32; planes * ho * wo], vec![9u8; planes * ho * wo]);
            forward_with_codes(&x, planes, (h, w), 2, (&mut out, &mut codes));
            for p in 0..planes {
                let plane = &x[p * h * w..(p + 1) * h * w];
                for oy in 0..ho {
                    for ox in 0..wo {
                        let best = argmax(plane, w, 2, oy, ox);
                        let at = p * ho * wo + oy * wo + ox;
                        let code = (best / w - oy * 2) * 2 + best % w - ox * 2;
                        assert_eq!(out[at].to_bits(), plane[best].to_bits(), "value at {at}");
                        assert_eq!(usize::from(codes[at]), code, "code at {at}");
                    }
                }
            }
        }
    }
}
