//! The fast op against candle's conv2d (forward and both gradients) over random
//! shapes, and against finite differences.

use super::*;
use candle_core::{Device, Var};
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};

use crate::random::uniform;

struct Case {
    n: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    relu: bool,
}

/// (output, dx, dw, db) of `sum(r * conv)` with either implementation.
fn run(case: &Case, fast: bool, dtype: DType, seed: u64) -> [Vec<f64>; 4] {
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
    let y = f(&x, &w, &b, case.stride, case.pad, case.relu).unwrap();
    value_and_gradients(&y, (&x, &w, &b), &mut rng)
}

/// (y, dx, dw, db) of `sum(r * y)` for a random `r`, in f64.
fn value_and_gradients(
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

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
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
fn assert_all_close(a: &[Vec<f64>; 4], b: &[Vec<f64>; 4], tol: f64, label: &str) {
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

fn check(case: &Case, dtype: DType, tol: f64) {
    let fast = run(case, true, dtype, 7);
    let reference = run(case, false, dtype, 7);
    assert_all_close(&fast, &reference, tol, "");
}

/// candle 0.11's conv2d backward derives the transposed convolution's output padding
/// from the height alone, so its input gradient has the wrong width (an error) when
/// the floor in the output size drops a different remainder along the two axes.
fn candle_backward_works(h: usize, w: usize, k: usize, stride: usize, pad: usize) -> bool {
    (h + 2 * pad - k) % stride == (w + 2 * pad - k) % stride
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_candle_conv2d(
        n in 1usize..4,
        c_in in 1usize..5,
        c_out in 1usize..6,
        h in 4usize..11,
        w in 4usize..11,
        k in 1usize..6,
        stride in 1usize..4,
        pad in 0usize..3,
        relu in any::<bool>(),
    ) {
        prop_assume!(h + 2 * pad >= k && w + 2 * pad >= k);
        // Where candle's own backward fails, the width gets the height's remainder;
        // the finite-difference test covers our input gradient on such shapes.
        let w = if candle_backward_works(h, w, k, stride, pad) { w } else { h };
        let case = Case { n, c_in, c_out, h, w, k, stride, pad, relu };
        check(&case, DType::F32, 1e-5);
    }
}

#[test]
fn matches_candle_on_the_models_layer_shapes() {
    // GapCnn conv2 and conv5 (Winograd F(4x4)), conv4 (F(5x5)), the oracle's 5x5,
    // the SVAE's stride-2 3x3, a 4x4 stride 2.
    for &(c_in, c_out, h, k, stride, pad) in &[
        (32, 32, 28, 3, 1, 1),
        (64, 128, 7, 3, 1, 1),
        (64, 64, 14, 3, 1, 1),
        (32, 64, 14, 5, 1, 2),
        (16, 32, 28, 3, 2, 1),
        (8, 16, 28, 4, 2, 1),
    ] {
        let case = Case {
            n: 5,
            c_in,
            c_out,
            h,
            w: h,
            k,
            stride,
            pad,
            relu: true,
        };
        check(&case, DType::F32, 1e-5);
        check(&case, DType::F64, 1e-12);
    }
}

#[test]
fn input_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(3);
    for &(stride, pad, k, w) in &[(1, 1, 3, 6), (2, 1, 3, 6), (2, 1, 4, 6), (2, 1, 3, 7)] {
        assert_eq!(candle_backward_works(6, w, k, stride, pad), w == 6);
        let x = uniform(&mut rng, (1, 2, 6, w), -1.0, 1.0, DType::F64, &dev).unwrap();
        let w = uniform(&mut rng, (3, 2, k, k), -0.5, 0.5, DType::F64, &dev).unwrap();
        let b = uniform(&mut rng, 3, -0.3, 0.3, DType::F64, &dev).unwrap();
        let loss = |x: &Tensor| -> f64 {
            conv2d(x, &w, &b, stride, pad, false)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let v = Var::from_tensor(&x).unwrap();
        let y = conv2d(v.as_tensor(), &w, &b, stride, pad, false).unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let analytic: Vec<f64> = grads
            .get(&v)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-6;
        for i in (0..base.len()).step_by(5) {
            let mut plus = base.clone();
            plus[i] += h;
            let mut minus = base.clone();
            minus[i] -= h;
            let at = |v: Vec<f64>| Tensor::from_vec(v, x.shape(), &dev).unwrap();
            let numeric = (loss(&at(plus)) - loss(&at(minus))) / (2.0 * h);
            assert!(
                (numeric - analytic[i]).abs() < 1e-6 * (1.0 + numeric.abs()),
                "stride {stride} k {k} [{i}]: {numeric} vs {}",
                analytic[i]
            );
        }
    }
}

#[test]
fn gradients_are_skipped_for_arguments_outside_the_graph() {
    // Plain-tensor weights (an attack) give an input gradient only; a plain input (the
    // first layer of a training step) gives weight gradients only.
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(4);
    let x = uniform(&mut rng, (2, 1, 5, 5), 0.0, 1.0, DType::F32, &dev).unwrap();
    let w = uniform(&mut rng, (2, 1, 3, 3), -0.5, 0.5, DType::F32, &dev).unwrap();
    let b = Tensor::zeros(2, DType::F32, &dev).unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let grads = conv2d(xv.as_tensor(), &w, &b, 1, 1, true)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&xv).is_some());
    assert!(grads.get(&w).is_none());
    let wv = Var::from_tensor(&w).unwrap();
    let grads = conv2d(&x, wv.as_tensor(), &b, 1, 1, true)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&wv).is_some());
    assert!(grads.get(&x).is_none());
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 2, 5, 5), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((3, 1, 3, 3), DType::F32, &dev).unwrap();
    let b = Tensor::zeros(3, DType::F32, &dev).unwrap();
    assert!(conv2d(&x, &w, &b, 1, 1, false).is_err());
    let w = Tensor::zeros((3, 2, 3, 3), DType::F32, &dev).unwrap();
    let b4 = Tensor::zeros(4, DType::F32, &dev).unwrap();
    assert!(conv2d(&x, &w, &b4, 1, 1, false).is_err());
    let x3 = Tensor::zeros((2, 5, 5), DType::F32, &dev).unwrap();
    assert!(conv2d(&x3, &w, &b, 1, 1, false).is_err());
}

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

#[test]
fn shifted_path_matches_candle_on_odd_shapes() {
    // Stride 1, 16+ input channels, k <= 3 and 12+ output columns run without im2col:
    // non-square inputs, no padding, padding wider than the kernel's half, 1x1 and 2x2
    // kernels, batch 1 and 3.
    for &(n, h, w, k, pad) in &[
        (3, 9, 14, 3, 0),
        (1, 6, 13, 3, 2),
        (3, 7, 13, 2, 1),
        (2, 5, 12, 1, 0),
    ] {
        let case = Case {
            n,
            c_in: 16,
            c_out: 5,
            h,
            w,
            k,
            stride: 1,
            pad,
            relu: false,
        };
        check(&case, DType::F64, 1e-12);
    }
}

#[test]
fn winograd_path_matches_candle_on_odd_shapes() {
    // Stride-1 3x3 layers with multiples of 8 channels on both sides run Winograd
    // F(4x4, 3x3):
    // outputs that do not fill the last tile row or column (and are cropped), padding
    // 0, 1 and 2, non-square and tiny images, batch 1 and 3, with and without ReLU.
    for &(n, h, w, pad, relu) in &[
        (3, 9, 14, 0, false),
        (1, 6, 13, 2, true),
        (3, 7, 7, 1, true),
        (2, 3, 5, 1, false),
        (1, 3, 3, 0, true),
        (2, 17, 10, 1, false),
    ] {
        let case = Case {
            n,
            c_in: 16,
            c_out: 8,
            h,
            w,
            k: 3,
            stride: 1,
            pad,
            relu,
        };
        check(&case, DType::F64, 1e-12);
        check(&case, DType::F32, 1e-5);
    }
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
        conv2d_relu_pool(&x, &w, &b, (case.stride, case.pad), pool).unwrap()
    } else {
        let y = reference_conv2d(&x, &w, &b, case.stride, case.pad, true).unwrap();
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
    // 1, windows 2 and 4, cropped last tiles), and the GEMM paths followed by a
    // separate pool (few channels, 5x5, stride 2, window 3).
    let cases = [
        (3, 16, 8, 14, 14, 3, 1, 1, 2),
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
            conv2d_relu_pool(&x, &w, &b, (1, 1), k).is_err(),
            "window {k}"
        );
    }
    let y = conv2d_relu_pool(&x, &w, &b, (1, 1), 3).unwrap();
    assert_eq!(y.dims4().unwrap(), (1, 8, 2, 2));
}

/// (output, dx, dw, db) of `sum(r * y)`, `y` the layer on `case`'s random batch run
/// channels-first (`conv2d`, `conv2d_relu_pool`) or channels-last (the `_nhwc` ops,
/// between two permutes), with `pool` 0 for no pooling.
fn run_layout(case: &Case, pool: usize, channels_last: bool, dtype: DType) -> [Vec<f64>; 4] {
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(13);
    let mut var = |shape: &[usize], scale: f64| {
        Var::from_tensor(&uniform(&mut rng, shape, -scale, scale, dtype, &dev).unwrap()).unwrap()
    };
    let x = var(&[case.n, case.c_in, case.h, case.w], 1.0);
    let w = var(&[case.c_out, case.c_in, case.k, case.k], 0.5);
    let b = var(&[case.c_out], 0.3);
    let (s, p) = (case.stride, case.pad);
    let y = if channels_last {
        let xl = x.permute((0, 2, 3, 1)).unwrap();
        let y = match pool {
            0 => conv2d_nhwc(&xl, &w, &b, s, p, case.relu),
            k => conv2d_relu_pool_nhwc(&xl, &w, &b, (s, p), k),
        };
        y.unwrap().permute((0, 3, 1, 2)).unwrap()
    } else {
        match pool {
            0 => conv2d(&x, &w, &b, s, p, case.relu),
            k => conv2d_relu_pool(&x, &w, &b, (s, p), k),
        }
        .unwrap()
    };
    value_and_gradients(&y, (&x, &w, &b), &mut rng)
}

#[test]
fn channels_last_ops_match_channels_first() {
    // Winograd (cropped tiles, padding 0-2, pooled by 2 and 4), the im2col path with
    // one input channel (GapCnn's conv1) and with several (5x5, stride 2, a count
    // that is not a multiple of 8), the shapes the shifted path takes channels-first,
    // and a pooled layer outside Winograd (which permutes around the
    // channels-first op).
    let cases = [
        // (n, c_in, c_out, h, w, k, stride, pad, relu, pool)
        (3, 16, 8, 14, 14, 3, 1, 1, true, 0),
        (2, 8, 16, 9, 13, 3, 1, 0, false, 0),
        (1, 16, 8, 6, 7, 3, 1, 2, true, 0),
        (3, 16, 8, 14, 14, 3, 1, 1, true, 2),
        (2, 8, 16, 8, 12, 3, 1, 1, true, 4),
        (3, 1, 8, 10, 12, 3, 1, 1, true, 0),
        (2, 3, 5, 12, 12, 5, 1, 2, true, 0),
        (2, 4, 6, 11, 11, 3, 2, 1, false, 0),
        (2, 16, 5, 9, 14, 3, 1, 0, true, 0),
        (2, 3, 5, 12, 12, 5, 1, 2, true, 3),
        (2, 12, 8, 12, 12, 3, 1, 1, true, 2),
    ];
    for (n, c_in, c_out, h, w, k, stride, pad, relu, pool) in cases {
        let case = Case {
            n,
            c_in,
            c_out,
            h,
            w,
            k,
            stride,
            pad,
            relu,
        };
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let last = run_layout(&case, pool, true, dtype);
            let first = run_layout(&case, pool, false, dtype);
            let label = format!(
                " ({n}x{c_in}x{h}x{w} -> {c_out}, k {k} s {stride} p {pad}, pool {pool}, \
                 {dtype:?})"
            );
            assert_all_close(&last, &first, tol, &label);
        }
    }
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

#[test]
fn channels_last_shapes_are_checked() {
    let dev = Device::Cpu;
    // 5 input channels last, a kernel for 2: an error, not a panic.
    let x = Tensor::zeros((1, 6, 6, 5), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((8, 2, 3, 3), DType::F32, &dev).unwrap();
    let b = Tensor::zeros(8, DType::F32, &dev).unwrap();
    assert!(conv2d_nhwc(&x, &w, &b, 1, 1, true).is_err());
    assert!(conv2d_relu_pool_nhwc(&x, &w, &b, (1, 1), 2).is_err());
    let x = Tensor::zeros((1, 6, 6, 2), DType::F32, &dev).unwrap();
    let y = conv2d_nhwc(&x, &w, &b, 1, 1, true).unwrap();
    assert_eq!(y.dims4().unwrap(), (1, 6, 6, 8));
    let y = conv2d_relu_pool_nhwc(&x, &w, &b, (1, 1), 3).unwrap();
    assert_eq!(y.dims4().unwrap(), (1, 2, 2, 8));
}

/// `sin(step * i)` for the `i`-th value of `y`'s shape (f64): fixed output weights
/// for a scalar loss.
fn wave(y: &Tensor, step: f64) -> Tensor {
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

#[test]
fn weight_gradients_through_relu_match_with_and_without_an_input_gradient() {
    // Without an input gradient (a first layer in training), ReLU's mask is applied as
    // the weight gradient reads the output gradient; with one, the masked gradient is
    // built first. Both ways must agree, on the GEMM paths (one input channel, 5x5,
    // stride 2, the shifted taps) channels-first and channels-last.
    let dev = Device::Cpu;
    for &(c_in, c_out, h, k, stride, pad) in &[
        (1, 8, 12, 3, 1, 1),
        (3, 5, 12, 5, 1, 2),
        (4, 6, 11, 3, 2, 1),
        (16, 5, 13, 3, 1, 1),
    ] {
        for channels_last in [false, true] {
            let mut rng = StdRng::seed_from_u64(19);
            let x = uniform(&mut rng, (2, c_in, h, h), -1.0, 1.0, DType::F64, &dev).unwrap();
            let w = Var::from_tensor(
                &uniform(&mut rng, (c_out, c_in, k, k), -0.5, 0.5, DType::F64, &dev).unwrap(),
            )
            .unwrap();
            let b =
                Var::from_tensor(&uniform(&mut rng, c_out, -0.3, 0.3, DType::F64, &dev).unwrap())
                    .unwrap();
            let grads = |x: &Tensor| {
                let y = if channels_last {
                    conv2d_nhwc(&x.permute((0, 2, 3, 1)).unwrap(), &w, &b, stride, pad, true)
                } else {
                    conv2d(x, &w, &b, stride, pad, true)
                }
                .unwrap();
                let r = wave(&y, 0.37);
                let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
                let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
                (flat(g.get(&w).unwrap()), flat(g.get(&b).unwrap()))
            };
            let plain = grads(&x);
            let xv = Var::from_tensor(&x).unwrap();
            let tracked = grads(xv.as_tensor());
            let what = format!("{c_in}->{c_out} k {k} s {stride}, channels-last {channels_last}");
            assert_close(&plain.0, &tracked.0, 1e-13, &format!("dW {what}"));
            assert_close(&plain.1, &tracked.1, 1e-13, &format!("db {what}"));
        }
    }
}

/// The output and every gradient candle's backward gives (input, W1, b1, W2, b2, in
/// that order, `None` where the tensor is outside the graph) of `sum(r * y)`, with the
/// two layers as one op (`paired`) or as two.
fn pair_gradients(
    x: &Tensor,
    layers: [(&Tensor, &Tensor); 2],
    paired: bool,
) -> (Vec<f64>, Vec<Option<Vec<f64>>>) {
    let [(w1, b1), (w2, b2)] = layers;
    let y = if paired {
        conv2d_pair_relu_pool_nhwc(x, (w1, b1, (1, 1)), (w2, b2, (1, 1)), 2)
    } else {
        let y1 = conv2d_nhwc(x, w1, b1, 1, 1, true).unwrap();
        conv2d_relu_pool_nhwc(&y1, w2, b2, (1, 1), 2)
    }
    .unwrap();
    let g = (&y * wave(&y, 0.61))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let grads = [x, w1, b1, w2, b2]
        .iter()
        .map(|t| g.get(t).map(flat))
        .collect();
    (flat(&y), grads)
}

#[test]
fn paired_layers_match_the_two_ops_for_every_set_of_tracked_arguments() {
    // conv1 -> conv2 of GapCnn in small (one input channel: the first layer on the
    // GEMM path) and conv3 -> conv4 (both Winograd), with the input tracked (attacks:
    // weights are plain tensors), the weights tracked (training), or both.
    let dev = Device::Cpu;
    let names = ["input", "W1", "b1", "W2", "b2"];
    for &(c_in, c_mid, c_out, h) in &[(1, 8, 8, 12), (8, 16, 16, 8), (8, 8, 16, 14)] {
        for (track_input, track_weights) in [(true, false), (false, true), (true, true)] {
            let mut rng = StdRng::seed_from_u64(23);
            let mut t = |shape: &[usize], scale: f64, track: bool| {
                let v = uniform(&mut rng, shape, -scale, scale, DType::F64, &dev).unwrap();
                if track {
                    Var::from_tensor(&v).unwrap().as_tensor().clone()
                } else {
                    v
                }
            };
            let x = t(&[2, h, h, c_in], 1.0, track_input);
            let w1 = t(&[c_mid, c_in, 3, 3], 0.5, track_weights);
            let b1 = t(&[c_mid], 0.3, track_weights);
            let w2 = t(&[c_out, c_mid, 3, 3], 0.5, track_weights);
            let b2 = t(&[c_out], 0.3, track_weights);
            let layers = [(&w1, &b1), (&w2, &b2)];
            let (y, grads) = pair_gradients(&x, layers, true);
            let (y_ref, grads_ref) = pair_gradients(&x, layers, false);
            let what =
                format!("{c_in}->{c_mid}->{c_out} at {h}, tracked {track_input}/{track_weights}");
            assert_close(&y, &y_ref, 1e-13, &format!("output {what}"));
            for ((a, b), name) in grads.iter().zip(&grads_ref).zip(names) {
                let tracked = if name == "input" {
                    track_input
                } else {
                    track_weights
                };
                assert_eq!(a.is_some(), tracked, "{name} gradient present {what}");
                assert_eq!(
                    b.is_some(),
                    tracked,
                    "{name} reference gradient present {what}"
                );
                if let (Some(a), Some(b)) = (a, b) {
                    assert_close(a, b, 1e-13, &format!("{name} gradient {what}"));
                }
            }
        }
    }
}

#[test]
fn paired_layers_check_their_arguments() {
    let dev = Device::Cpu;
    let t = |shape: &[usize]| Tensor::ones(shape, DType::F32, &dev).unwrap();
    let (w1, b1, w2, b2) = (t(&[8, 1, 3, 3]), t(&[8]), t(&[8, 8, 3, 3]), t(&[8]));
    // A window that does not divide the output runs the two ops, which refuse it.
    let x = t(&[1, 6, 6, 1]);
    let pair = |x: &Tensor, w2: &Tensor, k| {
        conv2d_pair_relu_pool_nhwc(x, (&w1, &b1, (1, 1)), (w2, &b2, (1, 1)), k)
    };
    assert!(pair(&x, &w2, 4).is_err());
    // Channels that do not chain are an error, not a panic.
    assert!(pair(&x, &t(&[8, 4, 3, 3]), 2).is_err());
    assert!(pair(&t(&[1, 6, 6, 2]), &w2, 2).is_err());
    assert_eq!(pair(&x, &w2, 2).unwrap().dims4().unwrap(), (1, 3, 3, 8));
}
