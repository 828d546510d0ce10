//! Max-pooling alone and fused after a convolution and ReLU, and global average pooling.

use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::*;

#[test]
fn max_pool_matches_the_reduction_pool_and_routes_ties_to_one_input() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(5);
    for k in [2usize, 3] {
        let x = uniform(&mut rng, (2, 3, 6, 12), -1.0, 1.0, DType::F64, &dev).unwrap();
        let v = Var::from_tensor(&x).unwrap();
        let r = uniform(&mut rng, (2, 3, 6 / k, 12 / k), -1.0, 1.0, DType::F64, &dev).unwrap();
        let fast = max_pool2d(v.as_tensor(), k).unwrap();
        let reduce = v
            .as_tensor()
            .reshape((2, 3, 6 / k, k, 12 / k, k))
            .unwrap()
            .max(5)
            .unwrap()
            .max(3)
            .unwrap();
        let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
        assert_eq!(flat(&fast), flat(&reduce));
        let g_fast = (&fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g_reduce = (&reduce * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(
            flat(g_fast.get(&v).unwrap()),
            flat(g_reduce.get(&v).unwrap())
        );
    }
    // An all-zero window (a dead ReLU) passes its gradient to exactly one input.
    let v = Var::from_tensor(&Tensor::zeros((1, 1, 4, 4), DType::F32, &dev).unwrap()).unwrap();
    let g = max_pool2d(v.as_tensor(), 2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g: Vec<f32> = g.get(&v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(g.iter().sum::<f32>(), 4.0);
    assert_eq!(g.iter().filter(|&&x| x == 1.0).count(), 4);
    assert!(max_pool2d(&Tensor::zeros((1, 1, 5, 4), DType::F32, &dev).unwrap(), 2).is_err());
}

/// (output, dx, dw, db) of `sum(r * max_pool(relu(conv)))`, fused or through candle's
/// own convolution, ReLU and reduction max.
fn run_pooled(case: &Case, pool: usize, fused: bool, dtype: DType) -> [Vec<f64>; 4] {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(11);
    let mut var = |shape: &[usize], scale: f64| {
        Var::from_tensor(&uniform(&mut rng, shape, -scale, scale, dtype, &dev).unwrap()).unwrap()
    };
    let x = var(&[case.n, case.c_in, case.h, case.w], 1.0);
    let w = var(&[case.c_out, case.c_in, case.k, case.k], 0.5);
    let b = var(&[case.c_out], 0.3);
    let y = if fused {
        conv2d_relu_pool(&x, &w, &b, opts(case.stride, case.pad), pool).unwrap()
    } else {
        let y =
            reference_conv2d(&x, &w, &b, opts(case.stride, case.pad), Activation::Relu).unwrap();
        let (n, c, h, wd) = y.dims4().unwrap();
        y.reshape((n, c, h / pool, pool, wd / pool, pool))
            .unwrap()
            .max(5)
            .unwrap()
            .max(3)
            .unwrap()
    };
    value_and_gradients(&y, (&x, &w, &b), &mut rng)
}

#[test]
fn conv_relu_pool_matches_candle_conv_relu_and_max() {
    // Winograd with the pooling in its output transform (16 -> 8 channels, 3x3 stride
    // 1, windows 2 and 4, cropped last tiles), Winograd F(3x3, 5x5) followed by a
    // separate pool (the oracle's conv2, 32 -> 64 at 14 x 14: its 3 x 3 tiles do not
    // hold whole 2 x 2 windows), and the GEMM paths followed by a separate pool (few
    // channels, 5x5, stride 2, window 3).
    let cases = [
        (3, 16, 8, 14, 14, 3, 1, 1, 2),
        (2, 32, 64, 14, 14, 5, 1, 2, 2),
        (1, 16, 8, 10, 6, 3, 1, 1, 2),
        (2, 16, 8, 8, 12, 3, 1, 1, 4),
        (2, 16, 8, 12, 12, 3, 1, 0, 2),
        (2, 3, 5, 12, 12, 5, 1, 2, 3),
        (2, 4, 6, 12, 8, 3, 2, 1, 2),
    ];
    for (n, c_in, c_out, h, w, k, stride, pad, pool) in cases {
        let case = Case {
            n,
            c_in,
            c_out,
            h,
            w,
            k,
            stride,
            pad,
            relu: true,
        };
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let fused = run_pooled(&case, pool, true, dtype);
            let reference = run_pooled(&case, pool, false, dtype);
            let label = format!(" ({n}x{c_in}x{h}x{w}, k {k}, pool {pool}, {dtype:?})");
            assert_all_close(&fused, &reference, tol, &label);
        }
    }
}

#[test]
fn conv_relu_pool_rejects_windows_that_do_not_divide_the_output() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 8, 6, 6), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((8, 8, 3, 3), DType::F32, &dev).unwrap();
    let b = Tensor::zeros(8, DType::F32, &dev).unwrap();
    for k in [0, 4, 5, 16] {
        assert!(
            conv2d_relu_pool(&x, &w, &b, opts(1, 1), k).is_err(),
            "window {k}"
        );
    }
    let y = conv2d_relu_pool(&x, &w, &b, opts(1, 1), 3).unwrap();
    assert_eq!(y.dims4().unwrap(), (1, 8, 2, 2));
}

#[test]
fn channels_last_average_pool_matches_the_mean_and_its_gradient() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(17);
    let x = uniform(&mut rng, (3, 4, 5, 6), -1.0, 1.0, DType::F64, &dev).unwrap();
    let v = Var::from_tensor(&x).unwrap();
    let r = uniform(&mut rng, (3, 6), -1.0, 1.0, DType::F64, &dev).unwrap();
    let fast = global_average_pool_nhwc(v.as_tensor()).unwrap();
    let mean = v.as_tensor().mean((1, 2)).unwrap();
    let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
    assert_close(&flat(&fast), &flat(&mean), 1e-15, "mean");
    let g_fast = (&fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let g_mean = (&mean * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let (a, b) = (g_fast.get(&v).unwrap(), g_mean.get(&v).unwrap());
    assert!(a.is_contiguous());
    assert_close(&flat(a), &flat(b), 1e-15, "gradient");
    assert!(global_average_pool_nhwc(&Tensor::zeros((2, 3), DType::F32, &dev).unwrap()).is_err());
}
