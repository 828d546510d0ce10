//! Models end to end: input gradients against finite differences, checkpoints (round
//! trip and refusal), seeded training and exact resumption.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use models::train::{state_path, train_classifier, TrainConfig};
use models::{
    init_model, load_model, read_safetensors, save_model, save_tensors, Architecture, Classifier,
    GapCnn, Mlp, Oracle, Svae,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn random_images(seed: u64, n: usize, dtype: DType) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    models::random::uniform(&mut rng, (n, 1, 28, 28), 0.0, 1.0, dtype, &Device::Cpu).unwrap()
}

/// d f / d x at a few coordinates, analytic (autograd) against central differences, in f64.
fn check_input_gradient(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, seed: u64) {
    let var = Var::from_tensor(x).unwrap();
    let grads = f(var.as_tensor()).backward().unwrap();
    let g: Vec<f64> = grads
        .get(var.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    // ReLU and max-pool kinks make single coordinates with a vanishing gradient
    // unreliable, so compare where the gradient matters (as gradcheck tools do).
    let floor = 1e-3 * g.iter().fold(0f64, |m, v| m.max(v.abs()));
    let h = 1e-6;
    let mut checked = 0;
    for _ in 0..500 {
        let i = rng.random_range(0..base.len());
        if g[i].abs() < floor {
            continue;
        }
        let eval = |delta: f64| {
            let mut v = base.clone();
            v[i] += delta;
            let t = Tensor::from_vec(v, x.dims(), x.device()).unwrap();
            f(&t).to_scalar::<f64>().unwrap()
        };
        let numeric = (eval(h) - eval(-h)) / (2.0 * h);
        let rel = (numeric - g[i]).abs() / numeric.abs().max(g[i].abs());
        assert!(
            rel < 1e-2,
            "coordinate {i}: autograd {} vs finite difference {numeric}",
            g[i]
        );
        checked += 1;
        if checked == 8 {
            break;
        }
    }
    assert!(
        checked >= 4,
        "too few coordinates with a non-zero gradient: {checked}"
    );
}

fn logit_sum<M: Classifier>(model: &M) -> impl Fn(&Tensor) -> Tensor + '_ {
    // A fixed mix of logits, so every class contributes.
    move |x| {
        let logits = model.logits(x).unwrap();
        let w = Tensor::arange(1.0f64, 11.0, x.device()).unwrap();
        logits.broadcast_mul(&w).unwrap().sum_all().unwrap()
    }
}

#[test]
fn gapcnn_input_gradient_matches_finite_differences() {
    let (g, _) = init_model::<GapCnn>(0, DType::F64, &Device::Cpu).unwrap();
    check_input_gradient(&logit_sum(&g), &random_images(1, 2, DType::F64), 10);
}

#[test]
fn mlp_input_gradient_matches_finite_differences() {
    let (m, _) = init_model::<Mlp>(0, DType::F64, &Device::Cpu).unwrap();
    check_input_gradient(&logit_sum(&m), &random_images(1, 2, DType::F64), 11);
}

#[test]
fn oracle_input_gradient_matches_finite_differences() {
    let (o, _) = init_model::<Oracle>(0, DType::F64, &Device::Cpu).unwrap();
    check_input_gradient(&logit_sum(&o), &random_images(1, 2, DType::F64), 12);
}

#[test]
fn svae_decoder_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let (svae, _) = init_model::<Svae>(0, DType::F64, &dev).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let z = models::random::normal(&mut rng, (2, 32), DType::F64, &dev).unwrap();
    let var = Var::from_tensor(&z).unwrap();
    let f = |z: &Tensor| {
        let img = svae.decode(z).unwrap();
        let w = models::random::uniform(
            &mut StdRng::seed_from_u64(9),
            img.dims(),
            -1.0,
            1.0,
            DType::F64,
            &dev,
        )
        .unwrap();
        (img * w).unwrap().sum_all().unwrap()
    };
    let g: Vec<f64> = f(var.as_tensor())
        .backward()
        .unwrap()
        .get(var.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = z.flatten_all().unwrap().to_vec1().unwrap();
    for i in [0, 7, 31, 40, 63] {
        let eval = |d: f64| {
            let mut v = base.clone();
            v[i] += d;
            f(&Tensor::from_vec(v, (2, 32), &dev).unwrap())
                .to_scalar::<f64>()
                .unwrap()
        };
        let numeric = (eval(1e-5) - eval(-1e-5)) / 2e-5;
        let rel = (numeric - g[i]).abs() / numeric.abs().max(1e-8);
        assert!(rel < 1e-2, "z[{i}]: autograd {} vs {numeric}", g[i]);
    }
}

#[test]
fn svae_shapes() {
    let dev = Device::Cpu;
    let (svae, _) = init_model::<Svae>(0, DType::F32, &dev).unwrap();
    let x = random_images(2, 3, DType::F32)
        .ge(0.5)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let (mu, sigma) = svae.encode(&x).unwrap();
    assert_eq!((mu.dims(), sigma.dims()), (&[3, 32][..], &[3, 32][..]));
    assert!(sigma.min_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
    let xh = svae.decode(&mu).unwrap();
    assert_eq!(xh.dims(), &[3, 1, 28, 28]);
    assert_eq!(svae.classify_latent(&mu).unwrap().dims(), &[3, 10]);
    assert_eq!(svae.discriminate(&mu).unwrap().dims(), &[3, 1]);
}

#[test]
fn checkpoints_round_trip_bit_identically() {
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.safetensors");
    let (model, vars) = init_model::<GapCnn>(7, DType::F32, &dev).unwrap();
    save_model::<GapCnn>(&vars, &path).unwrap();
    let loaded = load_model::<GapCnn>(&path, DType::F32, &dev).unwrap();
    let x = random_images(3, 4, DType::F32);
    let a: Vec<f32> = model
        .logits(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = loaded
        .logits(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a, b);
    // PyTorch state-dict names.
    let names = read_safetensors(&path, &dev).unwrap();
    assert!(names.contains_key("conv1.weight") && names.contains_key("fc.bias"));
}

#[test]
fn bad_checkpoints_are_refused_by_name() {
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let (_, vars) = init_model::<Mlp>(0, DType::F32, &dev).unwrap();
    let good = dir.path().join("mlp.safetensors");
    save_model::<Mlp>(&vars, &good).unwrap();
    let tensors = read_safetensors(&good, &dev).unwrap();
    let write = |name: &str, t: &HashMap<String, Tensor>| {
        let p = dir.path().join(name);
        save_tensors(t, &HashMap::new(), &p).unwrap();
        p
    };
    let mut missing = tensors.clone();
    missing.remove("fc2.bias");
    let err = load_model::<Mlp>(&write("missing", &missing), DType::F32, &dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing tensor `fc2.bias`") && err.contains("missing"),
        "{err}"
    );

    let mut shape = tensors.clone();
    shape.insert(
        "fc1.weight".into(),
        Tensor::zeros((128, 783), DType::F32, &dev).unwrap(),
    );
    let err = load_model::<Mlp>(&write("shape", &shape), DType::F32, &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`fc1.weight` has shape [128, 783]"), "{err}");

    let mut extra = tensors.clone();
    extra.insert(
        "fc3.weight".into(),
        Tensor::zeros(3, DType::F32, &dev).unwrap(),
    );
    let err = load_model::<Mlp>(&write("extra", &extra), DType::F32, &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unexpected tensor `fc3.weight`"), "{err}");

    // NaN or infinite weights: refused by name and place, by the model loader and by the
    // plain reader every loader goes through.
    let mut nan = tensors.clone();
    let mut bias: Vec<f32> = nan["fc2.bias"].to_vec1().unwrap();
    bias[3] = f32::NAN;
    bias[7] = f32::NAN;
    nan.insert("fc2.bias".into(), Tensor::new(bias, &dev).unwrap());
    let err = load_model::<Mlp>(&write("nan.safetensors", &nan), DType::F32, &dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nan.safetensors")
            && err.contains("tensor `fc2.bias` holds 2 NaN or infinite value(s) among its 10 (the first, NaN, at flat index 3)"),
        "{err}"
    );
    let mut inf = tensors.clone();
    let mut w: Vec<f32> = inf["fc1.weight"].flatten_all().unwrap().to_vec1().unwrap();
    w[1000] = f32::NEG_INFINITY;
    inf.insert(
        "fc1.weight".into(),
        Tensor::from_vec(w, (128, 784), &dev).unwrap(),
    );
    let err = load_model::<Mlp>(&write("inf.safetensors", &inf), DType::F32, &dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("inf.safetensors")
            && err.contains("`fc1.weight`")
            && err.contains("-inf, at flat index 1000"),
        "{err}"
    );
    let tiny = HashMap::from([
        ("a".to_string(), Tensor::new(&[1f32, 2.0], &dev).unwrap()),
        (
            "b".to_string(),
            Tensor::new(&[f32::INFINITY], &dev).unwrap(),
        ),
    ]);
    let err = read_safetensors(&write("tiny.safetensors", &tiny), &dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tiny.safetensors")
            && err.contains("tensor `b` holds 1 NaN or infinite value(s) among its 1"),
        "{err}"
    );
    // The same values, finite, load.
    assert!(load_model::<Mlp>(&write("finite.safetensors", &tensors), DType::F32, &dev).is_ok());

    // A GapCnn checkpoint is not an Mlp; garbage is not a checkpoint; absence is said.
    let err = load_model::<GapCnn>(&good, DType::F32, &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv1.weight"), "{err}");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    let err = load_model::<Mlp>(&junk, DType::F32, &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("junk") && err.contains("safetensors"), "{err}");
    let err = load_model::<Mlp>(&dir.path().join("nope"), DType::F32, &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");
}

fn weights(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let t = read_safetensors(path, &Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn same_seed_same_weights_and_resume_is_exact() {
    let dev = Device::Cpu;
    let data = mnist_data::Source::Fixtures.load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let quiet = &mut |_: &models::train::TrainEvent| {};
    let run = |name: &str, epochs: usize, resume: bool, obs: &mut dyn models::train::Observer| {
        let p = dir.path().join(name);
        let cfg = TrainConfig::classifier(epochs, 42);
        train_classifier::<Mlp>(&data.train, &data.test, &cfg, &p, resume, &dev, obs).unwrap();
        p
    };
    let a = run("a", 1, false, quiet);
    let b = run("b", 1, false, quiet);
    assert_eq!(
        weights(&a),
        weights(&b),
        "same seed, same data, same weights"
    );
    assert!(state_path(&a).is_file());

    // Two epochs in one go equal one epoch, then a resumed second.
    let full = run("full", 2, false, quiet);
    let mut epochs_seen = Vec::new();
    let resumed = {
        let p = dir.path().join("a");
        let cfg = TrainConfig::classifier(2, 42);
        let mut obs = |e: &models::train::TrainEvent| {
            if let models::train::TrainEvent::EpochEnd { epoch, .. } = e {
                epochs_seen.push(*epoch);
            }
        };
        train_classifier::<Mlp>(&data.train, &data.test, &cfg, &p, true, &dev, &mut obs).unwrap();
        p
    };
    assert_eq!(epochs_seen, vec![2], "resume starts after the saved epoch");
    assert_eq!(weights(&full), weights(&resumed));
    let other = {
        let p = dir.path().join("other");
        let cfg = TrainConfig::classifier(1, 43);
        train_classifier::<Mlp>(&data.train, &data.test, &cfg, &p, false, &dev, quiet).unwrap();
        p
    };
    assert_ne!(weights(&a), weights(&other));
    assert_eq!(Mlp::param_specs().len(), 4);
}
