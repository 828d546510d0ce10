//! `fastconv::set_enabled` switches the whole process between the fast ops and
//! candle's, `fastconv::set_winograd` the 3x3 stride-1 layers between Winograd and the
//! GEMM paths. Its own test binary, because the switches are global and the unit tests
//! run in parallel (so one test flips them in turn).

use candle_core::{DType, Device, Tensor, Var};
use fastconv::{
    conv2d, enabled, max_pool2d, set_enabled, set_winograd, winograd_enabled, Activation,
    ConvOptions,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Uniform samples in `[lo, hi)` drawn from `rng` in f64, as an f64 tensor of `shape`.
fn uniform(rng: &mut StdRng, shape: (usize, usize, usize, usize), lo: f64, hi: f64) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Input-gradient mass through a 2x2 pool of an all-zero 4x4 map: every window is a
/// four-way tie. The fast op routes each window's gradient to its first maximum (4 in
/// all, PyTorch's rule); candle's max reductions give it to every tied input (16).
fn tie_gradient_mass() -> f32 {
    let v =
        Var::from_tensor(&Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let grads = max_pool2d(v.as_tensor(), 2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    grads
        .get(&v)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// A 16 -> 8 channel 3x3 stride-1 convolution (Winograd's shape) in f32, and the
/// largest difference to the same in f64, relative to the output's scale.
fn winograd_shape_conv() -> (Vec<f32>, f64) {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(1);
    let x = uniform(&mut rng, (2, 16, 9, 9), -1.0, 1.0);
    let w = uniform(&mut rng, (8, 16, 3, 3), -0.5, 0.5);
    let b = Tensor::zeros(8, DType::F64, &dev).unwrap();
    let same = ConvOptions::new(1, 1);
    let exact: Vec<f64> = conv2d(&x, &w, &b, same, Activation::Identity)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let y: Vec<f32> = conv2d(&f(&x), &f(&w), &f(&b), same, Activation::Identity)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let scale = exact.iter().fold(0f64, |m, v| m.max(v.abs()));
    let err = exact
        .iter()
        .zip(&y)
        .fold(0f64, |m, (a, &b)| m.max((a - b as f64).abs()));
    (y, err / scale)
}

#[test]
fn the_switches_select_the_implementation() {
    assert!(enabled(), "on by default");
    assert_eq!(tie_gradient_mass(), 4.0);
    set_enabled(false);
    assert!(!enabled());
    assert_eq!(tie_gradient_mass(), 16.0);
    set_enabled(true);
    assert_eq!(tie_gradient_mass(), 4.0);

    assert!(winograd_enabled(), "Winograd on by default");
    let (winograd, err_winograd) = winograd_shape_conv();
    set_winograd(false);
    assert!(!winograd_enabled());
    let (gemm, err_gemm) = winograd_shape_conv();
    set_winograd(true);
    // Two algorithms: both close to the exact result, with different rounding.
    assert_ne!(winograd, gemm);
    assert!(err_winograd < 1e-5, "Winograd error {err_winograd:e}");
    assert!(err_gemm < 1e-6, "GEMM error {err_gemm:e}");
}
