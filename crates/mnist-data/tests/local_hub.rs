//! The Hub source against a server on 127.0.0.1 that answers as the Hub does: the repo
//! info API, and `resolve` URLs with the `etag` / `x-repo-commit` / `Content-Range`
//! headers and byte ranges that hf-hub's client relies on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use mnist_data::{HubSource, Source};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct FakeHub {
    url: String,
    stop: Arc<AtomicBool>,
    downloads: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    /// Serves `files` (repo-relative name -> bytes) as dataset `repo`.
    fn start(repo: &str, files: BTreeMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let downloads = Arc::new(AtomicUsize::new(0));
        let (stop2, downloads2, repo) = (stop.clone(), downloads.clone(), repo.to_string());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        serve(stream, &repo, &files, &downloads2);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Self {
            url,
            stop,
            downloads,
            thread: Some(thread),
        }
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn serve(
    mut stream: TcpStream,
    repo: &str,
    files: &BTreeMap<String, Vec<u8>>,
    downloads: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(": ") {
            if k.eq_ignore_ascii_case("range") {
                range = v.strip_prefix("bytes=").map(str::to_string);
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let info = format!("/api/datasets/{repo}/revision/main");
    let resolve = format!("/datasets/{repo}/resolve/main/");
    if path == info {
        let siblings: Vec<String> = files
            .keys()
            .map(|k| format!("{{\"rfilename\":\"{k}\"}}"))
            .collect();
        let body = format!(
            "{{\"sha\":\"{COMMIT}\",\"siblings\":[{}]}}",
            siblings.join(",")
        );
        respond(&mut stream, "200 OK", &[], body.as_bytes());
    } else if let Some(body) = path.strip_prefix(&resolve).and_then(|f| files.get(f)) {
        let (start, end) = match range.as_deref().and_then(|r| r.split_once('-')) {
            Some((s, e)) => (
                s.parse::<usize>().unwrap_or(0),
                e.parse::<usize>().unwrap_or(body.len() - 1),
            ),
            None => (0, body.len() - 1),
        };
        if start == 0 && end + 1 == body.len() || start > 0 {
            downloads.fetch_add(1, Ordering::SeqCst);
        }
        let etag = format!("\"etag-{}-{}\"", body.len(), path.len());
        let headers = vec![
            ("ETag".to_string(), etag),
            ("X-Repo-Commit".to_string(), COMMIT.to_string()),
            (
                "Content-Range".to_string(),
                format!("bytes {start}-{end}/{}", body.len()),
            ),
        ];
        respond(
            &mut stream,
            "206 Partial Content",
            &headers,
            &body[start..=end],
        );
    } else {
        respond(&mut stream, "404 Not Found", &[], b"not found");
    }
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
    let mut hub = FakeHub::start("someone/mnist-idx", fixture_files("raw/"));
    let splits = source(&hub.url, "someone/mnist-idx", cache.path())
        .load()
        .unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (500, 500));
    assert_eq!(splits.test.class_counts(), [50; 10]);
    assert!(splits.origin.contains(COMMIT), "{}", splits.origin);
    assert_eq!(hub.downloads.load(Ordering::SeqCst), 4);
    let url = hub.url.clone();
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
    let hub = FakeHub::start("ylecun/mnist", files);
    let splits = source(&hub.url, "ylecun/mnist", cache.path())
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
    let hub = FakeHub::start("someone/empty", files);
    let err = source(&hub.url, "someone/empty", cache.path())
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("neither the four IDX files"), "{err}");
}
