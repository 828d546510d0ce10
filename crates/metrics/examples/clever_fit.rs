//! CLEVER's statistics alone, on batch maxima from anywhere (say, those another
//! implementation fitted): reads whitespace- or comma-separated numbers from stdin,
//! prints the reverse Weibull fit (with and without the shape penalty), the Lipschitz
//! estimate, its fallback and the score.
//!
//! ```sh
//! echo "8.5 8.9 9.4 ..." | cargo run --release -p metrics --example clever_fit -- MARGIN RADIUS
//! ```

use std::io::Read;
use std::process::ExitCode;

use metrics::{
    clever_score_from_maxima, fit_reverse_weibull_with_shapes, CLEVER_SHAPE_INITS,
    CLEVER_SHAPE_PENALTY,
};

fn main() -> ExitCode {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let [margin, radius] = args[..] else {
        eprintln!("usage: clever_fit MARGIN RADIUS < maxima");
        return ExitCode::FAILURE;
    };
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("stdin: {e}");
        return ExitCode::FAILURE;
    }
    let maxima: Vec<f64> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let max = maxima.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!("{} maxima, largest {max:.6}", maxima.len());
    for (name, penalty) in [("plain", 0.0), ("penalised", CLEVER_SHAPE_PENALTY)] {
        match fit_reverse_weibull_with_shapes(&maxima, &CLEVER_SHAPE_INITS, penalty) {
            Ok(f) => println!(
                "{name:>9} fit: shape {:.4} loc {:.6} ({:.4} x largest) scale {:.4} KS p {:.4} interior {}",
                f.distribution.shape(),
                f.distribution.loc(),
                f.distribution.loc() / max,
                f.distribution.scale(),
                f.ks_pvalue,
                f.interior
            ),
            Err(e) => println!("{name:>9} fit: {e}"),
        }
    }
    match clever_score_from_maxima(&maxima, margin, radius) {
        Ok(est) => {
            println!(
                "L {:.6} ({}) score {:.6}",
                est.lipschitz,
                est.fallback.map_or("Weibull fit", |f| f.describe()),
                est.score
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
