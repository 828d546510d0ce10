//! `--weights-repo`: the committed checkpoints served by a fake Hub on 127.0.0.1
//! (`mnist_data::testing::FakeHub`), downloaded into a temporary cache, verified by
//! loading, then served from the cache offline; and the errors when the repository lacks
//! a file, holds a foreign one, or nobody answers and nothing is cached.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use harness::{fetch_weights, load_models, WEIGHT_FILES};
use mnist_data::testing::{FakeHub, COMMIT};
use mnist_data::{HubFiles, PixelFormat, RepoKind};
use models::Classifier;

const REPO: &str = "someone/cam-weights";

fn fixture_weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/weights")
}

/// The committed checkpoints and their README, by repository name.
fn committed() -> BTreeMap<String, Vec<u8>> {
    WEIGHT_FILES
        .iter()
        .chain(&["README.md"])
        .map(|f| {
            (
                f.to_string(),
                std::fs::read(fixture_weights().join(f)).unwrap(),
            )
        })
        .collect()
}

fn repo(url: &str, cache: &Path) -> HubFiles {
    HubFiles {
        endpoint: Some(url.to_string()),
        cache_dir: Some(cache.to_path_buf()),
        ..HubFiles::model(REPO)
    }
}

#[test]
fn weights_repo_downloads_verifies_and_then_works_offline() {
    let dev = Device::Cpu;
    let cache = tempfile::tempdir().unwrap();
    let mut hub = FakeHub::start(RepoKind::Model, REPO, committed()).unwrap();
    let url = hub.url().to_string();
    let got = fetch_weights(&repo(&url, cache.path()), &dev).unwrap();
    assert!(got.dir.starts_with(cache.path()), "{}", got.dir.display());
    assert!(
        got.origin.contains(REPO)
            && got.origin.contains(COMMIT)
            && got.origin.contains("downloaded"),
        "{}",
        got.origin
    );
    assert_eq!(
        hub.downloads(),
        WEIGHT_FILES.len(),
        "the README is not fetched"
    );
    for f in WEIGHT_FILES {
        assert_eq!(
            std::fs::read(got.dir.join(f)).unwrap(),
            std::fs::read(fixture_weights().join(f)).unwrap(),
            "{f}"
        );
    }
    // They load into the very models the bundled files give.
    let (fetched, bundled) = (
        load_models(&got.dir, &dev).unwrap(),
        load_models(&fixture_weights(), &dev).unwrap(),
    );
    let test = mnist_data::Source::Fixtures.load().unwrap().test;
    let x = test
        .images_tensor(&[0, 1], PixelFormat::Gray, &dev)
        .unwrap();
    let logits = |m: &dyn Classifier| -> Vec<Vec<f32>> { m.logits(&x).unwrap().to_vec2().unwrap() };
    assert_eq!(logits(&fetched.gapcnn), logits(&bundled.gapcnn));
    assert_eq!(logits(&fetched.oracle), logits(&bundled.oracle));

    // Offline: the cache alone serves them.
    hub.shutdown();
    let again = fetch_weights(&repo(&url, cache.path()), &dev).unwrap();
    assert_eq!(again.dir, got.dir);
    assert!(again.origin.contains("from the cache"), "{}", again.origin);

    // Offline with nothing cached: a clear error naming the repository and the files.
    let empty = tempfile::tempdir().unwrap();
    let err = fetch_weights(&repo(&url, empty.path()), &dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(REPO) && err.contains("cannot reach the Hub"),
        "{err}"
    );
    assert!(
        err.contains("gapcnn.safetensors") && err.contains("not cached"),
        "{err}"
    );
}

#[test]
fn a_repo_lacking_a_checkpoint_is_refused_by_name() {
    let mut files = committed();
    files.remove("svae.safetensors");
    let hub = FakeHub::start(RepoKind::Model, REPO, files).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = fetch_weights(&repo(hub.url(), cache.path()), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(REPO) && err.contains("has no svae.safetensors"),
        "{err}"
    );
    assert_eq!(
        hub.downloads(),
        0,
        "nothing is downloaded from an incomplete repo"
    );
}

#[test]
fn a_foreign_checkpoint_is_refused_by_file() {
    let mut files = committed();
    let gapcnn = files["gapcnn.safetensors"].clone();
    files.insert("mlp.safetensors".into(), gapcnn);
    let hub = FakeHub::start(RepoKind::Model, REPO, files).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = fetch_weights(&repo(hub.url(), cache.path()), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mlp.safetensors"), "{err}");
}
