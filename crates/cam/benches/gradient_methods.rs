//! Throughput of the input-resolution methods on `GapCnn` (seeded init, f32), a batch of
//! 64 images, the predicted class, default settings (Integrated Gradients 50
//! Gauss-Legendre steps, SmoothGrad 50 samples, Occlusion 4 x 4 windows at stride 2 =
//! 169 positions, 256 derived rows per pass); criterion reports elements = images per
//! second. One group per method.
#![allow(missing_docs)]

use cam::{
    Explainer, GradientTimesInput, IntegratedGradients, Occlusion, Saliency, SmoothGrad, Target,
};
use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use models::{init_model, random::uniform, GapCnn};
use rand::{rngs::StdRng, SeedableRng};

const BATCH: usize = 64;

fn bench_methods(c: &mut Criterion) {
    let dev = Device::Cpu;
    let (model, _) = init_model::<GapCnn>(0, DType::F32, &dev).expect("seeded GapCnn");
    let mut rng = StdRng::seed_from_u64(0);
    let x = uniform(&mut rng, (BATCH, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).expect("images");
    let methods: Vec<Box<dyn Explainer + '_>> = vec![
        Box::new(Saliency::new(&model)),
        Box::new(GradientTimesInput::new(&model)),
        Box::new(IntegratedGradients::new(&model)),
        Box::new(SmoothGrad::new(&model)),
        Box::new(Occlusion::new(&model)),
    ];
    for method in &methods {
        let mut group = c.benchmark_group(format!("{}_gapcnn_batch_{BATCH}", method.name()));
        group.sample_size(10);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function("predicted_class", |b| {
            b.iter(|| method.explain(&x, &Target::Predicted).expect("maps"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_methods);
criterion_main!(benches);
