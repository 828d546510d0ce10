//! Throughput of CAM (all 10 classes) and Grad-CAM (predicted class) on `GapCnn`
//! (seeded init), batch 250; criterion reports elements = maps per second.
#![allow(missing_docs)]

use cam::{class_activation_map, grad_cam, Target};
use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use models::{init_model, random::uniform, GapCnn};
use rand::{rngs::StdRng, SeedableRng};

const BATCH: usize = 250;

fn bench_maps(c: &mut Criterion) {
    let dev = Device::Cpu;
    let (model, _) = init_model::<GapCnn>(0, DType::F32, &dev).expect("seeded GapCnn");
    let mut rng = StdRng::seed_from_u64(0);
    let x = uniform(&mut rng, (BATCH, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).expect("images");

    let mut group = c.benchmark_group("gapcnn_batch_250");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * 10) as u64));
    group.bench_function("cam_all_10_classes", |b| {
        b.iter(|| class_activation_map(&model, &x, &Target::AllClasses).expect("cam"))
    });
    group.bench_function("grad_cam_all_10_classes", |b| {
        b.iter(|| grad_cam(&model, &x, &Target::AllClasses).expect("grad-cam"))
    });
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("grad_cam_predicted_class", |b| {
        b.iter(|| grad_cam(&model, &x, &Target::Predicted).expect("grad-cam"))
    });
    group.finish();
}

criterion_group!(benches, bench_maps);
criterion_main!(benches);
