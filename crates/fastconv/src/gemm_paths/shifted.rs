//! Stride-1 convolutions without im2col: each kernel tap is one GEMM over a shifted
//! view of the zero-padded input.
//!
//! With the input padded to `hp x wp` and stored row after row, the pixel that output
//! `(oy, ox)` sees through tap `(ky, kx)` sits at `(oy + ky) * wp + ox + kx`: for every
//! tap, the whole `C_in x (ho * wp)` operand is the padded planes read from offset
//! `ky * wp + kx`, a plain strided matrix. The output is computed over `ho x wp`
//! (its last `wp - wo` columns are discarded), so there is no 9x unfolded copy, only
//! the padded copy of the input.

use super::{matmul, Mat};
use crate::kernels::{Elem, Geometry};
use gemm::Parallelism;

/// Per-thread buffers for one geometry.
pub(crate) struct Scratch<T> {
    /// `C_in` padded planes of `plane` elements (zero borders, reused across images).
    padded: Vec<T>,
    /// One image's output (or output gradient) in padded coordinates.
    wide: Vec<T>,
}

/// Sizes of the padded layout.
#[derive(Clone, Copy)]
struct Padded {
    wp: usize,
    /// Elements per padded plane, with `k - 1` spare zeros so the last tap's view ends
    /// inside the buffer.
    plane: usize,
    /// Output pixels per channel in padded coordinates: `ho * wp`.
    wide: usize,
}

fn padded(g: &Geometry) -> Padded {
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    Padded {
        wp,
        plane: hp * wp + g.k - 1,
        wide: g.ho * wp,
    }
}

impl<T: Elem> Scratch<T> {
    pub fn new(g: &Geometry) -> Self {
        let p = padded(g);
        Self {
            padded: vec![T::ZERO; g.c_in * p.plane],
            wide: vec![T::ZERO; g.c_out * p.wide],
        }
    }

    /// Copies one image into the interior of the padded planes.
    fn load(&mut self, g: &Geometry, x: &[T]) {
        let p = padded(g);
        for c in 0..g.c_in {
            let dst = &mut self.padded[c * p.plane..(c + 1) * p.plane];
            for iy in 0..g.h {
                let at = (iy + g.pad) * p.wp + g.pad;
                dst[at..at + g.w].copy_from_slice(&x[(c * g.h + iy) * g.w..][..g.w]);
            }
        }
    }
}

/// Whether this path applies: stride 1, enough input channels that a tap's GEMM is not
/// too shallow, a kernel of at most 3x3 (5x5 means 25 shallow GEMMs) and a wide enough
/// image that the discarded columns cost little (at 7x7 they are 2 in 9). The rule
/// follows per-layer timings against im2col (`docs/PERFORMANCE.md`).
pub(crate) fn applies(g: &Geometry) -> bool {
    g.stride == 1 && g.c_in >= 16 && g.k <= 3 && g.wo >= 12
}

/// One image's convolution (no bias) into `y` (`C_out x ho x wo`).
pub(crate) fn forward_image<T: Elem>(
    g: &Geometry,
    s: &mut Scratch<T>,
    x: &[T],
    w: &[T],
    y: &mut [T],
    par: Parallelism,
) {
    let p = padded(g);
    let k2 = g.k * g.k;
    s.load(g, x);
    for ky in 0..g.k {
        for kx in 0..g.k {
            let tap = ky * g.k + kx;
            let off = ky * p.wp + kx;
            matmul(
                g.c_out,
                p.wide,
                g.c_in,
                &mut s.wide,
                tap > 0,
                Mat {
                    data: &w[tap..],
                    rs: g.c_in * k2,
                    cs: k2,
                },
                Mat {
                    data: &s.padded[off..],
                    rs: p.plane,
                    cs: 1,
                },
                par,
            );
        }
    }
    for (co, plane) in y.chunks_exact_mut(g.out_hw()).enumerate() {
        let src = &s.wide[co * p.wide..(co + 1) * p.wide];
        for (row, wide_row) in plane.chunks_exact_mut(g.wo).zip(src.chunks_exact(p.wp)) {
            row.copy_from_slice(&wide_row[..g.wo]);
        }
    }
}

/// Adds one image's weight gradient, tap-major (`k*k x C_out x C_in`), into `acc`.
pub(crate) fn weight_grad_image<T: Elem>(
    g: &Geometry,
    s: &mut Scratch<T>,
    x: &[T],
    gy: &[T],
    acc: &mut [T],
    par: Parallelism,
) {
    let p = padded(g);
    s.load(g, x);
    // The output gradient in padded coordinates, zero in the discarded columns.
    for (co, plane) in gy.chunks_exact(g.out_hw()).enumerate() {
        let dst = &mut s.wide[co * p.wide..(co + 1) * p.wide];
        for (wide_row, row) in dst.chunks_exact_mut(p.wp).zip(plane.chunks_exact(g.wo)) {
            wide_row[..g.wo].copy_from_slice(row);
            wide_row[g.wo..].fill(T::ZERO);
        }
    }
    let block = g.c_out * g.c_in;
    for ky in 0..g.k {
        for kx in 0..g.k {
            let tap = ky * g.k + kx;
            let off = ky * p.wp + kx;
            matmul(
                g.c_out,
                g.c_in,
                p.wide,
                &mut acc[tap * block..(tap + 1) * block],
                true,
                Mat::rows(&s.wide, p.wide),
                Mat {
                    data: &s.padded[off..],
                    rs: 1,
                    cs: p.plane,
                },
                par,
            );
        }
    }
}

/// Reorders a tap-major weight gradient (`k*k x C_out x C_in`) into PyTorch's layout.
pub(crate) fn untap<T: Elem>(g: &Geometry, taps: &[T], dw: &mut [T]) {
    let k2 = g.k * g.k;
    for t in 0..k2 {
        for co in 0..g.c_out {
            for ci in 0..g.c_in {
                dw[(co * g.c_in + ci) * k2 + t] = taps[(t * g.c_out + co) * g.c_in + ci];
            }
        }
    }
}
