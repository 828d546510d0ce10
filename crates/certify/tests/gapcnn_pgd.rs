//! On the bundled GapCnn and fixture test images: PGD-100 with restarts at the
//! certified radius (Linf and L2) never changes the class, and never brings a margin
//! below its certified bound.

use attacks::{Attack, PgdConfig, PgdL2, PgdLinf, Targeting};
use candle_core::{DType, Device};
use certify::{certified_radius, Method, Network, Norm, RadiusSearch};
use mnist_data::{PixelFormat, Source};
use models::{load_model, Classifier, GapCnn};

#[test]
fn pgd_at_the_certified_radius_never_flips_gapcnn() {
    let dev = Device::Cpu;
    let weights = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/weights/gapcnn.safetensors"
    );
    let model = load_model::<GapCnn>(std::path::Path::new(weights), DType::F32, &dev).unwrap();
    let net = Network::from_model(&model).unwrap();
    let test = Source::Fixtures.load().unwrap().test;
    let indices = [0, 1];
    let x = test
        .images_tensor(&indices, PixelFormat::Gray, &dev)
        .unwrap();
    let labels: Vec<u32> = indices
        .iter()
        .map(|&i| test.label(i).unwrap() as u32)
        .collect();
    assert_eq!(
        model.predict(&x).unwrap(),
        labels,
        "the fixtures' first images are classified right"
    );
    for norm in [Norm::Linf, Norm::L2] {
        let mut search = RadiusSearch::default_for(norm, net.input_len());
        search.relative = 0.25;
        for (i, &label) in labels.iter().enumerate() {
            let image = x.get(i).unwrap();
            let r = certified_radius(&net, &image, label as usize, norm, Method::crown(), search)
                .unwrap();
            assert!(
                r.certified_at_zero && r.radius > 0.0,
                "{norm:?} image {i}: {r:?}"
            );
            let config = PgdConfig {
                eps: r.radius,
                step_size: r.radius / 20.0,
                steps: 100,
                random_start: true,
                restarts: 2,
                seed: i as u64,
            };
            let one = x.narrow(0, i, 1).unwrap();
            let t = Targeting::Untargeted;
            let outcome = match norm {
                Norm::Linf => PgdLinf(config).run(&model, &one, &[label], &t),
                Norm::L2 => PgdL2(config).run(&model, &one, &[label], &t),
            }
            .unwrap();
            assert_eq!(
                outcome.adversarial_predictions,
                vec![label],
                "{norm:?} image {i}"
            );
            let z: Vec<f64> = net
                .forward(&outcome.adversarial)
                .unwrap()
                .get(0)
                .unwrap()
                .to_vec1()
                .unwrap();
            for m in &r.at_radius.margins {
                let actual = z[label as usize] - z[m.other];
                assert!(
                    actual >= m.lower - 1e-6,
                    "{norm:?} image {i}: margin {actual} < bound {}",
                    m.lower
                );
            }
        }
    }
}
