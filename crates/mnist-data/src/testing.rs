//! Test support (feature `testing`): a server on 127.0.0.1 that answers as the Hugging
//! Face Hub does for one repository: the repo-info API, and `resolve` URLs with the
//! `ETag` / `X-Repo-Commit` / `Content-Range` headers and byte ranges that hf-hub's
//! client relies on; and [`full_mnist_dir`], where tests find full MNIST. Nothing here
//! is for production use.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::hub::RepoKind;

/// The commit every served file belongs to.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A fake Hub serving one repository until dropped (or [`FakeHub::shutdown`]).
#[derive(Debug)]
pub struct FakeHub {
    url: String,
    stop: Arc<AtomicBool>,
    downloads: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    /// Serves `files` (repository-relative name -> bytes) as repository `repo` at
    /// revision `main`.
    pub fn start(
        kind: RepoKind,
        repo: &str,
        files: BTreeMap<String, Vec<u8>>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let downloads = Arc::new(AtomicUsize::new(0));
        let (prefix, api) = match kind {
            RepoKind::Model => ("", "models"),
            RepoKind::Dataset => ("datasets/", "datasets"),
        };
        let routes = Routes {
            info: format!("/api/{api}/{repo}/revision/main"),
            resolve: format!("/{prefix}{repo}/resolve/main/"),
        };
        let (stop2, downloads2) = (stop.clone(), downloads.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(false).is_ok() {
                            serve(stream, &routes, &files, &downloads2);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self {
            url,
            stop,
            downloads,
            thread: Some(thread),
        })
    }

    /// The server root, for `endpoint`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whole files served so far (a ranged request counts once per file).
    pub fn downloads(&self) -> usize {
        self.downloads.load(Ordering::SeqCst)
    }

    /// Stops serving: later requests are refused, as when offline.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Routes {
    info: String,
    resolve: String,
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

/// FNV-1a of the content: distinct files get distinct etags (hf-hub names blobs by them).
fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}-{}\"", body.len())
}

fn serve(
    mut stream: TcpStream,
    routes: &Routes,
    files: &BTreeMap<String, Vec<u8>>,
    downloads: &AtomicUsize,
) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
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
    if path == routes.info {
        let siblings: Vec<String> = files
            .keys()
            .map(|k| format!("{{\"rfilename\":\"{k}\"}}"))
            .collect();
        let body = format!(
            "{{\"sha\":\"{COMMIT}\",\"siblings\":[{}]}}",
            siblings.join(",")
        );
        respond(&mut stream, "200 OK", &[], body.as_bytes());
        return;
    }
    let Some(body) = path
        .strip_prefix(&routes.resolve)
        .and_then(|f| files.get(f))
        .filter(|b| !b.is_empty())
    else {
        respond(&mut stream, "404 Not Found", &[], b"not found");
        return;
    };
    let last = body.len() - 1;
    let (start, end) = match range.as_deref().and_then(|r| r.split_once('-')) {
        Some((s, e)) => (
            s.parse::<usize>().unwrap_or(0),
            e.parse::<usize>().unwrap_or(last).min(last),
        ),
        None => (0, last),
    };
    if start > end {
        respond(&mut stream, "416 Range Not Satisfiable", &[], b"");
        return;
    }
    if start == 0 && end == last || start > 0 {
        downloads.fetch_add(1, Ordering::SeqCst);
    }
    let headers = vec![
        ("ETag".to_string(), etag(body)),
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
}

/// The directory with the full MNIST files for a test that needs them: `$MNIST_DIR`.
/// Unset, the test is skipped (`None`, with a message on stderr), except under `CI=true`
/// (or `1`, `yes`), where a skip would hide a CI that lost its data: there, and when
/// `$MNIST_DIR` is not a directory, this panics with a message saying what to set.
pub fn full_mnist_dir(test: &str) -> Option<PathBuf> {
    match full_mnist_decision(test, std::env::var_os("MNIST_DIR"), std::env::var_os("CI")) {
        Ok(Some(dir)) => Some(dir),
        Ok(None) => {
            eprintln!("MNIST_DIR is not set: skipping {test}");
            None
        }
        Err(message) => panic!("{message}"),
    }
}

/// [`full_mnist_dir`]'s decision from the two variables' values: the directory, a skip,
/// or the message to fail with.
fn full_mnist_decision(
    test: &str,
    mnist_dir: Option<OsString>,
    ci: Option<OsString>,
) -> Result<Option<PathBuf>, String> {
    match mnist_dir.filter(|d| !d.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_dir() {
                Ok(Some(dir))
            } else {
                Err(format!(
                    "{test}: MNIST_DIR={} is not a directory (it must hold the four MNIST IDX files)",
                    dir.display()
                ))
            }
        }
        None => {
            let ci = ci.map(|v| v.to_string_lossy().trim().to_string());
            if ci
                .as_deref()
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
            {
                Err(format!(
                    "{test} needs full MNIST and CI={}, but MNIST_DIR is not set: point \
                     MNIST_DIR at the directory with the four MNIST IDX files (a CI run does \
                     not skip the full-MNIST tests)",
                    ci.unwrap_or_default()
                ))
            } else {
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod full_mnist_tests {
    use super::*;

    #[test]
    fn a_skip_outside_ci_a_failure_in_ci_the_directory_when_set() {
        let os = |s: &str| Some(OsString::from(s));
        let here = std::env::temp_dir();
        assert_eq!(full_mnist_decision("t", None, None), Ok(None));
        assert_eq!(full_mnist_decision("t", None, os("false")), Ok(None));
        assert_eq!(full_mnist_decision("t", os(""), os("0")), Ok(None));
        for ci in ["true", "TRUE", "1", "yes"] {
            let err = full_mnist_decision("the_test", None, os(ci)).unwrap_err();
            assert!(
                err.starts_with(&format!(
                    "the_test needs full MNIST and CI={ci}, but MNIST_DIR is not set"
                )),
                "{err}"
            );
            // An empty MNIST_DIR is unset.
            assert!(full_mnist_decision("t", os(""), os(ci)).is_err());
            assert_eq!(
                full_mnist_decision("t", Some(here.clone().into()), os(ci)),
                Ok(Some(here.clone()))
            );
        }
        let missing = here.join("no-such-mnist-dir-3f9a");
        let err = full_mnist_decision("t", Some(missing.into()), None).unwrap_err();
        assert!(
            err.contains("no-such-mnist-dir-3f9a is not a directory"),
            "{err}"
        );
    }
}
