//! Throughput of the Type I attack: (image, target) pairs x iterations per second.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use models::{load_model, GapCnn, Oracle, Svae};
use vae_attack::{type_one_attack, LatentAttackConfig};

fn type_one(c: &mut Criterion) {
    fastconv::runtime::tune_cpu_runtime();
    let dev = Device::Cpu;
    // The bundled trained weights, loaded as plain tensors as the attack runs them
    // (models from `init_model` hold `Var`s, whose gradients would be computed too).
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/weights");
    let svae =
        load_model::<Svae>(&weights.join("svae.safetensors"), DType::F32, &dev).expect("svae");
    let f1 =
        load_model::<GapCnn>(&weights.join("gapcnn.safetensors"), DType::F32, &dev).expect("f1");
    let oracle = load_model::<Oracle>(&weights.join("oracle.safetensors"), DType::F32, &dev)
        .expect("oracle");
    let pairs = 90;
    let iters = 10;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let x = models::random::uniform(&mut rng, (pairs, 1, 28, 28), 0.0, 1.0, DType::F32, &dev)
        .expect("x");
    let keep = vec![7u32; pairs];
    let targets: Vec<u32> = (0..pairs as u32).map(|i| i % 10).collect();
    // No early stop and no recording: pure optimisation steps.
    let config = LatentAttackConfig {
        max_iters: iters,
        stop: vae_attack::Stop::Budget,
        record_every: 0,
        frame_every: 0,
        ..LatentAttackConfig::type_one()
    };
    let mut g = c.benchmark_group("type_one");
    g.sample_size(10);
    g.throughput(Throughput::Elements((pairs * iters) as u64));
    // candle's own convolutions and pooling, then fastconv.
    for (label, fast) in [("candle", false), ("fast", true)] {
        fastconv::set_enabled(fast);
        g.bench_function(
            criterion::BenchmarkId::new("gapcnn_90_pairs_x_10_iterations", label),
            |b| {
                b.iter(|| {
                    type_one_attack(&svae, &f1, &oracle, &x, &keep, &targets, None, &config)
                        .expect("attack")
                })
            },
        );
    }
    g.finish();
    let _ = Tensor::zeros(1, DType::F32, &dev);
}

criterion_group!(benches, type_one);
criterion_main!(benches);
