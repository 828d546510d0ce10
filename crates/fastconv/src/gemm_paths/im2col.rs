//! im2col and col2im over channels-first images: the unfolded operand of the GEMM
//! paths' forward and weight gradient, and its adjoint for the input gradient.

use crate::kernels::{Elem, Geometry};

/// Unfolds one image (`c_in x h x w`) into `cols` (`ckk x out_hw`, row-major): row
/// `(c, ky, kx)` holds the input pixel each output pixel sees through that tap, zero in
/// the padding.
pub(crate) fn im2col<T: Elem>(g: &Geometry, x: &[T], cols: &mut [T]) {
    let hw_out = g.out_hw();
    let (k, s, pad) = (g.k, g.stride, g.pad);
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let r = (c * k + ky) * k + kx;
                let row = &mut cols[r * hw_out..(r + 1) * hw_out];
                let (lo, hi) = g.valid_cols(kx);
                for (oy, seg) in row.chunks_exact_mut(g.wo).enumerate() {
                    let iy = oy * s + ky;
                    if iy < pad || iy - pad >= g.h {
                        seg.fill(T::ZERO);
                        continue;
                    }
                    let src = &plane[(iy - pad) * g.w..(iy - pad + 1) * g.w];
                    if s == 1 {
                        seg[..lo].fill(T::ZERO);
                        seg[hi..].fill(T::ZERO);
                        seg[lo..hi].copy_from_slice(&src[lo + kx - pad..hi + kx - pad]);
                    } else {
                        for (ox, v) in seg.iter_mut().enumerate() {
                            let ix = ox * s + kx;
                            *v = if ix < pad || ix - pad >= g.w {
                                T::ZERO
                            } else {
                                src[ix - pad]
                            };
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every entry of `cols` back onto the input pixel it
/// was read from. `dx` (`c_in x h x w`) must start zeroed.
pub(crate) fn col2im<T: Elem>(g: &Geometry, cols: &[T], dx: &mut [T]) {
    let hw_out = g.out_hw();
    let (k, s, pad) = (g.k, g.stride, g.pad);
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let r = (c * k + ky) * k + kx;
                let row = &cols[r * hw_out..(r + 1) * hw_out];
                for (oy, seg) in row.chunks_exact(g.wo).enumerate() {
                    let iy = oy * s + ky;
                    if iy < pad || iy - pad >= g.h {
                        continue;
                    }
                    let dst = &mut plane[(iy - pad) * g.w..(iy - pad + 1) * g.w];
                    for (ox, &v) in seg.iter().enumerate() {
                        let ix = ox * s + kx;
                        if ix >= pad && ix - pad < g.w {
                            dst[ix - pad] += v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm_paths::{matmul, Mat};
    use gemm::Parallelism;

    /// The direct definition of one output pixel, for comparison.
    fn direct(g: &Geometry, x: &[f64], w: &[f64], co: usize, oy: usize, ox: usize) -> f64 {
        let mut acc = 0.0;
        for c in 0..g.c_in {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                        continue;
                    }
                    acc += x[(c * g.h + iy as usize) * g.w + ix as usize]
                        * w[((co * g.c_in + c) * g.k + ky) * g.k + kx];
                }
            }
        }
        acc
    }

    #[test]
    fn im2col_then_matmul_is_the_direct_convolution() {
        for &(h, w, k, stride, pad) in &[
            (7, 5, 3, 1, 1),
            (8, 8, 3, 2, 1),
            (6, 9, 4, 2, 1),
            (5, 5, 5, 1, 2),
            (4, 4, 1, 1, 0),
            (5, 6, 3, 3, 0),
        ] {
            let g = Geometry::new((1, 2, h, w), (3, 2, k, k), stride, pad).unwrap();
            let x: Vec<f64> = (0..g.in_len()).map(|i| (i as f64 * 0.37).sin()).collect();
            let wt: Vec<f64> = (0..3 * g.ckk()).map(|i| (i as f64 * 0.61).cos()).collect();
            let mut cols = vec![f64::NAN; g.ckk() * g.out_hw()];
            im2col(&g, &x, &mut cols);
            let mut out = vec![0.0; g.out_len()];
            matmul(
                3,
                g.out_hw(),
                g.ckk(),
                &mut out,
                false,
                Mat::rows(&wt, g.ckk()),
                Mat::rows(&cols, g.out_hw()),
                Parallelism::None,
            );
            for co in 0..3 {
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let got = out[(co * g.ho + oy) * g.wo + ox];
                        let want = direct(&g, &x, &wt, co, oy, ox);
                        assert!((got - want).abs() < 1e-12, "{g:?} {co} {oy} {ox}");
                    }
                }
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for any x and c.
        for &(h, w, k, stride, pad) in &[(7, 5, 3, 1, 1), (8, 8, 3, 2, 1), (6, 9, 4, 2, 1)] {
            let g = Geometry::new((1, 2, h, w), (1, 2, k, k), stride, pad).unwrap();
            let x: Vec<f64> = (0..g.in_len()).map(|i| (i as f64 * 0.37).sin()).collect();
            let c: Vec<f64> = (0..g.ckk() * g.out_hw())
                .map(|i| (i as f64 * 0.13).cos())
                .collect();
            let mut cols = vec![0.0; c.len()];
            im2col(&g, &x, &mut cols);
            let mut back = vec![0.0; x.len()];
            col2im(&g, &c, &mut back);
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-9, "{lhs} vs {rhs}");
        }
    }
}
