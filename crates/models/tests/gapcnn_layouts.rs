//! GapCnn runs channels-last on the fast CPU path with Winograd (`features_nhwc`, the
//! `_nhwc` convolutions and average pool), channels-first on the GEMM paths and through
//! candle's own ops when `fastconv` is off: all must give the same logits, features
//! and gradients. Its own
//! test binary, because `set_enabled` and `set_winograd` are process-wide.

use candle_core::{DType, Device, Tensor, Var};
use fastconv::{set_enabled, set_winograd};
use models::{init_model, Classifier, FeatureClassifier, GapCnn};

/// Logits, features, the input gradient and the weight gradients (conv1..conv5 and
/// fc, in the var map's order) of a cross-entropy loss, flattened to f64.
fn run(model: &GapCnn, vars: &[(String, Var)], x: &Tensor) -> Vec<(String, Vec<f64>)> {
    let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let xv = Var::from_tensor(x).unwrap();
    let logits = model.logits(xv.as_tensor()).unwrap();
    let labels = Tensor::new(&[3u32, 7, 1], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
    let grads = loss.backward().unwrap();
    let (features, from_features) = model.features_and_logits(x).unwrap();
    let mut out = vec![
        ("logits".to_string(), flat(&logits)),
        ("features".to_string(), flat(&features)),
        ("logits from features".to_string(), flat(&from_features)),
        ("input gradient".to_string(), flat(grads.get(&xv).unwrap())),
    ];
    for (name, v) in vars {
        out.push((name.clone(), flat(grads.get(v).unwrap())));
    }
    out
}

#[test]
fn channels_last_and_channels_first_paths_agree() {
    let dev = Device::Cpu;
    let (model, varmap) = init_model::<GapCnn>(5, DType::F64, &dev).unwrap();
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(9);
    let x = models::random::uniform(&mut rng, (3, 1, 28, 28), 0.0, 1.0, DType::F64, &dev).unwrap();

    set_enabled(false);
    let reference = run(&model, &vars, &x);
    set_enabled(true);
    let winograd = run(&model, &vars, &x);
    // Without Winograd the model runs channels-first, on the GEMM paths; asked for
    // channels-last, it runs the GEMM paths channels-last, and the pooled layers
    // permuted around the channels-first fused op.
    set_winograd(false);
    let gemm = run(&model, &vars, &x);
    let features = model.features_nhwc(&x).unwrap();
    set_winograd(true);
    let reference_features = &reference[1].1;
    let permuted: Vec<f64> = features
        .permute((0, 3, 1, 2))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let scale = reference_features
        .iter()
        .fold(1e-3f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in permuted.iter().zip(reference_features).enumerate() {
        assert!(
            (a - b).abs() <= 1e-10 * scale,
            "channels-last GEMM features[{i}]"
        );
    }

    for (fast, path) in [(&winograd, "winograd"), (&gemm, "gemm")] {
        for ((what, a), (_, b)) in fast.iter().zip(&reference) {
            assert_eq!(a.len(), b.len(), "{path} {what}: lengths");
            let scale = b.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-10 * scale,
                    "{path} {what}[{i}]: {x} vs candle {y} (scale {scale})"
                );
            }
        }
    }
}
