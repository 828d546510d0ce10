//! The Hub source against a server on 127.0.0.1 that answers as the Hub does
//! (`mnist_data::testing::FakeHub`): the repo info API, and `resolve` URLs with the
//! `etag` / `x-repo-commit` / `Content-Range` headers and byte ranges that hf-hub's
//! client relies on.

use std::collections::BTreeMap;
use std::path::Path;

use mnist_data::testing::{FakeHub, COMMIT};
use mnist_data::{HubFiles, HubSource, RepoKind, Source};

fn dataset_hub(repo: &str, files: BTreeMap<String, Vec<u8>>) -> FakeHub {
    FakeHub::start(RepoKind::Dataset, repo, files).unwrap()
}

fn source(url: &str, repo: &str, cache: &Path) -> Source {
    Source::Hub(HubSource {
        endpoint: Some(url.to_string()),
        cache_dir: Some(cache.to_path_buf()),
        ..HubSource::new(repo)
    })
}

fn fixture_files(prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = mnist_data::fixtures_dir();
    [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    .iter()
    .map(|f| (format!("{prefix}{f}"), std::fs::read(dir.join(f)).unwrap()))
    .chain(std::iter::once((
        "README.md".to_string(),
        b"# mnist".to_vec(),
    )))
    .collect()
}

#[test]
fn idx_repo_downloads_caches_and_works_offline() {
    let cache = tempfile::tempdir().unwrap();
    let mut hub = dataset_hub("someone/mnist-idx", fixture_files("raw/"));
    let splits = source(hub.url(), "someone/mnist-idx", cache.path())
        .load()
        .unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (500, 500));
    assert_eq!(splits.test.class_counts(), [50; 10]);
    assert!(splits.origin.contains(COMMIT), "{}", splits.origin);
    assert_eq!(hub.downloads(), 4);
    let url = hub.url().to_string();
    hub.shutdown();

    // The server is gone: the cache alone serves the same data.
    let again = source(&url, "someone/mnist-idx", cache.path())
        .load()
        .unwrap();
    assert_eq!(again.test, splits.test);
    assert_eq!(again.train, splits.train);
    assert!(again.origin.contains("from the cache"), "{}", again.origin);

    // Nothing cached and nobody answering: a clear message, not a panic.
    let empty = tempfile::tempdir().unwrap();
    let err = source(&url, "someone/mnist-idx", empty.path())
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("someone/mnist-idx"), "{err}");
    assert!(err.contains("cannot reach the Hub"), "{err}");
    assert!(err.contains("--fixtures"), "{err}");
}

#[test]
fn parquet_repo_like_ylecun_mnist() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hub-parquet");
    let files: BTreeMap<String, Vec<u8>> = [
        "train-00000-of-00001.parquet",
        "test-00000-of-00001.parquet",
    ]
    .iter()
    .map(|f| (format!("mnist/{f}"), std::fs::read(dir.join(f)).unwrap()))
    .collect();
    let cache = tempfile::tempdir().unwrap();
    let hub = dataset_hub("ylecun/mnist", files);
    let splits = source(hub.url(), "ylecun/mnist", cache.path())
        .load()
        .unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (20, 10));
    // The PNG cells decode to the very bytes of the fixtures they were made from.
    let fixtures = mnist_data::load_fixtures().unwrap();
    assert_eq!(splits.test, fixtures.test.first(10));
    assert_eq!(splits.train, fixtures.train.first(20));
}

#[test]
fn repo_without_data_files_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let files = BTreeMap::from([("README.md".to_string(), b"hi".to_vec())]);
    let hub = dataset_hub("someone/empty", files);
    let err = source(hub.url(), "someone/empty", cache.path())
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("neither the four IDX files"), "{err}");
}

#[test]
fn named_files_of_a_model_repo() {
    let files = BTreeMap::from([
        ("a.bin".to_string(), vec![1u8; 300]),
        ("sub/b.bin".to_string(), vec![2u8; 700]),
    ]);
    let cache = tempfile::tempdir().unwrap();
    let mut hub = FakeHub::start(RepoKind::Model, "someone/model", files.clone()).unwrap();
    let repo = HubFiles {
        endpoint: Some(hub.url().to_string()),
        cache_dir: Some(cache.path().to_path_buf()),
        ..HubFiles::model("someone/model")
    };
    let got = repo.fetch(&["a.bin", "sub/b.bin"]).unwrap();
    assert_eq!((got.commit.as_str(), got.from_cache), (COMMIT, false));
    assert_eq!(std::fs::read(&got.paths[0]).unwrap(), files["a.bin"]);
    assert_eq!(std::fs::read(&got.paths[1]).unwrap(), files["sub/b.bin"]);
    assert_eq!(hub.downloads(), 2);

    // A file the repository lacks is named, whatever the cache holds.
    let err = repo.fetch(&["a.bin", "c.bin"]).unwrap_err().to_string();
    assert!(
        err.contains("someone/model") && err.contains("has no c.bin"),
        "{err}"
    );

    // Offline: what is cached is served; what is not is a clear error.
    hub.shutdown();
    let again = repo.fetch(&["sub/b.bin"]).unwrap();
    assert!(again.from_cache);
    assert_eq!(again.paths[0], got.paths[1]);
    let err = repo.fetch(&["c.bin"]).unwrap_err().to_string();
    assert!(
        err.contains("cannot reach the Hub") && err.contains("c.bin not cached"),
        "{err}"
    );
}
