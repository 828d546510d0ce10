//! Single convolutions: random shapes against candle (proptest), the models' layer
//! shapes, odd shapes on the shifted and Winograd paths, finite differences, skipped
//! gradients and bad shapes.

use candle_core::{DType, Device, Tensor, Var};
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::*;

proptest! {
    #![proptest_config(test_support::seeded(48))]

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
    // GapCnn conv2 and conv5 (Winograd F(4x4)), conv4 (F(5x5)), the oracle's 5x5
    // (F(3x3, 5x5)),
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
            conv2d(x, &w, &b, opts(stride, pad), Activation::Identity)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let v = Var::from_tensor(&x).unwrap();
        let y = conv2d(
            v.as_tensor(),
            &w,
            &b,
            opts(stride, pad),
            Activation::Identity,
        )
        .unwrap();
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
    let grads = conv2d(xv.as_tensor(), &w, &b, opts(1, 1), Activation::Relu)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&xv).is_some());
    assert!(grads.get(&w).is_none());
    let wv = Var::from_tensor(&w).unwrap();
    let grads = conv2d(&x, wv.as_tensor(), &b, opts(1, 1), Activation::Relu)
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
    assert!(conv2d(&x, &w, &b, opts(1, 1), Activation::Identity).is_err());
    let w = Tensor::zeros((3, 2, 3, 3), DType::F32, &dev).unwrap();
    let b4 = Tensor::zeros(4, DType::F32, &dev).unwrap();
    assert!(conv2d(&x, &w, &b4, opts(1, 1), Activation::Identity).is_err());
    let x3 = Tensor::zeros((2, 5, 5), DType::F32, &dev).unwrap();
    assert!(conv2d(&x3, &w, &b, opts(1, 1), Activation::Identity).is_err());
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
    // F(4x4, 3x3) or F(5x5, 3x3):
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
    // And 5x5 layers run F(3x3, 5x5): cropped last tiles (3 does not divide these
    // outputs but one), padding 0 to 4, a 5 x 5 image with no padding (one output).
    for &(n, h, w, pad, relu) in &[
        (3, 14, 14, 2, true),
        (1, 9, 12, 0, false),
        (2, 6, 11, 4, true),
        (2, 7, 7, 3, false),
        (1, 5, 5, 0, true),
        (3, 10, 8, 1, false),
    ] {
        let case = Case {
            n,
            c_in: 8,
            c_out: 16,
            h,
            w,
            k: 5,
            stride: 1,
            pad,
            relu,
        };
        check(&case, DType::F64, 1e-12);
        check(&case, DType::F32, 1e-5);
    }
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
                    conv2d_nhwc(
                        &x.permute((0, 2, 3, 1)).unwrap(),
                        &w,
                        &b,
                        opts(stride, pad),
                        Activation::Relu,
                    )
                } else {
                    conv2d(x, &w, &b, opts(stride, pad), Activation::Relu)
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

/// The fused ELU equals the fast convolution followed by candle's `elu(1.0)` to the
/// bit, in value and in all three gradients (it runs the same convolution, then the
/// same ELU and the same backward arithmetic), channels-first and channels-last, on
/// the GEMM paths and Winograd, in f32 and f64; and it equals candle's own conv2d and
/// `elu` within f32 rounding. The inputs straddle zero, so both branches run.
#[test]
fn fused_elu_is_candles_elu_after_the_convolution_to_the_bit() {
    let dev = Device::Cpu;
    for &(c_in, c_out, h, k, pad) in &[(16, 32, 14, 3, 1), (32, 16, 9, 5, 2), (3, 5, 7, 3, 0)] {
        for dtype in [DType::F32, DType::F64] {
            for nhwc in [false, true] {
                let mut rng = StdRng::seed_from_u64(11);
                let x = uniform(&mut rng, (2, c_in, h, h), -1.0, 1.0, dtype, &dev).unwrap();
                let x = if nhwc {
                    x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
                } else {
                    x
                };
                let w = uniform(&mut rng, (c_out, c_in, k, k), -0.5, 0.5, dtype, &dev).unwrap();
                let b = uniform(&mut rng, c_out, -0.3, 0.3, dtype, &dev).unwrap();
                let (x, w, b) = (
                    Var::from_tensor(&x).unwrap(),
                    Var::from_tensor(&w).unwrap(),
                    Var::from_tensor(&b).unwrap(),
                );
                let conv = if nhwc { conv2d_nhwc } else { conv2d };
                let o = opts(1, pad);
                let fused = conv(&x, &w, &b, o, Activation::Elu).unwrap();
                let after = conv(&x, &w, &b, o, Activation::Identity)
                    .unwrap()
                    .elu(1.0)
                    .unwrap();
                let what = format!("{c_in}->{c_out} {h}x{h} k{k} {dtype:?} nhwc {nhwc}");
                let signs = fused.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
                let signs: Vec<f64> = signs.to_vec1().unwrap();
                assert!(
                    signs.iter().any(|&v| v > 0.0) && signs.iter().any(|&v| v < 0.0),
                    "{what}: both branches"
                );
                let a = value_and_gradients(&fused, (&x, &w, &b), &mut StdRng::seed_from_u64(5));
                let c = value_and_gradients(&after, (&x, &w, &b), &mut StdRng::seed_from_u64(5));
                for (i, (a, c)) in a.iter().zip(&c).enumerate() {
                    let same = a.iter().zip(c).all(|(p, q)| p.to_bits() == q.to_bits());
                    assert!(same, "{what}: part {i} differs from conv then elu");
                }
                if !nhwc {
                    let reference = reference_conv2d(&x, &w, &b, o, Activation::Elu).unwrap();
                    let r = value_and_gradients(
                        &reference,
                        (&x, &w, &b),
                        &mut StdRng::seed_from_u64(5),
                    );
                    let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
                    assert_all_close(&a, &r, tol, &format!(" ({what}, against candle)"));
                }
            }
        }
    }
}
