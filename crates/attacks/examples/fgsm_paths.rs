//! FGSM on GapCnn through each convolution path of `fastconv`: the evidence for
//! the README's note on FGSM against torchattacks.
//!
//! ```text
//! cargo run --release -p attacks --example fgsm_paths -- --data-dir DIR \
//!     [--n 1000] [--eps 0.3] [--weights W] [--out DIR] [--json FILE]
//! ```
//!
//! The same attack and images, five ways: f32 and f64, each with Winograd (the
//! default for GapCnn's 3x3 layers) and with the GEMM paths, and f32 with candle's own
//! ops. Where a max-pool window holds equal values (uniform background), PyTorch and
//! the GEMM paths compute them exactly equal and the gradient goes to the first;
//! Winograd's position-dependent rounding makes one of them larger by an ulp, so the
//! gradient goes there instead; candle's reduction-based pool sends it to every tied
//! element. The table shows robust accuracy for each and how many adversarial
//! predictions differ from the f32 GEMM run. With `--out`, one CSV per path in the
//! columns of `cargo xtask attack --per-image` (for `bench/fgsm_reference.py --ours`).

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;

use attacks::{Attack, Fgsm, Targeting};
use candle_core::{DType, Device};
use models::{load_model, GapCnn};

struct Args {
    data_dir: PathBuf,
    weights: PathBuf,
    n: usize,
    eps: f64,
    out: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        data_dir: std::env::var_os("MNIST_DIR")
            .map(PathBuf::from)
            .unwrap_or_default(),
        weights: PathBuf::from("fixtures/weights/gapcnn.safetensors"),
        n: 1000,
        eps: 0.3,
        out: None,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data-dir" => args.data_dir = value()?.into(),
            "--weights" => args.weights = value()?.into(),
            "--n" => {
                let v = value()?;
                args.n = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--n must be a positive integer, got {v:?}"))?;
            }
            "--eps" => {
                let v = value()?;
                args.eps = v
                    .parse()
                    .ok()
                    .filter(|e: &f64| e.is_finite() && *e >= 0.0)
                    .ok_or(format!("--eps must be a finite number >= 0, got {v:?}"))?;
            }
            "--out" => args.out = Some(value()?.into()),
            "--json" => args.json = Some(value()?.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.data_dir.as_os_str().is_empty() {
        return Err("--data-dir (or $MNIST_DIR) is required".into());
    }
    Ok(args)
}

/// One path: its name, dtype, whether fastconv is on, whether Winograd is on.
const PATHS: [(&str, DType, bool, bool); 5] = [
    ("f32-winograd", DType::F32, true, true),
    ("f32-gemm", DType::F32, true, false),
    ("f64-winograd", DType::F64, true, true),
    ("f64-gemm", DType::F64, true, false),
    ("f32-candle-ops", DType::F32, false, false),
];

const BATCH: usize = 100;

fn main() {
    fastconv::runtime::tune_cpu_runtime();
    // On a worker of the pool, as `cargo xtask` runs (see `on_pool_worker`).
    if let Err(e) = fastconv::runtime::on_pool_worker(|| run().map_err(|e| e.to_string())) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let args = parse()?;
    let device = Device::Cpu;
    let splits = mnist_data::Source::Dir(args.data_dir.clone()).load()?;
    let test = splits.test.first(args.n);
    let n = test.len();
    let (images, labels) = test.to_tensors(mnist_data::PixelFormat::Gray, &device)?;
    let labels: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
    println!(
        "FGSM eps {} on the first {n} test images of {} ({})",
        args.eps,
        args.data_dir.display(),
        args.weights.display()
    );
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut runs = Vec::new();
    for (name, dtype, fast, winograd) in PATHS {
        fastconv::set_enabled(fast);
        fastconv::set_winograd(winograd);
        let model = load_model::<GapCnn>(&args.weights, dtype, &device)?;
        let x = images.to_dtype(dtype)?;
        let mut csv = String::from(
            "index,label,target,clean_prediction,adversarial_prediction,success,l0,l2,linf\n",
        );
        let (mut robust, mut successes, mut attackable) = (0, 0, 0);
        let mut predictions = Vec::with_capacity(n);
        for first in (0..n).step_by(BATCH) {
            let len = BATCH.min(n - first);
            let o = Fgsm { eps: args.eps }.run(
                &model,
                &x.narrow(0, first, len)?,
                &labels[first..first + len],
                &Targeting::Untargeted,
            )?;
            for i in 0..len {
                robust += usize::from(o.adversarial_predictions[i] == o.labels[i]);
                writeln!(
                    csv,
                    "{},{},,{},{},{},{},{},{}",
                    first + i,
                    o.labels[i],
                    o.clean_predictions[i],
                    o.adversarial_predictions[i],
                    o.success[i],
                    o.l0[i],
                    o.l2[i],
                    o.linf[i]
                )?;
            }
            successes += o.successes();
            attackable += o.attackable();
            predictions.extend(o.adversarial_predictions);
        }
        if let Some(dir) = &args.out {
            let path = dir.join(format!("{name}.csv"));
            std::fs::write(&path, csv).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        runs.push((name, robust, successes, attackable, predictions));
    }
    fastconv::set_enabled(true);
    fastconv::set_winograd(true);

    let gemm = runs[1].4.clone();
    let mut json = String::from("{\n  \"n\": ");
    write!(json, "{n},\n  \"eps\": {},\n  \"paths\": [", args.eps)?;
    println!("| path | robust accuracy | success | adversarial predictions != f32-gemm |");
    println!("| --- | --- | --- | --- |");
    for (k, (name, robust, successes, attackable, predictions)) in runs.iter().enumerate() {
        let differ = predictions
            .iter()
            .zip(&gemm)
            .filter(|(a, b)| a != b)
            .count();
        let accuracy = *robust as f64 / n as f64;
        println!(
            "| {name} | {:.2}% | {successes} of {attackable} | {differ} |",
            100.0 * accuracy
        );
        write!(
            json,
            "{}\n    {{\"path\": \"{name}\", \"robust_accuracy\": {accuracy}, \"successes\": {successes}, \
             \"attackable\": {attackable}, \"predictions_unlike_f32_gemm\": {differ}}}",
            if k == 0 { "" } else { "," }
        )?;
    }
    json.push_str("\n  ]\n}\n");
    if let Some(path) = &args.json {
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
