//! How a Type I mode is judged: each pair's verdicts summarised per mode ([`ModeSummary`],
//! every rate with its denominator), and each judge's own accuracy ([`JudgeAccuracy`]).

use candle_core::Device;
use mnist_data::{Dataset, PixelFormat};
use models::{Classifier, Svae};
use serde::{Deserialize, Serialize};
use vae_attack::{Judges, PairVerdict};

use super::panel::{ModeRun, PairRow};
use crate::error::Result;

/// A count over a stated denominator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// How many.
    pub count: usize,
    /// Out of how many.
    pub of: usize,
    /// count / of (NaN when of = 0).
    #[serde(with = "crate::nan::float")]
    pub rate: f64,
}

impl Rate {
    /// `count` of `of`.
    pub fn new(count: usize, of: usize) -> Self {
        Self {
            count,
            of,
            rate: if of == 0 {
                f64::NAN
            } else {
                count as f64 / of as f64
            },
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}% ({} of {})",
            100.0 * self.rate,
            self.count,
            self.of
        )
    }
}

/// The figures of one mode over its pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeSummary {
    /// Name of the mode (e.g. `constrained, target-mean start, judge-free`).
    pub mode: String,
    /// Pairs attacked.
    pub pairs: usize,
    /// f1 keeps its label and the standard oracle says the target (the paper's success).
    pub success: Rate,
    /// f1 keeps its label and the robust oracle says the target.
    pub success_robust: Rate,
    /// f1 keeps its label and the kNN vote says the target.
    pub success_knn: Rate,
    /// f1 keeps its label and both oracles say the target.
    pub consensus: Rate,
    /// f1 keeps its label.
    pub f1_kept: Rate,
    /// Median iterations run per pair.
    #[serde(with = "crate::nan::float")]
    pub median_iterations: f64,
    /// Mean ||G(z*) - x||_2 over the consensus successes.
    #[serde(with = "crate::nan::float")]
    pub mean_l2: f64,
    /// Mean ||G(z*) - x||_inf over the consensus successes.
    #[serde(with = "crate::nan::float")]
    pub mean_linf: f64,
    /// Consensus success per target class.
    pub consensus_by_target: Vec<Rate>,
    /// Pairs x iterations per second of wall time.
    pub pair_iterations_per_second: f64,
}

impl ModeSummary {
    /// Summarises a run.
    pub fn new(mode: &str, run: &ModeRun) -> Self {
        let n = run.rows.len();
        let count = |f: &dyn Fn(&PairVerdict) -> bool| {
            Rate::new(run.rows.iter().filter(|r| f(&r.verdict())).count(), n)
        };
        let mut iters: Vec<f64> = run.rows.iter().map(|r| r.iterations as f64).collect();
        iters.sort_by(f64::total_cmp);
        let median = match iters.len() {
            0 => f64::NAN,
            m if m % 2 == 1 => iters[m / 2],
            m => 0.5 * (iters[m / 2 - 1] + iters[m / 2]),
        };
        let wins: Vec<&PairRow> = run
            .rows
            .iter()
            .filter(|r| r.verdict().consensus())
            .collect();
        let mean = |f: &dyn Fn(&PairRow) -> f32| {
            if wins.is_empty() {
                f64::NAN
            } else {
                wins.iter().map(|r| f64::from(f(r))).sum::<f64>() / wins.len() as f64
            }
        };
        let consensus_by_target = (0..10u32)
            .map(|t| {
                let of: Vec<&PairRow> = run.rows.iter().filter(|r| r.target == t).collect();
                Rate::new(
                    of.iter().filter(|r| r.verdict().consensus()).count(),
                    of.len(),
                )
            })
            .collect();
        let total_iters: usize = run.rows.iter().map(|r| r.iterations).sum();
        Self {
            mode: mode.to_string(),
            pairs: n,
            success: count(&|v| v.success()),
            success_robust: count(&|v| v.robust_success()),
            success_knn: count(&|v| v.knn_success()),
            consensus: count(&|v| v.consensus()),
            f1_kept: count(&|v| v.f1_kept),
            median_iterations: median,
            mean_l2: mean(&|r| r.l2),
            mean_linf: mean(&|r| r.linf),
            consensus_by_target,
            pair_iterations_per_second: total_iters as f64 / run.seconds.max(1e-9),
        }
    }
}

/// A judge's accuracy on clean test images and on their decoded codes G(mu(x)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeAccuracy {
    /// `standard`, `robust` or `knn`.
    pub judge: String,
    /// On the clean images.
    pub clean: Rate,
    /// On G(mu(x)) of the same images (binarised for the encoder, as the attack sees them).
    pub decoded: Rate,
}

/// Each judge's accuracy on `data` (clean and decoded), in batches of 500.
pub fn judge_accuracy(
    judges: &Judges<'_>,
    svae: &Svae,
    data: &Dataset,
    device: &Device,
) -> Result<Vec<JudgeAccuracy>> {
    let named: [(&str, &dyn Classifier); 3] = [
        ("standard", judges.standard),
        ("robust", judges.robust),
        ("knn", judges.knn),
    ];
    let mut right = [[0usize; 2]; 3];
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(500) {
        let x = data
            .images_tensor(chunk, PixelFormat::Gray, device)
            .map_err(models::ModelError::from)?;
        let binary = x.gt(127.0 / 255.0)?.to_dtype(x.dtype())?;
        let (mu, _) = svae.encode(&binary)?;
        let decoded = svae.decode(&mu)?;
        let labels: Vec<u32> = chunk
            .iter()
            .map(|&i| u32::from(data.label(i).unwrap_or(255)))
            .collect();
        for (j, (_, judge)) in named.iter().enumerate() {
            for (k, images) in [&x, &decoded].into_iter().enumerate() {
                let pred = judge.predict(images)?;
                right[j][k] += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
            }
        }
    }
    Ok(named
        .iter()
        .zip(right)
        .map(|((name, _), [c, d])| JudgeAccuracy {
            judge: name.to_string(),
            clean: Rate::new(c, data.len()),
            decoded: Rate::new(d, data.len()),
        })
        .collect())
}
