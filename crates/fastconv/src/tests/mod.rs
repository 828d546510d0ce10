//! The fast ops against candle's conv2d (forward and both gradients) over random
//! shapes, and against finite differences. Unit tests, not integration tests: built
//! with `cfg(test)`, the passes fill the memory they do not zero with NaN bytes (see
//! `kernels::unwritten`), so a value left unwritten fails these comparisons.
//!
//! `conv`: single convolutions on every path; `pool`: max-pooling, fused and alone, and
//! global average pooling; `layout`: channels-last against channels-first; `pair`: two
//! layers as one op.

mod backward;
mod conv;
mod layout;
mod pair;
mod pool;

use candle_core::{DType, Device, Shape, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{conv2d, reference_conv2d, Activation, ConvOptions};

/// Uniform samples in `[lo, hi)` drawn from `rng` in f64, as a tensor of `shape` and
/// `dtype` (candle 0.11 cannot seed its own CPU generator).
pub(super) fn uniform(
    rng: &mut StdRng,
    shape: impl Into<Shape>,
    lo: f64,
    hi: f64,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let shape = shape.into();
    let v: Vec<f64> = (0..shape.elem_count())
        .map(|_| rng.random_range(lo..hi))
        .collect();
    Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
}

/// ReLU when `relu`, else no activation.
pub(super) fn act(relu: bool) -> Activation {
    if relu {
        Activation::Relu
    } else {
        Activation::Identity
    }
}

/// Stride and padding.
pub(super) fn opts(stride: usize, padding: usize) -> ConvOptions {
    ConvOptions::new(stride, padding)
}

pub(super) struct Case {
    pub(super) n: usize,
    pub(super) c_in: usize,
    pub(super) c_out: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) k: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) relu: bool,
}

/// (output, dx, dw, db) of `sum(r * conv)` with either implementation.
pub(super) fn run(case: &Case, fast: bool, dtype: DType, seed: u64) -> [Vec<f64>; 4] {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(seed);
    let x = uniform(
        &mut rng,
        (case.n, case.c_in, case.h, case.w),
        -1.0,
        1.0,
        dtype,
        &dev,
    )
    .unwrap();
    let w = uniform(
        &mut rng,
        (case.c_out, case.c_in, case.k, case.k),
        -0.5,
        0.5,
        dtype,
        &dev,
    )
    .unwrap();
    let b = uniform(&mut rng, case.c_out, -0.3, 0.3, dtype, &dev).unwrap();
    let (x, w, b) = (
        Var::from_tensor(&x).unwrap(),
        Var::from_tensor(&w).unwrap(),
        Var::from_tensor(&b).unwrap(),
    );
    let f = if fast { conv2d } else { reference_conv2d };
    let y = f(&x, &w, &b, opts(case.stride, case.pad), act(case.relu)).unwrap();
    value_and_gradients(&y, (&x, &w, &b), &mut rng)
}

/// (y, dx, dw, db) of `sum(r * y)` for a random `r`, in f64.
pub(super) fn value_and_gradients(
    y: &Tensor,
    (x, w, b): (&Var, &Var, &Var),
    rng: &mut StdRng,
) -> [Vec<f64>; 4] {
    let r = uniform(rng, y.shape(), -1.0, 1.0, y.dtype(), y.device()).unwrap();
    let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |t: &Tensor| -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    [
        flat(y),
        flat(grads.get(x).unwrap()),
        flat(grads.get(w).unwrap()),
        flat(grads.get(b).unwrap()),
    ]
}

pub(super) fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: fast {x} vs candle {y} (scale {scale})"
        );
    }
}

/// [`assert_close`] for each of (output, dx, dw, db), `label` after each name.
pub(super) fn assert_all_close(a: &[Vec<f64>; 4], b: &[Vec<f64>; 4], tol: f64, label: &str) {
    let names = [
        "output",
        "input gradient",
        "weight gradient",
        "bias gradient",
    ];
    for ((a, b), name) in a.iter().zip(b).zip(names) {
        assert_close(a, b, tol, &format!("{name}{label}"));
    }
}

pub(super) fn check(case: &Case, dtype: DType, tol: f64) {
    let fast = run(case, true, dtype, 7);
    let reference = run(case, false, dtype, 7);
    assert_all_close(&fast, &reference, tol, "");
}

/// candle 0.11's conv2d backward derives the transposed convolution's output padding
/// from the height alone, so its input gradient has the wrong width (an error) when
/// the floor in the output size drops a different remainder along the two axes.
pub(super) fn candle_backward_works(
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> bool {
    (h + 2 * pad - k) % stride == (w + 2 * pad - k) % stride
}

/// `sin(step * i)` for the `i`-th value of `y`'s shape (f64): fixed output weights
/// for a scalar loss.
pub(super) fn wave(y: &Tensor, step: f64) -> Tensor {
    let count = y.elem_count() as u32;
    (Tensor::arange(0u32, count, y.device())
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        * step)
        .unwrap()
        .sin()
        .unwrap()
        .reshape(y.shape())
        .unwrap()
}
