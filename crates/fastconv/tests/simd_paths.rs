//! Every instruction set the Winograd rounds are built for that this CPU runs
//! (`fastconv::cpu_simd_path`: the baseline, AVX2+FMA, AVX-512), on the forward pass,
//! the input gradient and the weight gradient, plain and with ReLU and a 2x2 pool. The
//! two AVX builds run the same fused multiply-adds in the same order, so they agree to
//! the bit; the baseline rounds each multiply-add twice, so it agrees to f32 rounding.
//! All three stay within Winograd's 1e-5 (of the output's scale) of the f64 result.
//! The same for the direct kernels of a one-channel layer on a channels-last batch.
//! Its own test binary: the path limit is process-wide, and its tests take turns
//! ([`PATH_LIMIT`]).

use candle_core::{DType, Device, Tensor, Var};
use fastconv::{
    conv2d, conv2d_nhwc, conv2d_relu_pool, cpu_simd_path, limit_simd_path, simd_path, Activation,
    ConvOptions, SimdPath,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Held by each test while it moves the process-wide path limit.
static PATH_LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn uniform(rng: &mut StdRng, shape: (usize, usize, usize, usize)) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Forward values, input gradient and weight gradient of `sum(conv(x) * r)` (with ReLU
/// and a 2x2 pool when `pool`), flattened, in `x`'s dtype.
fn conv_and_grads(x: &Tensor, w: &Tensor, b: &Tensor, r: &Tensor, pool: bool) -> [Vec<f64>; 3] {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let same = ConvOptions::new(1, 1);
    let y = if pool {
        conv2d_relu_pool(xv.as_tensor(), wv.as_tensor(), b, same, 2).unwrap()
    } else {
        conv2d(
            xv.as_tensor(),
            wv.as_tensor(),
            b,
            same,
            Activation::Identity,
        )
        .unwrap()
    };
    let r = r
        .narrow(2, 0, y.dim(2).unwrap())
        .unwrap()
        .narrow(3, 0, y.dim(3).unwrap())
        .unwrap();
    let grads = (&y * r.to_dtype(y.dtype()).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    [
        flat(&y),
        flat(grads.get(&xv).unwrap()),
        flat(grads.get(&wv).unwrap()),
    ]
}

/// `t`'s values in f64, flattened.
fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The two AVX builds give the same bits, and the baseline (unfused multiply-adds)
/// other ones, where this CPU runs them: `by_path` holds each path's results.
fn assert_paths_agree<R: PartialEq>(by_path: &[(SimdPath, R)], label: &str) {
    let find = |path| by_path.iter().find(|(p, _)| *p == path).map(|(_, v)| v);
    if let (Some(avx2), Some(avx512)) = (find(SimdPath::Avx2), find(SimdPath::Avx512)) {
        assert!(avx2 == avx512, "{label}: AVX2 and AVX-512 differ");
    }
    if let (Some(base), Some(avx2)) = (find(SimdPath::Baseline), find(SimdPath::Avx2)) {
        assert!(
            base != avx2,
            "{label}: the baseline did not run its own code"
        );
    }
}

/// The paths this CPU runs, from the baseline up.
fn paths() -> Vec<SimdPath> {
    [SimdPath::Baseline, SimdPath::Avx2, SimdPath::Avx512]
        .into_iter()
        .filter(|&p| p <= cpu_simd_path())
        .collect()
}

fn worst_relative(got: &[f64], exact: &[f64]) -> f64 {
    let scale = exact.iter().fold(0f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(exact)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    err / scale
}

#[test]
fn every_simd_path_this_cpu_runs_gives_the_same_convolution() {
    let _turn = PATH_LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let (best, paths) = (cpu_simd_path(), paths());
    println!("this CPU runs the Winograd rounds on: {paths:?}");
    let mut rng = StdRng::seed_from_u64(7);
    // 12 x 12 maps, a batch of 3: Winograd's shape (both channel counts multiples of
    // 8), several tiles per image and a partial tile block. 16 -> 24 channels: the
    // AVX-512 build transforms 16 channels on sixteen lanes and 24 on eight (forward
    // input and gradient output wide, the rest not); 32 -> 16: every transform wide.
    for (ci, co) in [(16, 24), (32, 16)] {
        let x = uniform(&mut rng, (3, ci, 12, 12));
        let w = (uniform(&mut rng, (co, ci, 3, 3)) * 0.3).unwrap();
        let b = (uniform(&mut rng, (co, 1, 1, 1)) * 0.1)
            .unwrap()
            .flatten_all()
            .unwrap();
        let r = uniform(&mut rng, (3, co, 12, 12));
        let f32s = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        for pool in [false, true] {
            let exact = conv_and_grads(&x, &w, &b, &r, pool);
            let mut by_path = Vec::new();
            for &p in &paths {
                limit_simd_path(Some(p));
                assert_eq!(simd_path(), p);
                let got = conv_and_grads(&f32s(&x), &f32s(&w), &f32s(&b), &r, pool);
                for (what, (g, e)) in ["value", "input gradient", "weight gradient"]
                    .iter()
                    .zip(got.iter().zip(&exact))
                {
                    let err = worst_relative(g, e);
                    assert!(
                        err < 1e-5,
                        "{ci}->{co} {p} pool {pool}: {what} off by {err:e} of its scale"
                    );
                }
                by_path.push((p, got));
            }
            limit_simd_path(None);
            assert_eq!(simd_path(), best);
            // Fused and unfused multiply-adds: the same sums, rounded differently.
            assert_paths_agree(&by_path, &format!("{ci}->{co} pool {pool}"));
        }
    }
}

/// Value, input gradient, weight gradient and bias gradient of
/// `sum(relu(conv(x) + b) * r)` on a channels-last batch `x`, flattened, in `x`'s dtype.
fn nhwc_conv_and_grads(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    r: &Tensor,
    o: ConvOptions,
) -> [Vec<f64>; 4] {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let bv = Var::from_tensor(b).unwrap();
    let y = conv2d_nhwc(
        xv.as_tensor(),
        wv.as_tensor(),
        bv.as_tensor(),
        o,
        Activation::Relu,
    )
    .unwrap();
    let r = r.to_dtype(y.dtype()).unwrap();
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let grad = |v: &Var| flat(grads.get(v).unwrap());
    [flat(&y), grad(&xv), grad(&wv), grad(&bv)]
}

#[test]
fn every_simd_path_this_cpu_runs_gives_the_same_one_channel_layer() {
    let _turn = PATH_LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let paths = paths();
    let mut rng = StdRng::seed_from_u64(8);
    // GapCnn's conv1 (32 channels: sixteen lanes in the AVX-512 build, eight in the
    // AVX2 one) and a 5x5 stride-2 layer of 24 (eight lanes in both; its input
    // gradient runs col2im, at stride 2).
    for (co, k, stride, pad) in [(32, 3, 1, 1), (24, 5, 2, 2)] {
        let x = (uniform(&mut rng, (3, 13, 12, 1)) + 1.0).unwrap();
        let w = (uniform(&mut rng, (co, 1, k, k)) * 0.4).unwrap();
        let b = (uniform(&mut rng, (co, 1, 1, 1)) * 0.2)
            .unwrap()
            .flatten_all()
            .unwrap();
        let o = ConvOptions::new(stride, pad);
        let (ho, wo) = (
            (13 + 2 * pad - k) / stride + 1,
            (12 + 2 * pad - k) / stride + 1,
        );
        let r = uniform(&mut rng, (3, ho, wo, co));
        let exact = nhwc_conv_and_grads(&x, &w, &b, &r, o);
        let f32s = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let mut by_path = Vec::new();
        for &p in &paths {
            limit_simd_path(Some(p));
            let got = nhwc_conv_and_grads(&f32s(&x), &f32s(&w), &f32s(&b), &r, o);
            let whats = [
                "value",
                "input gradient",
                "weight gradient",
                "bias gradient",
            ];
            for (what, (g, e)) in whats.iter().zip(got.iter().zip(&exact)) {
                let err = worst_relative(g, e);
                assert!(
                    err < 1e-5,
                    "1->{co} k {k} {p}: {what} off by {err:e} of its scale"
                );
            }
            by_path.push((p, got));
        }
        limit_simd_path(None);
        assert_paths_agree(&by_path, &format!("1->{co} k {k}"));
    }
}
