//! The stage cache: each stage's result is kept as `stages/<name>.json` under the output
//! directory (atomically, tagged with the configuration, the [`InputFingerprint`] of the
//! weights and test set and the [`ProgramIdentity`] of the build that computed it); a
//! rerun with the same configuration and inputs by the same build loads finished stages
//! instead of recomputing them, so a killed run loses nothing it had finished, and a run
//! with other weights or data, or by another build of the program, reuses nothing.

use std::path::Path;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::artifact::write_atomic;
use crate::config::ExperimentConfig;
use crate::error::{HarnessError, Result};
use crate::inputs::{InputFingerprint, ProgramIdentity};

/// A stage's result with what made it. A file without `inputs` or `program` (written
/// before they were recorded) does not parse, so it is recomputed.
#[derive(Serialize, Deserialize)]
struct Cached<T> {
    config: ExperimentConfig,
    inputs: InputFingerprint,
    program: ProgramIdentity,
    result: T,
    /// Seconds the computation took (0 in files written before they were recorded).
    #[serde(default)]
    seconds: f64,
}

/// How long a stage took, and whether this run reused it from the cache (then the
/// seconds are those of the run that computed it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    /// The stage's name (its file in `stages/`).
    pub stage: String,
    /// Seconds its computation took.
    pub seconds: f64,
    /// Loaded from `stages/` instead of computed by this run.
    pub reused: bool,
}

/// Runs `compute` unless `stages/<name>.json` holds a result of the same configuration
/// and the same inputs computed by this build ([`ProgramIdentity::running`]); otherwise
/// the new result replaces the file (atomically).
pub(crate) fn stage<T: Serialize + DeserializeOwned>(
    out: &Path,
    name: &str,
    config: &ExperimentConfig,
    inputs: &InputFingerprint,
    compute: impl FnOnce() -> Result<T>,
) -> Result<(T, StageTime)> {
    stage_by(
        ProgramIdentity::running(),
        out,
        name,
        config,
        inputs,
        compute,
    )
}

/// [`stage`] as run by `program`.
fn stage_by<T: Serialize + DeserializeOwned>(
    program: &ProgramIdentity,
    out: &Path,
    name: &str,
    config: &ExperimentConfig,
    inputs: &InputFingerprint,
    compute: impl FnOnce() -> Result<T>,
) -> Result<(T, StageTime)> {
    let path = out.join("stages").join(format!("{name}.json"));
    let time = |seconds: f64, reused: bool| StageTime {
        stage: name.to_string(),
        seconds,
        reused,
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(cached) = serde_json::from_str::<Cached<T>>(&text) {
            if &cached.config == config && &cached.inputs == inputs && &cached.program == program {
                return Ok((cached.result, time(cached.seconds, true)));
            }
        }
    }
    let t0 = Instant::now();
    let result = compute()?;
    let cached = Cached {
        config: config.clone(),
        inputs: inputs.clone(),
        program: program.clone(),
        result,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let text = serde_json::to_string(&cached).map_err(|e| HarnessError::Other(e.to_string()))?;
    write_atomic(&path, text.as_bytes())?;
    Ok((cached.result, time(cached.seconds, false)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_data::Dataset;

    fn fingerprint(byte: u8) -> InputFingerprint {
        let test = Dataset::new(vec![byte; 4], vec![0], 2, 2).unwrap();
        InputFingerprint::new([b"g", b"m", b"o", b"s", b"r"], &test)
    }

    #[test]
    fn a_stage_is_reused_only_with_the_same_config_and_inputs() {
        let out = tempfile::tempdir().unwrap();
        let config = ExperimentConfig::quick();
        let (a, b) = (fingerprint(0), fingerprint(1));
        let run = |inputs: &InputFingerprint, value: u32| {
            stage(out.path(), "s", &config, inputs, || Ok(value))
                .unwrap()
                .0
        };
        assert_eq!(run(&a, 1), 1);
        assert_eq!(run(&a, 2), 1, "same config and inputs: the cached result");
        let (_, fresh) = stage(out.path(), "t", &config, &a, || Ok(1u32)).unwrap();
        let (_, again) = stage(out.path(), "t", &config, &a, || Ok(2u32)).unwrap();
        assert!(!fresh.reused && again.reused);
        assert_eq!(
            again.seconds, fresh.seconds,
            "the computing run's time is kept"
        );
        assert_eq!(run(&b, 3), 3, "other inputs: recomputed");
        assert_eq!(run(&b, 4), 3, "and cached under the new inputs");
        assert_eq!(run(&a, 5), 5, "back to the first inputs: recomputed again");
        let text = std::fs::read_to_string(out.path().join("stages/s.json")).unwrap();
        assert!(text.contains(a.sha256()), "{text}");
        // A cache file from before inputs were recorded is recomputed, not trusted.
        let legacy = serde_json::json!({"config": config, "result": 6});
        std::fs::write(out.path().join("stages/s.json"), legacy.to_string()).unwrap();
        assert_eq!(run(&a, 7), 7);
        // Nor one from before the program was recorded.
        let legacy = serde_json::json!({"config": config, "inputs": a, "result": 8});
        std::fs::write(out.path().join("stages/s.json"), legacy.to_string()).unwrap();
        assert_eq!(run(&a, 9), 9);
    }

    #[test]
    fn a_stage_computed_by_another_build_is_recomputed() {
        let out = tempfile::tempdir().unwrap();
        let config = ExperimentConfig::quick();
        let inputs = fingerprint(0);
        let (old, new) = (
            ProgramIdentity::from_sha256(&"a".repeat(64)),
            ProgramIdentity::from_sha256(&"b".repeat(64)),
        );
        let run = |program: &ProgramIdentity, value: u32| {
            stage_by(program, out.path(), "s", &config, &inputs, || Ok(value)).unwrap()
        };
        assert_eq!(run(&old, 1).0, 1);
        let (value, time) = run(&old, 2);
        assert_eq!((value, time.reused), (1, true), "the same build: reused");
        let (value, time) = run(&new, 5);
        assert_eq!(
            (value, time.reused),
            (5, false),
            "another build: recomputed"
        );
        let text = std::fs::read_to_string(out.path().join("stages/s.json")).unwrap();
        assert!(
            text.contains(&"b".repeat(64)) && !text.contains(&"a".repeat(64)),
            "{text}"
        );
        assert_eq!(run(&new, 6).0, 5, "and cached for the new build");
        // `stage` is keyed by the running program.
        let (value, time) = stage(out.path(), "s", &config, &inputs, || Ok(7u32)).unwrap();
        assert_eq!((value, time.reused), (7, false));
        let (value, time) = stage(out.path(), "s", &config, &inputs, || Ok(8u32)).unwrap();
        assert_eq!((value, time.reused), (7, true));
    }
}
