//! Best-of-N and median throughput of GapCnn's three hot paths: a training step (batch
//! 128, Adam), an attack's input-gradient step (batch 250, the bundled weights) and
//! inference (batch 1000), and of a 2048 x 2048 f32 matmul as the machine's scale.
//!
//! The criterion benches (`cargo bench -p models --bench models`) report means; on a
//! shared 2-core machine a mean mixes in whatever else ran, so this prints the best
//! and the median of `N` timed repetitions next to each other.
//!
//! ```text
//! cargo run --release -p models --example step_throughput -- [N] [PATH]
//! RAYON_NUM_THREADS=1 cargo run --release -p models --example step_throughput
//! ```
//!
//! `PATH` (`training`, `gradient`, `inference` or `matmul`) times that path alone, for
//! a profiler. `matmul` is a 2048 x 2048 f32 matrix product through candle (the `gemm`
//! crate), printed in GFLOP/s: the machine's own scale for the other three figures,
//! which drift with whatever else shares the machine.
//!
//! `FASTCONV_SIMD=avx2` (or `baseline`) caps the Winograd rounds' instruction set below
//! the CPU's best (see `fastconv::limit_simd_path`); the first line names the path.

use candle_core::{DType, Device, Result, Tensor, Var};
use models::{init_model, Adam, AdamConfig, Classifier, GapCnn};
use std::time::Instant;

fn inputs(n: usize) -> Result<Tensor> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    models::random::uniform(&mut rng, (n, 1, 28, 28), 0.0, 1.0, DType::F32, &Device::Cpu)
}

fn labels(n: usize) -> Result<Tensor> {
    Tensor::from_vec((0..n as u32).map(|i| i % 10).collect(), n, &Device::Cpu)
}

/// Runs `step` once to warm up, then `reps` times, and prints `work` per second in
/// `unit`.
fn report(
    name: &str,
    (work, unit): (f64, &str),
    reps: usize,
    mut step: impl FnMut() -> Result<()>,
) -> Result<()> {
    step()?;
    let mut secs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        step()?;
        secs.push(start.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    let rate = |s: f64| work / s;
    println!(
        "{name:28} best {:7.0} {unit:8}   median {:7.0} {unit}",
        rate(secs[0]),
        rate(secs[reps / 2])
    );
    Ok(())
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    fastconv::runtime::tune_cpu_runtime();
    // On a worker of the pool, as `cargo xtask` runs (see `on_pool_worker`).
    fastconv::runtime::on_pool_worker(|| run().map_err(|e| e.to_string())).map_err(Into::into)
}

fn run() -> std::result::Result<(), Box<dyn std::error::Error>> {
    match std::env::var("FASTCONV_SIMD").as_deref() {
        Err(_) | Ok("") => {}
        Ok("baseline") => fastconv::limit_simd_path(Some(fastconv::SimdPath::Baseline)),
        Ok("avx2") => fastconv::limit_simd_path(Some(fastconv::SimdPath::Avx2)),
        Ok("avx512") => fastconv::limit_simd_path(None),
        Ok(other) => {
            return Err(format!("FASTCONV_SIMD is baseline, avx2 or avx512, got {other}").into())
        }
    }
    println!(
        "winograd simd path: {} (cpu: {})",
        fastconv::simd_path(),
        fastconv::cpu_simd_path()
    );
    let reps = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("N must be a count, got {n}"))?,
        None => 30,
    };
    let reps = usize::max(reps, 1);
    let only = std::env::args().nth(2);
    if let Some(p) = only.as_deref() {
        if !["training", "gradient", "inference", "matmul"].contains(&p) {
            return Err(format!("PATH is training, gradient, inference or matmul, got {p}").into());
        }
    }
    let runs = |path: &str| only.as_deref().is_none_or(|p| p == path);
    let dev = Device::Cpu;

    let (model, varmap) = init_model::<GapCnn>(0, DType::F32, &dev)?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| "poisoned var map")?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut adam = Adam::new(vars, AdamConfig::default())?;
    let (x, y) = (inputs(128)?, labels(128)?);
    if runs("training") {
        report(
            "training step, batch 128",
            (128.0, "images/s"),
            reps,
            || {
                let loss = candle_nn::loss::cross_entropy(&model.logits(&x)?, &y)?;
                adam.step(&loss.backward()?)
            },
        )?;
    }

    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/weights/gapcnn.safetensors");
    let model = models::load_model::<GapCnn>(&weights, DType::F32, &dev)?;
    let (x, y) = (Var::from_tensor(&inputs(250)?)?, labels(250)?);
    if runs("gradient") {
        report(
            "input gradient, batch 250",
            (250.0, "images/s"),
            reps,
            || {
                let loss = candle_nn::loss::cross_entropy(&model.logits(x.as_tensor())?, &y)?;
                loss.backward().map(|_| ())
            },
        )?;
    }

    let x = inputs(1000)?;
    if runs("inference") {
        report(
            "inference, batch 1000",
            (1000.0, "images/s"),
            reps.div_ceil(2),
            || model.logits(&x).map(|_| ()),
        )?;
    }

    if runs("matmul") {
        let n = 2048;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let a = models::random::uniform(&mut rng, (n, n), -1.0, 1.0, DType::F32, &dev)?;
        let b = models::random::uniform(&mut rng, (n, n), -1.0, 1.0, DType::F32, &dev)?;
        let gflop = 2.0 * (n * n * n) as f64 / 1e9;
        report(
            "matmul 2048 x 2048, f32",
            (gflop, "GFLOP/s"),
            reps.div_ceil(2),
            || a.matmul(&b).map(|_| ()),
        )?;
    }
    Ok(())
}
