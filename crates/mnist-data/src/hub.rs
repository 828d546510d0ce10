//! The Hugging Face Hub as a data source, through `hf-hub`'s blocking client: the local
//! cache first, the network second, and a clear error when offline with nothing cached.
//!
//! Two repository layouts are understood: the four standard IDX files (gzipped or not,
//! at any folder depth), and one parquet file per split with an `image` column of PNG
//! bytes and a `label` column, which is how `ylecun/mnist` (the repository candle's own
//! MNIST loader reads) and `zalando-datasets/fashion_mnist` are stored.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{DataError, Result};
use crate::source::{load_pair, standard_file_names, Split, Splits};

/// The repository candle's MNIST loader uses.
pub const DEFAULT_REPO: &str = "ylecun/mnist";

/// A dataset repository on the Hub (or on a server that speaks its protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSource {
    /// `owner/name` of a dataset repository.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Server root; `None` means `$HF_ENDPOINT` or `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Cache directory; `None` means `$HF_HOME/hub` or `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// Draw hf-hub's progress bar while downloading.
    pub progress: bool,
}

impl HubSource {
    /// `repo` at revision `main`, default endpoint and cache, no progress bar.
    pub fn new(repo: impl Into<String>) -> Self {
        Self {
            repo: repo.into(),
            revision: "main".into(),
            endpoint: None,
            cache_dir: None,
            progress: false,
        }
    }

    fn hub_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Dataset, self.revision.clone())
    }

    fn cache(&self) -> Cache {
        match &self.cache_dir {
            Some(dir) => Cache::new(dir.clone()),
            None => Cache::from_env(),
        }
    }

    fn error(&self, message: impl Into<String>) -> DataError {
        DataError::Hub {
            repo: format!("{}@{}", self.repo, self.revision),
            message: message.into(),
        }
    }

    /// Files of the revision already in the cache (relative names), if any.
    fn cached_files(&self, cache: &Cache) -> Option<(String, PathBuf, Vec<String>)> {
        let repo_dir = cache.path().join(self.hub_repo().folder_name());
        let commit = std::fs::read_to_string(repo_dir.join("refs").join(&self.revision)).ok()?;
        let snapshot = repo_dir.join("snapshots").join(commit.trim());
        let mut names = Vec::new();
        list_files(&snapshot, &snapshot, &mut names);
        Some((commit.trim().to_string(), snapshot, names))
    }

    /// Local paths of the files of `layout`, downloading what the cache lacks.
    fn fetch(&self) -> Result<(Layout, Vec<PathBuf>, String)> {
        let cache = self.cache();
        if let Some((commit, snapshot, names)) = self.cached_files(&cache) {
            if let Some(layout) = Layout::detect(&names) {
                let paths = layout.files().iter().map(|f| snapshot.join(f)).collect();
                return Ok((layout, paths, format!("{commit} (from the cache)")));
            }
        }
        let mut builder = ApiBuilder::from_cache(cache.clone()).with_progress(self.progress);
        if let Some(endpoint) = self
            .endpoint
            .clone()
            .or_else(|| std::env::var("HF_ENDPOINT").ok())
        {
            builder = builder.with_endpoint(endpoint);
        }
        let api = builder
            .build()
            .map_err(|e| self.error(format!("cannot set up the client: {e}")))?;
        let repo = api.repo(self.hub_repo());
        let info = repo.info().map_err(|e| {
            self.error(format!(
                "cannot reach the Hub ({e}) and nothing usable is cached under {}; \
                 use a local directory (--data-dir) or the bundled fixtures (--fixtures)",
                cache.path().display()
            ))
        })?;
        let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        let layout = Layout::detect(&names).ok_or_else(|| {
            self.error(format!(
                "the repository holds neither the four IDX files nor train/test parquet files: {names:?}"
            ))
        })?;
        let paths = layout
            .files()
            .iter()
            .map(|f| {
                repo.get(f)
                    .map_err(|e| self.error(format!("downloading {f}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((layout, paths, info.sha))
    }

    /// Loads both splits, downloading into the cache what is not there yet.
    pub fn load(&self) -> Result<Splits> {
        let (layout, paths, commit) = self.fetch()?;
        let (train, test) = match layout {
            Layout::Idx { .. } => (
                load_pair(&paths[0], &paths[1])?,
                load_pair(&paths[2], &paths[3])?,
            ),
            Layout::Parquet { .. } => (
                crate::parquet::load_parquet(&paths[0])?,
                crate::parquet::load_parquet(&paths[1])?,
            ),
        };
        Ok(Splits {
            train,
            test,
            origin: format!("Hugging Face Hub {} at {commit}", self.repo),
        })
    }
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// How a repository stores the two splits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// The four IDX files: train images, train labels, test images, test labels.
    Idx { files: [String; 4] },
    /// One parquet file per split: train, test.
    Parquet { files: [String; 2] },
}

impl Layout {
    fn files(&self) -> &[String] {
        match self {
            Layout::Idx { files } => files,
            Layout::Parquet { files } => files,
        }
    }

    /// Picks a layout from a repository's file names; IDX files win over parquet.
    fn detect(names: &[String]) -> Option<Self> {
        let find = |base: &str| {
            let mut hits: Vec<&String> = names
                .iter()
                .filter(|n| {
                    let file = n.rsplit('/').next().unwrap_or(n);
                    file == base || file == format!("{base}.gz")
                })
                .collect();
            hits.sort();
            hits.first().map(|s| s.to_string())
        };
        let (tri, trl) = standard_file_names(Split::Train);
        let (tei, tel) = standard_file_names(Split::Test);
        if let (Some(a), Some(b), Some(c), Some(d)) =
            (find(&tri), find(&trl), find(&tei), find(&tel))
        {
            return Some(Layout::Idx {
                files: [a, b, c, d],
            });
        }
        let parquet = |split: &str| {
            let mut hits: Vec<&String> = names
                .iter()
                .filter(|n| {
                    let file = n.rsplit('/').next().unwrap_or(n);
                    file.ends_with(".parquet") && file.starts_with(split)
                })
                .collect();
            hits.sort();
            hits.first().map(|s| s.to_string())
        };
        match (parquet("train"), parquet("test")) {
            (Some(train), Some(test)) => Some(Layout::Parquet {
                files: [train, test],
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_layouts() {
        let ylecun = names(&[
            ".gitattributes",
            "README.md",
            "mnist/test-00000-of-00001.parquet",
            "mnist/train-00000-of-00001.parquet",
        ]);
        assert_eq!(
            Layout::detect(&ylecun),
            Some(Layout::Parquet {
                files: [
                    "mnist/train-00000-of-00001.parquet".into(),
                    "mnist/test-00000-of-00001.parquet".into()
                ]
            })
        );
        let idx = names(&[
            "raw/t10k-images-idx3-ubyte.gz",
            "raw/t10k-labels-idx1-ubyte.gz",
            "raw/train-images-idx3-ubyte.gz",
            "raw/train-labels-idx1-ubyte",
        ]);
        assert!(matches!(Layout::detect(&idx), Some(Layout::Idx { .. })));
        assert_eq!(Layout::detect(&names(&["README.md"])), None);
    }
}
