//! The Hugging Face Hub as a data source, through `hf-hub`'s blocking client: the local
//! cache first, the network second, and a clear error when offline with nothing cached.
//!
//! Two repository layouts are understood: the four standard IDX files (gzipped or not,
//! at any folder depth), and one parquet file per split with an `image` column of PNG
//! bytes and a `label` column, which is how `ylecun/mnist` (the repository candle's own
//! MNIST loader reads) and `zalando-datasets/fashion_mnist` are stored.
//!
//! [`HubFiles`] fetches named files of any repository the same way (a model repository's
//! checkpoints, say), so the one client setup of the workspace lives here.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{DataError, Result};
use crate::splits::{load_pair, standard_file_names, Split, Splits};

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
        cache_at(self.cache_dir.as_ref())
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
        let api = client(&cache, self.endpoint.as_deref(), self.progress)
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

/// hf-hub's blocking client over `cache`, at `endpoint` (else `$HF_ENDPOINT`, else the Hub).
fn client(cache: &Cache, endpoint: Option<&str>, progress: bool) -> Result<Api, ApiError> {
    let mut builder = ApiBuilder::from_cache(cache.clone()).with_progress(progress);
    if let Some(endpoint) = endpoint
        .map(str::to_string)
        .or_else(|| std::env::var("HF_ENDPOINT").ok())
    {
        builder = builder.with_endpoint(endpoint);
    }
    builder.build()
}

fn cache_at(dir: Option<&PathBuf>) -> Cache {
    match dir {
        Some(dir) => Cache::new(dir.clone()),
        None => Cache::from_env(),
    }
}

/// The kind of a Hub repository (they live under different URLs and cache folders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model repository (`https://huggingface.co/<owner>/<name>`).
    Model,
    /// A dataset repository (`https://huggingface.co/datasets/<owner>/<name>`).
    Dataset,
}

/// Named files of one Hub repository (a model's checkpoints, say), fetched as
/// [`HubSource`] fetches data: the local cache first, the network second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFiles {
    /// `owner/name` of the repository.
    pub repo: String,
    /// Model or dataset repository.
    pub kind: RepoKind,
    /// Branch, tag or commit.
    pub revision: String,
    /// Server root; `None` means `$HF_ENDPOINT` or `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Cache directory; `None` means `$HF_HOME/hub` or `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// Draw hf-hub's progress bar while downloading.
    pub progress: bool,
}

/// Local copies of the files asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFiles {
    /// One path per name asked for, in the same order (inside the cache's snapshot).
    pub paths: Vec<PathBuf>,
    /// The commit they belong to.
    pub commit: String,
    /// Every file was already cached: nothing was asked of the network.
    pub from_cache: bool,
}

impl HubFiles {
    /// Model repository `repo` at revision `main`, default endpoint and cache, no progress bar.
    pub fn model(repo: impl Into<String>) -> Self {
        Self {
            repo: repo.into(),
            kind: RepoKind::Model,
            revision: "main".into(),
            endpoint: None,
            cache_dir: None,
            progress: false,
        }
    }

    fn hub_repo(&self) -> Repo {
        let kind = match self.kind {
            RepoKind::Model => RepoType::Model,
            RepoKind::Dataset => RepoType::Dataset,
        };
        Repo::with_revision(self.repo.clone(), kind, self.revision.clone())
    }

    fn error(&self, message: impl Into<String>) -> DataError {
        DataError::Hub {
            repo: format!("{}@{}", self.repo, self.revision),
            message: message.into(),
        }
    }

    /// Local paths of `names` (repository-relative), from the cache when it holds every
    /// one of them at this revision, else from the network: the repository's file list
    /// is checked first, so a file it lacks is named in the error, and so is a file
    /// whose download fails.
    pub fn fetch(&self, names: &[&str]) -> Result<FetchedFiles> {
        let cache = cache_at(self.cache_dir.as_ref());
        let cached = cache.repo(self.hub_repo());
        if let Some(paths) = names
            .iter()
            .map(|n| cached.get(n))
            .collect::<Option<Vec<_>>>()
        {
            let refs = cache
                .path()
                .join(self.hub_repo().folder_name())
                .join("refs")
                .join(&self.revision);
            let commit = std::fs::read_to_string(&refs)
                .map(|c| c.trim().to_string())
                .map_err(|source| DataError::Io { path: refs, source })?;
            return Ok(FetchedFiles {
                paths,
                commit,
                from_cache: true,
            });
        }
        let api = client(&cache, self.endpoint.as_deref(), self.progress)
            .map_err(|e| self.error(format!("cannot set up the client: {e}")))?;
        let repo = api.repo(self.hub_repo());
        let info = repo.info().map_err(|e| {
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| cached.get(n).is_none())
                .collect();
            self.error(format!(
                "cannot reach the Hub ({e}) and {} not cached under {}",
                missing.join(", "),
                cache.path().display()
            ))
        })?;
        let listed: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
        let absent: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !listed.contains(n))
            .collect();
        if !absent.is_empty() {
            return Err(self.error(format!(
                "the repository has no {} (it holds {listed:?})",
                absent.join(", ")
            )));
        }
        let paths = names
            .iter()
            .map(|f| {
                repo.get(f)
                    .map_err(|e| self.error(format!("downloading {f}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FetchedFiles {
            paths,
            commit: info.sha,
            from_cache: false,
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
