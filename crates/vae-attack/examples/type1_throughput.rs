//! Best-of-R and median throughput of the Type I attack and of the class transition
//! on one harness batch: 90 (image, target) pairs from the bundled fixtures, the
//! bundled trained weights, the harness's settings. The figure is the harness's
//! `type1.pair_iterations_per_second`: the iterations the pairs ran (each pair's own,
//! up to its early stop), summed, over the wall time of the call.
//!
//! ```text
//! cargo build --release -p vae-attack --example type1_throughput
//! target/release/examples/type1_throughput [--iters N] [--reps R]
//!     [--type1 | --transition | --constrained] [--no-records] [--dump FILE]
//! ```
//!
//! The pairs: the first fixture test image of each class (test image 0, the strip
//! image of the harness, comes first), each towards its 9 other classes, in one batch
//! of 90 as `harness::stages::type1` makes them, with f1's prediction of the clean image
//! as the label to keep. The Type I attack runs `LatentAttackConfig::type_one()` with
//! the stage's `max_iters` (default 500), `record_every` 10 and `frame_every`
//! `max_iters / 5`; the class transition `LatentAttackConfig::transition()` with the
//! same three, without f1 and without an oracle. Each is warmed up by a 2-iteration
//! run, then timed R times (default 3). `--constrained` times, instead of the two, the
//! harness's second Type I mode: `LatentAttackConfig::constrained()` judge-free, with
//! the class means of the fixtures' training images and the same `max_iters` (its
//! step adds the encoder and f2 on the decoded image). `--no-records` sets `record_every` and
//! `frame_every` to 0 (the attack without its trajectory bookkeeping, as the PyTorch
//! peer runs it).
//!
//! Two threads unless `RAYON_NUM_THREADS` says otherwise. `--dump FILE` writes, as
//! JSON, every pair's outcome (iterations, success, f1's, the oracle's and f2's
//! arg-max, the final z) and the models' outputs on the same images and codes, for
//! `bench/type1_peer.py --check FILE`, the PyTorch implementation of the same attack.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use mnist_data::PixelFormat;
use models::{load_model, Classifier, GapCnn, Oracle, Svae};
use serde_json::{json, Value};
use vae_attack::{
    class_transition, latent_objective, type_one_attack, type_one_attack_judge_free, ClassMeans,
    LatentAttackConfig, LatentOutcome,
};

type Error = Box<dyn std::error::Error>;

struct Args {
    iters: usize,
    reps: usize,
    type1: bool,
    transition: bool,
    constrained: bool,
    dump: Option<PathBuf>,
    records: bool,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        iters: 500,
        reps: 3,
        type1: true,
        transition: true,
        constrained: false,
        dump: None,
        records: true,
    };
    let (mut only_type1, mut only_transition, mut only_constrained) = (false, false, false);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--iters" => args.iters = value("--iters")?.parse()?,
            "--reps" => args.reps = value("--reps")?.parse::<usize>()?.max(1),
            "--dump" => args.dump = Some(PathBuf::from(value("--dump")?)),
            "--type1" => only_type1 = true,
            "--transition" => only_transition = true,
            "--constrained" => only_constrained = true,
            "--no-records" => args.records = false,
            "-h" | "--help" => {
                println!(
                    "type1_throughput [--iters N] [--reps R] [--type1 | --transition | --constrained] [--no-records] [--dump FILE]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if only_type1 || only_transition || only_constrained {
        args.type1 = only_type1;
        args.transition = only_transition;
        args.constrained = only_constrained;
    }
    Ok(args)
}

/// The harness's settings for a stage of `iters` iterations (without trajectory
/// records and frames when `records` is false).
fn harness_config(base: LatentAttackConfig, iters: usize, records: bool) -> LatentAttackConfig {
    LatentAttackConfig {
        max_iters: iters,
        record_every: if records { 10 } else { 0 },
        frame_every: if records { (iters / 5).max(1) } else { 0 },
        ..base
    }
}

/// Rows of a 2-D (or flattened N-D) f32 tensor.
fn rows(t: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    t.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()
}

/// Times `attack` `reps` times after a warm-up; prints the line and returns the last
/// outcome.
fn race(
    name: &str,
    reps: usize,
    warm_up: impl Fn() -> vae_attack::Result<LatentOutcome>,
    attack: impl Fn() -> vae_attack::Result<LatentOutcome>,
) -> Result<LatentOutcome, Error> {
    warm_up()?;
    let mut secs = Vec::with_capacity(reps);
    let mut last = None;
    let mut work = 0usize;
    for _ in 0..reps {
        let start = Instant::now();
        let outcome = attack()?;
        secs.push(start.elapsed().as_secs_f64());
        work = outcome.iterations.iter().sum();
        last = Some(outcome);
    }
    secs.sort_by(f64::total_cmp);
    let median = secs[reps / 2];
    let rate = |s: f64| work as f64 / s;
    println!(
        "{name:28} best {:7.0} pair-it/s   median {:7.0} pair-it/s   {work} pair-iterations, wall {median:.2} s (best {:.2} s)",
        rate(secs[0]),
        rate(median),
        secs[0],
    );
    Ok(last.expect("at least one repetition"))
}

fn outcome_json(o: &LatentOutcome) -> Result<Value, Error> {
    let z = rows(&o.z)?;
    let pairs: Vec<Value> = (0..o.iterations.len())
        .map(|i| {
            json!({
                "iterations": o.iterations[i],
                "success": o.success[i],
                "f1_pred": o.f1_pred.get(i),
                "oracle_pred": o.oracle_pred.get(i),
                "f2_pred": o.f2_pred[i],
                "z": z[i],
            })
        })
        .collect();
    Ok(Value::Array(pairs))
}

fn main() -> Result<(), Error> {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Before any thread pool starts: rayon's and candle's both read it.
        std::env::set_var("RAYON_NUM_THREADS", "2");
    }
    fastconv::runtime::tune_cpu_runtime();
    // On a worker of the pool, as `cargo xtask` runs (see `on_pool_worker`).
    fastconv::runtime::on_pool_worker(|| run().map_err(|e| e.to_string())).map_err(Into::into)
}

fn run() -> Result<(), Error> {
    let args = parse_args()?;
    let dev = Device::Cpu;
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/weights");
    let svae = load_model::<Svae>(&weights.join("svae.safetensors"), DType::F32, &dev)?;
    let f1 = load_model::<GapCnn>(&weights.join("gapcnn.safetensors"), DType::F32, &dev)?;
    let oracle = load_model::<Oracle>(&weights.join("oracle.safetensors"), DType::F32, &dev)?;

    let splits = mnist_data::load_fixtures()?;
    let test = splits.test;
    let chosen = test.balanced_indices(1)?;
    let mut pair_image = Vec::new();
    let mut targets = Vec::new();
    for &i in &chosen {
        let y = u32::from(test.label(i).unwrap_or(0));
        for t in (0..10u32).filter(|&t| t != y) {
            pair_image.push(i);
            targets.push(t);
        }
    }
    let n = pair_image.len();
    let x = test.images_tensor(&pair_image, PixelFormat::Gray, &dev)?;
    let keep = f1.predict(&x)?;

    let type1_config = harness_config(LatentAttackConfig::type_one(), args.iters, args.records);
    let transition_config =
        harness_config(LatentAttackConfig::transition(), args.iters, args.records);
    let warm = |c: &LatentAttackConfig| LatentAttackConfig {
        max_iters: 2,
        ..c.clone()
    };
    let mut dump = serde_json::Map::new();
    if args.type1 {
        let name = format!("type1 ({n} pairs, {} it)", args.iters);
        let run = |c: &LatentAttackConfig| {
            type_one_attack(&svae, &f1, &oracle, &x, &keep, &targets, None, c)
        };
        let o = race(
            &name,
            args.reps,
            || run(&warm(&type1_config)),
            || run(&type1_config),
        )?;
        dump.insert("type1".into(), outcome_json(&o)?);
    }
    if args.transition {
        let name = format!("transition ({n} pairs, {} it)", args.iters);
        let run = |c: &LatentAttackConfig| class_transition(&svae, None, &x, &targets, c);
        let o = race(
            &name,
            args.reps,
            || run(&warm(&transition_config)),
            || run(&transition_config),
        )?;
        dump.insert("transition".into(), outcome_json(&o)?);
    }

    if args.constrained {
        let means = ClassMeans::from_training(&svae, &splits.train, &dev)?;
        let config = harness_config(LatentAttackConfig::constrained(), args.iters, args.records);
        let name = format!("constrained ({n} pairs, {} it)", args.iters);
        let run = |c: &LatentAttackConfig| {
            type_one_attack_judge_free(&svae, &f1, &x, &keep, &targets, Some(&means), c)
        };
        let o = race(&name, args.reps, || run(&warm(&config)), || run(&config))?;
        dump.insert("constrained".into(), outcome_json(&o)?);
    }

    if let Some(path) = &args.dump {
        dump.insert("iters".into(), json!(args.iters));
        dump.insert(
            "pairs".into(),
            json!({ "image": pair_image, "target": targets, "keep": keep }),
        );
        dump.insert(
            "models".into(),
            models_json(&svae, &f1, &oracle, &test, &chosen, &x, &targets, &keep)?,
        );
        std::fs::write(path, serde_json::to_string(&Value::Object(dump))?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The models' outputs on the chosen images and on their codes, and the gradient of
/// both objectives at the start codes: what the peer must reproduce before the
/// attacks can agree.
#[allow(clippy::too_many_arguments)]
fn models_json(
    svae: &Svae,
    f1: &GapCnn,
    oracle: &Oracle,
    test: &mnist_data::Dataset,
    chosen: &[usize],
    pair_x: &Tensor,
    targets: &[u32],
    keep: &[u32],
) -> Result<Value, Error> {
    let dev = Device::Cpu;
    let x = test.images_tensor(chosen, PixelFormat::Gray, &dev)?;
    let binary = x.gt(127.0 / 255.0)?.to_dtype(DType::F32)?;
    let (mu, _) = svae.encode(&binary)?;
    let decoded = svae.decode(&mu)?;
    // The gradient of each objective at the pairs' start codes, k = 1e-3 for f1's term.
    let n = targets.len();
    let pair_binary = pair_x.gt(127.0 / 255.0)?.to_dtype(DType::F32)?;
    let z0 = Var::from_tensor(&svae.encode(&pair_binary)?.0)?;
    let t = Tensor::from_vec(targets.to_vec(), n, &dev)?;
    let y = Tensor::from_vec(keep.to_vec(), n, &dev)?;
    let k = Tensor::full(1e-3f32, n, &dev)?;
    let gradient = |f1: Option<&dyn Classifier>, c: &LatentAttackConfig| -> Result<_, Error> {
        let terms = latent_objective(svae, f1, z0.as_tensor(), &t, &y, &k, c)?;
        let grads = terms.total.sum_all()?.backward()?;
        let g = grads.get(z0.as_tensor()).ok_or("no gradient reached z")?;
        Ok(rows(g)?)
    };
    Ok(json!({
        "images": chosen,
        "mu": rows(&mu)?,
        "decoded": rows(&decoded)?,
        "f1_logits_x": rows(&f1.logits(&x)?)?,
        "oracle_logits_x": rows(&oracle.logits(&x)?)?,
        "f1_logits_decoded": rows(&f1.logits(&decoded)?)?,
        "oracle_logits_decoded": rows(&oracle.logits(&decoded)?)?,
        "f2_logits": rows(&svae.classify_latent(&mu)?)?,
        "d_logits": rows(&svae.discriminate(&mu)?)?,
        "grad_type1": gradient(Some(f1), &LatentAttackConfig::type_one())?,
        "grad_transition": gradient(None, &LatentAttackConfig::transition())?,
    }))
}
