//! Throughput of the CAM family behind `Explainer` (cam, grad-cam, grad-cam++,
//! hires-cam, score-cam) on `GapCnn` with the trained weights of `fixtures/weights`, a
//! batch of 64 images, each image's predicted class; criterion reports elements =
//! images per second. Score-CAM runs 64 x 128 masked forwards per batch, 256 at a time.
#![allow(missing_docs)]

use std::path::Path;

use cam::{Cam, Explainer, GradCam, GradCamPlusPlus, HiResCam, ScoreCam, Target};
use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use models::{load_model, random::uniform, GapCnn};
use rand::{rngs::StdRng, SeedableRng};

const BATCH: usize = 64;

fn bench_feature_methods(c: &mut Criterion) {
    let dev = Device::Cpu;
    let weights =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/weights/gapcnn.safetensors");
    let model = load_model::<GapCnn>(&weights, DType::F32, &dev).expect("fixture weights");
    let mut rng = StdRng::seed_from_u64(0);
    let x = uniform(&mut rng, (BATCH, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).expect("images");

    let methods: Vec<Box<dyn Explainer + '_>> = vec![
        Box::new(Cam { model: &model }),
        Box::new(GradCam { model: &model }),
        Box::new(GradCamPlusPlus { model: &model }),
        Box::new(HiResCam { model: &model }),
        Box::new(ScoreCam::new(&model)),
    ];
    for method in &methods {
        let mut group = c.benchmark_group(method.name());
        group.sample_size(10);
        // Score-CAM takes seconds per batch: one iteration per sample.
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function("gapcnn_batch_64_predicted", |b| {
            b.iter(|| method.explain(&x, &Target::Predicted).expect("explain"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_feature_methods);
criterion_main!(benches);
