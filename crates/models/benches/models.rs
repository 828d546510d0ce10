//! Throughput of the models' hot paths: inference, a training step, and one
//! forward+backward with respect to the input (the attack step), each through candle's
//! own convolutions and pooling (`candle`), through `fastconv` with Winograd
//! off (`fast_gemm`), and through `fastconv` as it runs by default (`fast`).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use models::{init_model, Adam, AdamConfig, Classifier, GapCnn, Svae};

/// The paths, switched process-wide: (label, fastconv, Winograd).
const PATHS: [(&str, bool, bool); 3] = [
    ("candle", false, false),
    ("fast_gemm", true, false),
    ("fast", true, true),
];

/// Switches to one path.
fn select(fast: bool, winograd: bool) {
    fastconv::set_enabled(fast);
    fastconv::set_winograd(winograd);
}

fn inputs(n: usize) -> Tensor {
    let dev = Device::Cpu;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    models::random::uniform(&mut rng, (n, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).expect("inputs")
}

fn gapcnn(c: &mut Criterion) {
    fastconv::runtime::tune_cpu_runtime();
    let dev = Device::Cpu;
    let (model, varmap) = init_model::<GapCnn>(0, DType::F32, &dev).expect("init");
    let mut g = c.benchmark_group("gapcnn");
    g.sample_size(10);

    let x = inputs(1000);
    g.throughput(Throughput::Elements(1000));
    for (label, fast, winograd) in PATHS {
        select(fast, winograd);
        g.bench_function(BenchmarkId::new("inference_b1000", label), |b| {
            b.iter(|| model.logits(&x).expect("fwd"))
        });
    }

    let x = inputs(128);
    let y =
        Tensor::from_vec((0..128u32).map(|i| i % 10).collect::<Vec<_>>(), 128, &dev).expect("y");
    let mut adam = Adam::new(
        varmap
            .data()
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        AdamConfig::default(),
    )
    .expect("adam");
    g.throughput(Throughput::Elements(128));
    for (label, fast, winograd) in PATHS {
        select(fast, winograd);
        g.bench_function(BenchmarkId::new("train_step_b128", label), |b| {
            b.iter(|| {
                let loss = candle_nn::loss::cross_entropy(&model.logits(&x).expect("fwd"), &y)
                    .expect("loss");
                adam.step(&loss.backward().expect("bwd")).expect("step");
            })
        });
    }

    // An attack's model: trained weights as plain tensors (no weight gradients).
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/weights/gapcnn.safetensors");
    let model = models::load_model::<GapCnn>(&weights, DType::F32, &dev).expect("weights");
    let x = Var::from_tensor(&inputs(250)).expect("var");
    let y =
        Tensor::from_vec((0..250u32).map(|i| i % 10).collect::<Vec<_>>(), 250, &dev).expect("y");
    g.throughput(Throughput::Elements(250));
    for (label, fast, winograd) in PATHS {
        select(fast, winograd);
        g.bench_function(BenchmarkId::new("input_gradient_b250", label), |b| {
            b.iter(|| {
                let loss =
                    candle_nn::loss::cross_entropy(&model.logits(x.as_tensor()).expect("fwd"), &y)
                        .expect("loss");
                loss.backward().expect("bwd").get(x.as_tensor()).cloned()
            })
        });
    }
    g.finish();
}

fn svae(c: &mut Criterion) {
    fastconv::runtime::tune_cpu_runtime();
    let dev = Device::Cpu;
    let (svae, _) = init_model::<Svae>(0, DType::F32, &dev).expect("init");
    let mut g = c.benchmark_group("svae");
    g.sample_size(10);
    let x = inputs(64)
        .ge(0.5)
        .expect("bin")
        .to_dtype(DType::F32)
        .expect("f32");
    let y = Tensor::from_vec((0..64u32).map(|i| i % 10).collect::<Vec<_>>(), 64, &dev).expect("y");
    g.throughput(Throughput::Elements(64));
    for (label, fast, winograd) in PATHS {
        select(fast, winograd);
        g.bench_function(
            BenchmarkId::new("train_step_forward_backward_b64", label),
            |b| {
                b.iter(|| {
                    let (ce, kl, bce) =
                        models::train::svae_terms(&svae, &x, &y, None).expect("terms");
                    ((ce + kl).expect("add") + bce)
                        .expect("add")
                        .backward()
                        .expect("bwd")
                })
            },
        );
    }
    let x = inputs(500)
        .ge(0.5)
        .expect("bin")
        .to_dtype(DType::F32)
        .expect("f32");
    g.throughput(Throughput::Elements(500));
    for (label, fast, winograd) in PATHS {
        select(fast, winograd);
        g.bench_function(BenchmarkId::new("encode_decode_b500", label), |b| {
            b.iter(|| svae.decode(&svae.encode(&x).expect("enc").0).expect("dec"))
        });
    }
    g.finish();
}

criterion_group!(benches, gapcnn, svae);
criterion_main!(benches);
