//! Artifacts are written atomically: a temporary file in the same directory, then a
//! rename, so an interrupted run never leaves a half-written file and a finished one
//! is never lost.

use std::path::Path;

use crate::error::{HarnessError, Result};

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    common::write_atomic(path, |tmp| std::fs::write(tmp, bytes)).map_err(|e| HarnessError::Io {
        path: e.path,
        source: e.source,
    })
}

/// Rows of a CSV table (header first); fields with commas or quotes are quoted.
pub fn csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let quote = |f: &str| {
        if f.contains([',', '"', '\n']) {
            format!("\"{}\"", f.replace('"', "\"\""))
        } else {
            f.to_string()
        }
    };
    let mut out = header.join(",");
    out.push('\n');
    for row in rows {
        out.push_str(&row.iter().map(|f| quote(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.json");
        write_atomic(&p, b"{}").unwrap();
        write_atomic(&p, b"{\"x\":1}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"x\":1}");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let s = csv(
            &["a", "b"],
            &[
                vec!["1".into(), "x,y".into()],
                vec!["\"q\"".into(), "2".into()],
            ],
        );
        assert_eq!(s, "a,b\n1,\"x,y\"\n\"\"\"q\"\"\",2\n");
    }
}
