//! The five checkpoints an evaluation needs: their file names, loading them, and fetching
//! them from a Hugging Face Hub model repository (through `mnist_data::hub`, cache first),
//! verified by loading every one before they are used.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use mnist_data::HubFiles;
use models::{load_model, GapCnn, Mlp, Oracle, Svae};

use crate::bundle::Models;
use crate::error::{HarnessError, Result};

/// The checkpoints, by file name: GapCnn, Mlp, oracle, SVAE, robust oracle.
pub const WEIGHT_FILES: [&str; 5] = [
    "gapcnn.safetensors",
    "mlp.safetensors",
    "oracle.safetensors",
    "svae.safetensors",
    "robust-oracle.safetensors",
];

/// Loads the five checkpoints of `dir` (names, shapes and dtypes checked; an error names
/// the file).
pub fn load_models(dir: &Path, device: &Device) -> Result<Models> {
    Ok(Models {
        gapcnn: load_model::<GapCnn>(&dir.join(WEIGHT_FILES[0]), DType::F32, device)?,
        mlp: load_model::<Mlp>(&dir.join(WEIGHT_FILES[1]), DType::F32, device)?,
        oracle: load_model::<Oracle>(&dir.join(WEIGHT_FILES[2]), DType::F32, device)?,
        svae: load_model::<Svae>(&dir.join(WEIGHT_FILES[3]), DType::F32, device)?,
        robust_oracle: load_model::<Oracle>(&dir.join(WEIGHT_FILES[4]), DType::F32, device)?,
    })
}

/// Checkpoints fetched from the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubWeights {
    /// The cache's snapshot directory holding the four files.
    pub dir: PathBuf,
    /// Where they came from, for the report: repository, commit, cached or downloaded.
    pub origin: String,
}

/// Fetches [`WEIGHT_FILES`] from `repo` (the cache first, then the network) and loads
/// each once on `device`, so a repository with a missing, truncated or foreign
/// checkpoint is an error naming the file, before any evaluation starts.
pub fn fetch_weights(repo: &HubFiles, device: &Device) -> Result<HubWeights> {
    let fetched = repo.fetch(&WEIGHT_FILES)?;
    let dir = fetched
        .paths
        .first()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if let Some(stray) = fetched.paths.iter().find(|p| p.parent() != Some(&dir)) {
        return Err(HarnessError::Other(format!(
            "Hugging Face Hub, {}: {} is not beside the other checkpoints in {}",
            repo.repo,
            stray.display(),
            dir.display()
        )));
    }
    load_models(&dir, device)?;
    let how = if fetched.from_cache {
        "from the cache"
    } else {
        "downloaded"
    };
    Ok(HubWeights {
        dir,
        origin: format!(
            "Hugging Face Hub {} at {} ({how})",
            repo.repo, fetched.commit
        ),
    })
}
