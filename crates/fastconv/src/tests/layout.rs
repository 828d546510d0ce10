//! The channels-last ops against the channels-first ones.

use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, SeedableRng};

use super::*;
use crate::*;

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
            0 => conv2d_nhwc(&xl, &w, &b, opts(s, p), act(case.relu)),
            k => conv2d_relu_pool_nhwc(&xl, &w, &b, opts(s, p), k),
        };
        y.unwrap().permute((0, 3, 1, 2)).unwrap()
    } else {
        match pool {
            0 => conv2d(&x, &w, &b, opts(s, p), act(case.relu)),
            k => conv2d_relu_pool(&x, &w, &b, opts(s, p), k),
        }
        .unwrap()
    };
    value_and_gradients(&y, (&x, &w, &b), &mut rng)
}

#[test]
fn channels_last_ops_match_channels_first() {
    // Winograd (cropped tiles, padding 0-2, pooled by 2 and 4), one input channel
    // (GapCnn's conv1; channels-last the direct kernels of `passes::one_channel`,
    // channels-first im2col), im2col with several (5x5, stride 2, a count
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
        (2, 1, 32, 12, 11, 5, 2, 2, true, 0),
        (2, 1, 16, 9, 9, 3, 1, 0, false, 0),
        (2, 3, 5, 12, 12, 5, 1, 2, true, 0),
        (2, 4, 6, 11, 11, 3, 2, 1, false, 0),
        (2, 16, 5, 9, 14, 3, 1, 0, true, 0),
        (2, 3, 5, 12, 12, 5, 1, 2, true, 3),
        (2, 12, 8, 12, 12, 3, 1, 1, true, 2),
        // GapCnn's pooled layers: 32 channels, unpooled on sixteen lanes by AVX-512.
        (2, 8, 32, 12, 12, 3, 1, 1, true, 2),
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
fn channels_last_shapes_are_checked() {
    let dev = Device::Cpu;
    // 5 input channels last, a kernel for 2: an error, not a panic.
    let x = Tensor::zeros((1, 6, 6, 5), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((8, 2, 3, 3), DType::F32, &dev).unwrap();
    let b = Tensor::zeros(8, DType::F32, &dev).unwrap();
    assert!(conv2d_nhwc(&x, &w, &b, opts(1, 1), Activation::Relu).is_err());
    assert!(conv2d_relu_pool_nhwc(&x, &w, &b, opts(1, 1), 2).is_err());
    let x = Tensor::zeros((1, 6, 6, 2), DType::F32, &dev).unwrap();
    let y = conv2d_nhwc(&x, &w, &b, opts(1, 1), Activation::Relu).unwrap();
    assert_eq!(y.dims4().unwrap(), (1, 6, 6, 8));
    let y = conv2d_relu_pool_nhwc(&x, &w, &b, opts(1, 1), 3).unwrap();
    assert_eq!(y.dims4().unwrap(), (1, 2, 2, 8));
}
