//! Images per second of each attack on the bundled trained `GapCnn` (plain-tensor
//! weights, as attacks run it) and the first 250 fixture test images.
//! `cargo bench -p attacks`.
#![allow(missing_docs)]

use attacks::{Attack, CarliniWagnerL2, DeepFool, Fgsm, PgdLinf, Targeting};
use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use models::{load_model, Classifier, GapCnn};

const BATCH: usize = 250;

fn attacks(c: &mut Criterion) {
    fastconv::runtime::tune_cpu_runtime();
    let dev = Device::Cpu;
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/weights/gapcnn.safetensors");
    let model = load_model::<GapCnn>(&weights, DType::F32, &dev).expect("bundled weights");
    let test = mnist_data::Source::Fixtures.load().expect("fixtures").test;
    let (images, _) = test
        .first(BATCH)
        .to_tensors(mnist_data::PixelFormat::Gray, &dev)
        .expect("images");
    let labels = model.predict(&images).expect("forward pass");
    let cw = CarliniWagnerL2 {
        steps: 10,
        binary_search_steps: 2,
        abort_early: false,
        ..Default::default()
    };
    let list: [(&str, &dyn Attack); 4] = [
        ("fgsm", &Fgsm::default()),
        ("pgd-40", &PgdLinf::madry_mnist()),
        ("cw-2x10", &cw),
        ("deepfool", &DeepFool::default()),
    ];
    let mut group = c.benchmark_group("attacks");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, attack) in list {
        group.bench_function(BenchmarkId::new(name, BATCH), |b| {
            b.iter(|| {
                attack
                    .run(&model, &images, &labels, &Targeting::Untargeted)
                    .expect("attack")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, attacks);
criterion_main!(benches);
