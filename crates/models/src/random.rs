//! Seeded random tensors (candle 0.11 cannot seed its own CPU generator).

use candle_core::{DType, Device, Result, Shape, Tensor};
use rand::{rngs::StdRng, Rng};

/// Standard normal samples (Box-Muller over `rng`), as a tensor of `shape`.
pub fn normal(
    rng: &mut StdRng,
    shape: impl Into<Shape>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let shape = shape.into();
    let n = shape.elem_count();
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let th = std::f64::consts::TAU * u2;
        v.push(r * th.cos());
        v.push(r * th.sin());
    }
    v.truncate(n);
    Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
}

/// Uniform samples in `[lo, hi)`, as a tensor of `shape`.
pub fn uniform(
    rng: &mut StdRng,
    shape: impl Into<Shape>,
    lo: f64,
    hi: f64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let shape = shape.into();
    let v: Vec<f64> = (0..shape.elem_count())
        .map(|_| rng.random_range(lo..hi))
        .collect();
    Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
}
