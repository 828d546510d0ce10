//! Images per second of each attack on a seeded `GapCnn`, batch 250.
//! `cargo bench -p attacks`.
#![allow(missing_docs)]

use attacks::{Attack, CarliniWagnerL2, DeepFool, Fgsm, PgdLinf, Targeting};
use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use models::{init_model, random::uniform, Classifier, GapCnn};
use rand::{rngs::StdRng, SeedableRng};

const BATCH: usize = 250;

fn attacks(c: &mut Criterion) {
    let dev = Device::Cpu;
    let (model, _) = init_model::<GapCnn>(0, DType::F32, &dev).expect("seeded init");
    let mut rng = StdRng::seed_from_u64(0);
    let images =
        uniform(&mut rng, (BATCH, 1, 28, 28), 0.0, 1.0, DType::F32, &dev).expect("random images");
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
