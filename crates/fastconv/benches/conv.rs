//! Each convolution shape of GapCnn, the oracle and the SVAE, through candle's conv2d
//! and through the fast op with Winograd off ("gemm") and on ("winograd", the 3x3 and 5x5
//! stride-1 layers with 8+ input channels; on an AVX-512 CPU also "winograd-avx2", its
//! AVX2+FMA build; for a one-input-channel layer also "direct-nhwc", the channels-last
//! batch GapCnn runs, through the direct kernels): forward, and forward + both
//! gradients.
//! Throughput is in images; `conv2d_flops` gives each shape's work for GFLOP/s.
//! `matmul/2048` is a 2048 x 2048 f32 product through candle (the `gemm` crate), in
//! elements of FLOPs: the machine's own GEMM rate in the same run, the scale that each
//! layer's GFLOP/s is read against.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use candle_core::{DType, Device, Shape, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fastconv::{
    conv2d, conv2d_flops, conv2d_nhwc, cpu_simd_path, limit_simd_path, reference_conv2d,
    set_winograd, Activation, ConvOptions, SimdPath,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// One convolution of a model, at batch 128.
struct Layer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    size: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

const fn layer(
    name: &'static str,
    (c_in, c_out): (usize, usize),
    size: usize,
    (k, stride, pad): (usize, usize, usize),
) -> Layer {
    Layer {
        name,
        c_in,
        c_out,
        size,
        k,
        stride,
        pad,
    }
}

const BATCH: usize = 128;

/// Uniform samples in `[lo, hi)` drawn from `rng` in f64, as a tensor of `shape`.
fn uniform(
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

const LAYERS: [Layer; 8] = [
    layer("gapcnn_conv1_1x32_28", (1, 32), 28, (3, 1, 1)),
    layer("gapcnn_conv2_32x32_28", (32, 32), 28, (3, 1, 1)),
    layer("gapcnn_conv3_32x64_14", (32, 64), 14, (3, 1, 1)),
    layer("gapcnn_conv4_64x64_14", (64, 64), 14, (3, 1, 1)),
    layer("gapcnn_conv5_64x128_7", (64, 128), 7, (3, 1, 1)),
    layer("oracle_conv2_32x64_14_k5", (32, 64), 14, (5, 1, 2)),
    layer("svae_enc2_16x32_28_s2", (16, 32), 28, (3, 2, 1)),
    layer("svae_dec2_32x32_14", (32, 32), 14, (3, 1, 1)),
];

fn conv_layers(c: &mut Criterion) {
    fastconv::runtime::tune_cpu_runtime();
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(0);
    for l in &LAYERS {
        let (name, c_in, c_out, size, k, stride, pad, n) =
            (l.name, l.c_in, l.c_out, l.size, l.k, l.stride, l.pad, BATCH);
        let x = uniform(&mut rng, (n, c_in, size, size), 0.0, 1.0, DType::F32, &dev).expect("x");
        let w = uniform(&mut rng, (c_out, c_in, k, k), -0.1, 0.1, DType::F32, &dev).expect("w");
        let b = Tensor::zeros(c_out, DType::F32, &dev).expect("b");
        let options = ConvOptions::new(stride, pad);
        let flops =
            conv2d_flops((n, c_in, size, size), (c_out, c_in, k, k), options).expect("shape");
        let mut g = c.benchmark_group(format!("conv/{name}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(n as u64));
        eprintln!(
            "{name}: {:.1} MFLOP forward per image",
            flops / n as f64 / 1e6
        );
        let winograd_applies = (k == 3 || k == 5) && stride == 1 && c_in >= 8;
        // On an AVX-512 CPU, Winograd also capped to its AVX2+FMA build: the same
        // arithmetic to the bit, on eight lanes instead of sixteen.
        let avx512 = cpu_simd_path() == SimdPath::Avx512;
        for (label, fast, winograd) in [
            ("candle", false, false),
            ("gemm", true, false),
            ("winograd-avx2", true, true),
            ("winograd", true, true),
        ] {
            if winograd && !winograd_applies || label == "winograd-avx2" && !avx512 {
                continue;
            }
            set_winograd(winograd);
            limit_simd_path((label == "winograd-avx2").then_some(SimdPath::Avx2));
            let f = if fast { conv2d } else { reference_conv2d };
            g.bench_function(BenchmarkId::new("forward", label), |bench| {
                bench.iter(|| f(&x, &w, &b, options, Activation::Relu).expect("fwd"))
            });
            let (xv, wv, bv) = (
                Var::from_tensor(&x).expect("var"),
                Var::from_tensor(&w).expect("var"),
                Var::from_tensor(&b).expect("var"),
            );
            g.bench_function(BenchmarkId::new("forward_backward", label), |bench| {
                bench.iter(|| {
                    f(
                        xv.as_tensor(),
                        wv.as_tensor(),
                        bv.as_tensor(),
                        options,
                        Activation::Relu,
                    )
                    .expect("fwd")
                    .sum_all()
                    .expect("sum")
                    .backward()
                    .expect("bwd")
                })
            });
        }
        if c_in == 1 {
            // The channels-last batch (one channel: the same values), as GapCnn's conv1
            // runs it: the direct kernels of a one-channel layer.
            set_winograd(true);
            limit_simd_path(None);
            let x = x
                .permute((0, 2, 3, 1))
                .and_then(|x| x.contiguous())
                .expect("nhwc");
            g.bench_function(BenchmarkId::new("forward", "direct-nhwc"), |bench| {
                bench.iter(|| conv2d_nhwc(&x, &w, &b, options, Activation::Relu).expect("fwd"))
            });
            let (xv, wv, bv) = (
                Var::from_tensor(&x).expect("var"),
                Var::from_tensor(&w).expect("var"),
                Var::from_tensor(&b).expect("var"),
            );
            g.bench_function(
                BenchmarkId::new("forward_backward", "direct-nhwc"),
                |bench| {
                    bench.iter(|| {
                        let y = conv2d_nhwc(
                            xv.as_tensor(),
                            wv.as_tensor(),
                            bv.as_tensor(),
                            options,
                            Activation::Relu,
                        );
                        y.expect("fwd")
                            .sum_all()
                            .expect("sum")
                            .backward()
                            .expect("bwd")
                    })
                },
            );
        }
        g.finish();
    }
}

/// The scale: a 2048 x 2048 f32 matrix product, its throughput counted in FLOPs.
fn matmul_reference(c: &mut Criterion) {
    fastconv::runtime::tune_cpu_runtime();
    let n = 2048;
    let mut rng = StdRng::seed_from_u64(1);
    let dev = Device::Cpu;
    let a = uniform(&mut rng, (n, n), -1.0, 1.0, DType::F32, &dev).expect("a");
    let b = uniform(&mut rng, (n, n), -1.0, 1.0, DType::F32, &dev).expect("b");
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
    g.bench_function("2048", |bench| bench.iter(|| a.matmul(&b).expect("matmul")));
    g.finish();
}

criterion_group!(benches, matmul_reference, conv_layers);
criterion_main!(benches);
