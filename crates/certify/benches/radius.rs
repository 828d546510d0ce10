//! Certified Linf radius (CROWN-IBP, bisection to 1 %) of the bundled `GapCnn` on the
//! first 8 fixture test images: one image at a time against the 8 bisections in
//! lockstep as one batch (`certified_radii`). Criterion reports elements = radii per
//! second.
#![allow(missing_docs)]

use candle_core::{DType, Device};
use certify::{certified_radii, certified_radius, Method, Network, Norm, RadiusSearch};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mnist_data::{PixelFormat, Source};
use models::{load_model, GapCnn};

const IMAGES: usize = 8;

fn bench_radius(c: &mut Criterion) {
    let dev = Device::Cpu;
    let weights = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/weights/gapcnn.safetensors"
    );
    let model = load_model::<GapCnn>(std::path::Path::new(weights), DType::F32, &dev)
        .expect("bundled GapCnn");
    let net = Network::from_model(&model).expect("GapCnn as a layer sequence");
    let test = Source::Fixtures.load().expect("fixtures").test;
    let indices: Vec<usize> = (0..IMAGES).collect();
    let x = test
        .images_tensor(&indices, PixelFormat::Gray, &dev)
        .expect("images");
    let labels: Vec<usize> = indices
        .iter()
        .map(|&i| test.label(i).expect("label") as usize)
        .collect();
    let search = RadiusSearch::default_for(Norm::Linf, net.input_len());
    let method = Method::crown_ibp();

    let mut group = c.benchmark_group("gapcnn_linf_radius_8_images");
    group.sample_size(10);
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.bench_function("one_image_at_a_time", |b| {
        b.iter(|| {
            for (i, &label) in labels.iter().enumerate() {
                let image = x.get(i).expect("image");
                certified_radius(&net, &image, label, Norm::Linf, method, search).expect("radius");
            }
        })
    });
    group.bench_function("batched_lockstep", |b| {
        b.iter(|| certified_radii(&net, &x, &labels, Norm::Linf, method, search).expect("radii"))
    });
    group.finish();
}

criterion_group!(benches, bench_radius);
criterion_main!(benches);
