//! [`resize2d`]: a fixed separable linear resize of `N x C x h x w` maps (a bilinear
//! upsampling, say) as one op with its own backward, reading only each output's
//! non-zero weights.
//!
//! The same resize as two dense matrix products (columns, then rows) needs a
//! transposed copy of the batch between them, and its backward two more products and
//! copies; the matrices of a bilinear resize hold at most two non-zero weights per
//! row, so this op reads two inputs per output instead of `h` or `w`.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{slice, with_dtype, Same};
use crate::kernels::Elem;

/// One axis of a separable resize: each output index's non-zero weights, and each
/// input index's (the transpose, for the backward pass), both in ascending index order.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    inp: usize,
    out: usize,
    /// `forward[i]`: `(j, m[i][j])` for the non-zero `m[i][j]`, ascending `j`.
    forward: Vec<Vec<(usize, f64)>>,
    /// `backward[j]`: `(i, m[i][j])` for the non-zero `m[i][j]`, ascending `i`.
    backward: Vec<Vec<(usize, f64)>>,
}

impl Axis {
    fn new(m: &[f64], (out, inp): (usize, usize), what: &str) -> Result<Self> {
        if m.len() != out * inp || out == 0 || inp == 0 {
            candle_core::bail!(
                "resize2d: the {what} matrix has {} values, expected {out} x {inp} (both non-zero)",
                m.len()
            );
        }
        if let Some(v) = m.iter().find(|v| !v.is_finite()) {
            candle_core::bail!("resize2d: the {what} matrix holds {v}");
        }
        let mut forward = vec![Vec::new(); out];
        let mut backward = vec![Vec::new(); inp];
        for (i, row) in m.chunks_exact(inp).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    forward[i].push((j, v));
                    backward[j].push((i, v));
                }
            }
        }
        Ok(Self {
            inp,
            out,
            forward,
            backward,
        })
    }
}

/// A separable linear resize: output pixel `(i, j)` of every map is
/// `Σ_a Σ_b rows[i][a] cols[j][b] x[a][b]`, computed columns first, then rows, each sum
/// in ascending index order over the non-zero weights (so, where every product is
/// exact, as for a 2x bilinear upsampling's weights 1 and 1/2, it equals the two dense
/// products to the bit).
#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    rows: Axis,
    cols: Axis,
}

impl Resize {
    /// From the dense `out_h x in_h` row matrix and `out_w x in_w` column matrix
    /// (row-major). An error if a matrix has the wrong size or a value that is not
    /// finite.
    pub fn new(
        rows: &[f64],
        (out_h, in_h): (usize, usize),
        cols: &[f64],
        (out_w, in_w): (usize, usize),
    ) -> Result<Self> {
        Ok(Self {
            rows: Axis::new(rows, (out_h, in_h), "row")?,
            cols: Axis::new(cols, (out_w, in_w), "column")?,
        })
    }

    /// `(out_h, out_w)`.
    pub fn output_size(&self) -> (usize, usize) {
        (self.rows.out, self.cols.out)
    }
}

/// `x` (`N x C x h x w`, f32 or f64, on the CPU) resized to `N x C x H x W` by
/// `resize`, with its gradient. Elsewhere, an error: the caller keeps the dense
/// products for other devices.
pub fn resize2d(x: &Tensor, resize: &Resize) -> Result<Tensor> {
    let op = ResizeOp {
        resize: Arc::new(resize.clone()),
        transpose: false,
    };
    x.contiguous()?.apply_op1(op)
}

/// The resize (`transpose` false) or its transpose, the backward pass (`transpose`
/// true: `N x C x H x W` gradients to `N x C x h x w`).
#[derive(Clone)]
struct ResizeOp {
    resize: Arc<Resize>,
    transpose: bool,
}

impl CustomOp1 for ResizeOp {
    fn name(&self) -> &'static str {
        if self.transpose {
            "fast-resize2d-backward"
        } else {
            "fast-resize2d"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l
            .shape()
            .dims4()
            .map_err(|_| candle_core::Error::Msg("resize2d: the input is not 4-D".into()))?;
        let (rows, cols) = (&self.resize.rows, &self.resize.cols);
        let (want, (ho, wo)) = if self.transpose {
            ((rows.out, cols.out), (rows.inp, cols.inp))
        } else {
            ((rows.inp, cols.inp), (rows.out, cols.out))
        };
        if (h, w) != want {
            candle_core::bail!(
                "resize2d: the input maps are {h} x {w}, the resize takes {} x {}",
                want.0,
                want.1
            );
        }
        let transpose = self.transpose;
        let out = with_dtype!("resize2d", s, |v| {
            let x = slice(v, l, "input")?;
            run(x, (h, w), (ho, wo), (rows, cols), transpose)
        });
        Ok((out, Shape::from((n, c, ho, wo))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = ResizeOp {
            resize: self.resize.clone(),
            transpose: !self.transpose,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// Every `h x w` map of `x` to `ho x wo`: columns, then rows, forward; rows, then
/// columns, for the transpose (the order of the dense products' backward).
fn run<T: Same>(
    x: &[T],
    (h, w): (usize, usize),
    (ho, wo): (usize, usize),
    (rows, cols): (&Axis, &Axis),
    transpose: bool,
) -> Vec<T> {
    let maps = x.len() / (h * w).max(1);
    let mut y = vec![T::ZERO; maps * ho * wo];
    if ho * wo == 0 || h * w == 0 {
        return y;
    }
    let weights = |taps: &[(usize, f64)]| -> Vec<(usize, T)> {
        taps.iter().map(|&(j, v)| (j, T::from_f64(v))).collect()
    };
    let pick = |a: &Axis| -> Vec<Vec<(usize, T)>> {
        let taps = if transpose { &a.backward } else { &a.forward };
        taps.iter().map(|t| weights(t)).collect()
    };
    let (rt, ct) = (pick(rows), pick(cols));
    // One intermediate buffer per rayon job, not per map: every value is written
    // before it is read.
    let mid_len = if transpose { ho * w } else { h * wo };
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each_init(
            || vec![T::ZERO; mid_len],
            |mid, (y, x)| {
                if !transpose {
                    // Columns: h x w -> h x wo; rows: h x wo -> ho x wo.
                    for (a, m) in mid.chunks_exact_mut(wo).enumerate() {
                        let src = &x[a * w..(a + 1) * w];
                        for (v, taps) in m.iter_mut().zip(&ct) {
                            *v = sum(taps, |b| src[b]);
                        }
                    }
                    for (i, out) in y.chunks_exact_mut(wo).enumerate() {
                        rows_sum(&rt[i], mid, wo, out);
                    }
                } else {
                    // Rows: h x w -> ho x w; columns: ho x w -> ho x wo.
                    for (a, m) in mid.chunks_exact_mut(w).enumerate() {
                        rows_sum(&rt[a], x, w, m);
                    }
                    for (a, out) in y.chunks_exact_mut(wo).enumerate() {
                        let src = &mid[a * w..(a + 1) * w];
                        for (v, taps) in out.iter_mut().zip(&ct) {
                            *v = sum(taps, |j| src[j]);
                        }
                    }
                }
            },
        );
    y
}

/// `out = Σ v * src[row j]` over `taps` `(j, v)` in their order, from zero, for rows of
/// `len` values: each value gets [`sum`]'s operations in [`sum`]'s order, a tap at a
/// time across the whole row (contiguous, so it vectorises).
#[inline(always)]
fn rows_sum<T: Elem>(taps: &[(usize, T)], src: &[T], len: usize, out: &mut [T]) {
    out.fill(T::ZERO);
    for &(j, v) in taps {
        for (o, &s) in out.iter_mut().zip(&src[j * len..(j + 1) * len]) {
            *o += v * s;
        }
    }
}

/// `Σ v * at(j)` over `taps` in their order, from zero, as a dense product accumulates.
#[inline(always)]
fn sum<T: Elem>(taps: &[(usize, T)], at: impl Fn(usize) -> T) -> T {
    taps.iter().fold(T::ZERO, |acc, &(j, v)| acc + v * at(j))
}
