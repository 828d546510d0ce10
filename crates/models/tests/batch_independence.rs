//! A row's bits do not depend on the batch it comes in: the dense layers of every model
//! (whose `gemm` products would otherwise sum in another order below 257 outputs or at
//! one row) and whole models on the fast path, value and input gradient, for batches
//! of 1 to 300 rows against the same rows in a batch of 300. The attacks rely on it
//! when they send only the rows that need a gradient through a model.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::VarBuilder;
use models::layers::Dense;
use models::{init_model, Classifier, GapCnn, Oracle, Svae};
use rand::{rngs::StdRng, SeedableRng};

/// Batch sizes tried against the batch of `FULL`.
const SIZES: [usize; 14] = [1, 2, 3, 5, 8, 13, 25, 26, 40, 90, 128, 256, 257, 299];
const FULL: usize = 300;

/// Rows (of `f`'s output and of the input gradient of `sum(f(x) * cotangent)`) that
/// differ in some bit from the same rows computed in the full batch, per batch size.
fn differing_rows(
    x: &Tensor,
    cot: &Tensor,
    f: &dyn Fn(&Tensor) -> Tensor,
) -> Vec<(usize, usize, usize)> {
    let run = |k: usize| -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let v = Var::from_tensor(&x.narrow(0, 0, k).unwrap()).unwrap();
        let y = f(v.as_tensor()).flatten_from(1).unwrap();
        let g = (&y * cot.narrow(0, 0, k).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = g.get(v.as_tensor()).unwrap().flatten_from(1).unwrap();
        (y.to_vec2().unwrap(), g.to_vec2().unwrap())
    };
    let (y_full, g_full) = run(FULL);
    SIZES
        .iter()
        .map(|&k| {
            let (y, g) = run(k);
            let dy = (0..k).filter(|&i| y[i] != y_full[i]).count();
            let dg = (0..k).filter(|&i| g[i] != g_full[i]).count();
            (k, dy, dg)
        })
        .filter(|&(_, dy, dg)| dy + dg > 0)
        .collect()
}

fn uniform(seed: u64, shape: (usize, usize), lo: f64, hi: f64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    models::random::uniform(&mut rng, shape, lo, hi, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn a_dense_layers_rows_do_not_depend_on_the_batch() {
    // Every shape of the models' dense layers.
    let shapes = [
        (128, 10),
        (784, 128),
        (3136, 1024),
        (1024, 10),
        (3136, 128),
        (128, 64),
        (32, 128),
        (128, 3136),
        (32, 256),
        (256, 128),
        (64, 1),
    ];
    for (i, (inp, out)) in shapes.into_iter().enumerate() {
        let seed = 10 * i as u64;
        let tensors = [
            ("l.weight".to_string(), uniform(seed, (out, inp), -0.1, 0.1)),
            (
                "l.bias".to_string(),
                uniform(seed + 1, (1, out), -0.1, 0.1).squeeze(0).unwrap(),
            ),
        ];
        let vb = VarBuilder::from_tensors(tensors.into_iter().collect(), DType::F32, &Device::Cpu);
        let dense = Dense::load(&vb, "l", inp, out).unwrap();
        let x = uniform(seed + 2, (FULL, inp), -1.0, 1.0);
        let cot = uniform(seed + 3, (FULL, out), -1.0, 1.0);
        let bad = differing_rows(&x, &cot, &|x| dense.forward(x).unwrap());
        assert!(
            bad.is_empty(),
            "{inp} -> {out}: (rows, differing values, differing gradients) {bad:?}"
        );
    }
}

#[test]
fn a_models_rows_do_not_depend_on_the_batch() {
    let dev = Device::Cpu;
    let images = |seed| {
        uniform(seed, (FULL, 784), 0.0, 1.0)
            .reshape((FULL, 1, 28, 28))
            .unwrap()
    };
    let (gapcnn, _) = init_model::<GapCnn>(1, DType::F32, &dev).unwrap();
    let (oracle, _) = init_model::<Oracle>(2, DType::F32, &dev).unwrap();
    let (svae, _) = init_model::<Svae>(3, DType::F32, &dev).unwrap();
    let cot10 = uniform(4, (FULL, 10), -1.0, 1.0);
    let bad = differing_rows(&images(5), &cot10, &|x| gapcnn.logits(x).unwrap());
    assert!(bad.is_empty(), "GapCnn: {bad:?}");
    let bad = differing_rows(&images(6), &cot10, &|x| oracle.logits(x).unwrap());
    assert!(bad.is_empty(), "Oracle: {bad:?}");
    // The SVAE's encoder (its stride-2 layers on the GEMM paths) and decoder.
    let cot64 = uniform(9, (FULL, 64), -1.0, 1.0);
    let bad = differing_rows(&images(10), &cot64, &|x| {
        let (mu, sigma) = svae.encode(x).unwrap();
        Tensor::cat(&[mu, sigma], 1).unwrap()
    });
    assert!(bad.is_empty(), "SVAE encoder: {bad:?}");
    // The SVAE's decoder, from codes to images.
    let z = uniform(7, (FULL, 32), -2.0, 2.0);
    let cot = uniform(8, (FULL, 784), -1.0, 1.0);
    let bad = differing_rows(&z, &cot, &|z| svae.decode(z).unwrap());
    assert!(bad.is_empty(), "SVAE decoder: {bad:?}");
}
