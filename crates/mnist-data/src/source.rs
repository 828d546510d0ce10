//! Where data comes from: a local directory of the four standard IDX files, the bundled
//! fixtures, or the Hugging Face Hub (see [`crate::hub`]).

use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::hub::HubSource;
use crate::splits::{load_pair_capped, standard_file_names, Split, Splits};

/// Where to load data from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A directory holding the four standard files, gzipped or not.
    Dir(PathBuf),
    /// A Hugging Face Hub dataset repository.
    Hub(HubSource),
    /// The small class-balanced subsets bundled in `fixtures/mnist-mini`.
    Fixtures,
}

impl Source {
    /// Loads both splits.
    pub fn load(&self) -> Result<Splits> {
        self.load_capped(None)
    }

    /// Loads both splits; a directory's IDX files with their decoded size capped at
    /// `max_bytes` each (header included), refused before their data is read when the
    /// header announces more. The Hub's and the fixtures' files are not capped.
    pub fn load_capped(&self, max_bytes: Option<u64>) -> Result<Splits> {
        match self {
            Source::Dir(dir) => load_dir_capped(dir, max_bytes),
            Source::Hub(hub) => hub.load(),
            Source::Fixtures => load_fixtures(),
        }
    }
}

/// Finds `name.gz` or `name` in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    Err(DataError::Missing {
        path: gz,
        hint: Some(format!("nor {name} without .gz")),
    })
}

/// Loads one split from a directory with the standard file names.
pub fn load_split(dir: &Path, split: Split) -> Result<Dataset> {
    load_split_capped(dir, split, None)
}

/// [`load_split`] with each file's decoded size capped at `max_bytes`.
pub fn load_split_capped(dir: &Path, split: Split, max_bytes: Option<u64>) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            hint: Some("not a directory".into()),
        });
    }
    let (img, lab) = standard_file_names(split);
    load_pair_capped(&find(dir, &img)?, &find(dir, &lab)?, max_bytes)
}

/// Loads both splits from a directory with the standard file names (MNIST or
/// Fashion-MNIST).
pub fn load_dir(dir: &Path) -> Result<Splits> {
    load_dir_capped(dir, None)
}

/// [`load_dir`] with each file's decoded size capped at `max_bytes`.
pub fn load_dir_capped(dir: &Path, max_bytes: Option<u64>) -> Result<Splits> {
    Ok(Splits {
        train: load_split_capped(dir, Split::Train, max_bytes)?,
        test: load_split_capped(dir, Split::Test, max_bytes)?,
        origin: format!("directory {}", dir.display()),
    })
}

/// Environment variable that points the fixtures elsewhere (a moved binary, say).
pub const FIXTURES_ENV: &str = "MNIST_FIXTURES_DIR";

/// The directory of the bundled fixture subsets: `$MNIST_FIXTURES_DIR` when set, else
/// `fixtures/mnist-mini` of the source tree this crate was built from.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os(FIXTURES_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/mnist-mini"))
}

/// Loads the bundled fixtures: 50 images per class from each MNIST split (the first
/// ones in file order), so test image 0 of the fixtures is MNIST test image 0.
pub fn load_fixtures() -> Result<Splits> {
    let dir = fixtures_dir();
    let mut splits = load_dir(&dir)?;
    splits.origin = format!("bundled fixtures {}", dir.display());
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::{encode_images, encode_labels, gzip};

    fn write_split(dir: &Path, split: Split, n: usize, labels_n: usize, gz: bool) {
        let (img, lab) = standard_file_names(split);
        let pixels = vec![9u8; n * 28 * 28];
        let labels: Vec<u8> = (0..labels_n).map(|i| (i % 10) as u8).collect();
        let (ib, lb) = (encode_images(n, 28, 28, &pixels), encode_labels(&labels));
        let (ib, lb, ext) = if gz {
            (gzip(&ib), gzip(&lb), ".gz")
        } else {
            (ib, lb, "")
        };
        std::fs::write(dir.join(format!("{img}{ext}")), ib).unwrap();
        std::fs::write(dir.join(format!("{lab}{ext}")), lb).unwrap();
    }

    #[test]
    fn loads_gz_and_raw() {
        let dir = tempfile::tempdir().unwrap();
        write_split(dir.path(), Split::Train, 12, 12, true);
        write_split(dir.path(), Split::Test, 5, 5, false);
        let s = load_dir(dir.path()).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (12, 5));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_split(dir.path(), Split::Train, 12, 11, true);
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
        assert!(err.contains("12 images but"), "{err}");

        write_split(dir.path(), Split::Train, 12, 12, true);
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("t10k-images-idx3-ubyte.gz"), "{err}");
        assert!(err.contains("not found"), "{err}");

        write_split(dir.path(), Split::Test, 5, 5, true);
        let path = dir.path().join("t10k-images-idx3-ubyte.gz");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("t10k-images-idx3-ubyte.gz"), "{err}");
        assert!(err.contains("gzip") || err.contains("truncated"), "{err}");
    }

    #[test]
    fn fixtures_load_without_environment() {
        let s = load_fixtures().unwrap();
        assert_eq!(s.test.class_counts(), [50; 10]);
        assert_eq!(s.train.class_counts(), [50; 10]);
        assert_eq!(
            s.test.label(0),
            Some(7),
            "fixture test image 0 is MNIST's first 7"
        );
    }
}
