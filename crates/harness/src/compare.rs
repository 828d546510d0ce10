//! Compares two result directories as `cargo xtask compare` does: every artifact byte for
//! byte, except the timings (`summary.json`'s timing fields, the report's
//! [`TIMINGS_HEADING`] section) and the build that computed them ([`BUILD_KEYS`]). The
//! stage cache (`stages/`), trained weights and a shard's manifest are not results and
//! are left out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{HarnessError, Result};
use crate::report::TIMINGS_HEADING;

/// `summary.json` keys (at any depth) that hold timings.
pub const TIMING_KEYS: [&str; 6] = [
    "wall_seconds",
    "stage_seconds",
    "images_per_second",
    "pair_iterations_per_second",
    "seconds_per_radius",
    "seconds",
];

/// `summary.json` keys (at any depth) that name the build of the program: two builds
/// whose results agree compare the same.
pub const BUILD_KEYS: [&str; 1] = ["program"];

/// How one file compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileComparison {
    /// The path under both directories.
    pub path: String,
    /// `same`, `differs`, `only in A` or `only in B`.
    pub status: String,
    /// Where they first differ (empty when the same).
    pub detail: String,
}

impl FileComparison {
    /// The same in both (up to timings).
    pub fn same(&self) -> bool {
        self.status == "same"
    }
}

fn files(root: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|source| HarnessError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let path = rel.join(&name);
            if rel.as_os_str().is_empty()
                && (name == "stages" || name == "weights" || name == crate::shard::SHARD_FILE)
            {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if !name.contains(".tmp") {
                out.insert(path.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    Ok(out)
}

fn strip_timings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| {
                !TIMING_KEYS.contains(&k.as_str()) && !BUILD_KEYS.contains(&k.as_str())
            });
            map.values_mut().for_each(strip_timings);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_timings),
        _ => {}
    }
}

/// The first JSON pointer where `a` and `b` differ.
fn first_json_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> String {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) if p == q => {}
                    (Some(p), Some(q)) => return first_json_difference(p, q, &format!("{at}/{k}")),
                    _ => return format!("{at}/{k}: present in one only"),
                }
            }
            format!("{at}: differs")
        }
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find(|(_, (p, q))| p != q)
            .map(|(i, (p, q))| first_json_difference(p, q, &format!("{at}/{i}")))
            .unwrap_or_else(|| format!("{at}: differs")),
        _ => format!("{at}: {a} vs {b}"),
    }
}

/// The report without its timings section (markdown `## ` or HTML `<h2>` headings).
fn without_timings(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let heading = line.starts_with("## ") || line.contains("<h2>");
        if heading {
            skipping = line.contains(TIMINGS_HEADING);
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn compare_file(a: &Path, b: &Path, rel: &str) -> Result<Option<String>> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| HarnessError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let (x, y) = (read(&a.join(rel))?, read(&b.join(rel))?);
    if x == y {
        return Ok(None);
    }
    if rel == "summary.json" {
        let parse = |bytes: &[u8], p: &Path| -> Result<serde_json::Value> {
            serde_json::from_slice(bytes)
                .map_err(|e| HarnessError::Other(format!("{}: {e}", p.join(rel).display())))
        };
        let (mut p, mut q) = (parse(&x, a)?, parse(&y, b)?);
        strip_timings(&mut p);
        strip_timings(&mut q);
        return Ok((p != q).then(|| first_json_difference(&p, &q, "")));
    }
    if rel == "report.md" || rel == "report.html" {
        let (p, q) = (
            without_timings(&String::from_utf8_lossy(&x)),
            without_timings(&String::from_utf8_lossy(&y)),
        );
        return Ok(p
            .lines()
            .zip(q.lines())
            .enumerate()
            .find(|(_, (l, m))| l != m)
            .map(|(i, (l, m))| format!("line {}: `{l}` vs `{m}`", i + 1))
            .or_else(|| (p != q).then(|| "one is longer".to_string())));
    }
    Ok(Some(format!(
        "{} vs {} bytes, contents differ",
        x.len(),
        y.len()
    )))
}

/// Every file of either directory (see the module's documentation for what is left out),
/// in path order, and how it compares.
pub fn compare_runs(a: &Path, b: &Path) -> Result<Vec<FileComparison>> {
    let (fa, fb) = (files(a)?, files(b)?);
    let mut out = Vec::new();
    for rel in fa.union(&fb) {
        let (status, detail) = match (fa.contains(rel), fb.contains(rel)) {
            (true, false) => ("only in A".to_string(), String::new()),
            (false, true) => ("only in B".to_string(), String::new()),
            _ => match compare_file(a, b, rel)? {
                None => ("same".to_string(), String::new()),
                Some(d) => ("differs".to_string(), d),
            },
        };
        out.push(FileComparison {
            path: rel.clone(),
            status,
            detail,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_left_out_and_everything_else_is_compared() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        for (dir, secs, auc) in [(&a, 1.5, 0.9), (&b, 7.25, 0.9)] {
            std::fs::create_dir_all(dir.join("stages")).unwrap();
            let summary = serde_json::json!({
                "versions": {"toolkit": "0.1.0", "program": format!("{secs}")},
                "wall_seconds": secs,
                "type2": {"fgsm": {"images_per_second": secs, "success_rate": auc}},
                "stage_seconds": [{"stage": "x", "seconds": secs}],
            });
            std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
            let report = format!(
                "# R\n\n## ROC\n\nAUC {auc}\n\n## {TIMINGS_HEADING}\n\n{secs} s\n\n## Configuration\n\nseed 0\n"
            );
            std::fs::write(dir.join("report.md"), report).unwrap();
            std::fs::write(dir.join("stages/x.json"), secs.to_string()).unwrap();
            std::fs::write(dir.join("t.csv"), "a,b\n1,2\n").unwrap();
        }
        let r = compare_runs(&a, &b).unwrap();
        assert!(r.iter().all(FileComparison::same), "{r:?}");
        assert_eq!(r.len(), 3, "stages/ left out: {r:?}");

        // A result that differs is found, and named.
        std::fs::write(b.join("t.csv"), "a,b\n1,3\n").unwrap();
        let s = serde_json::json!({"wall_seconds": 1, "type2": {"fgsm": {"images_per_second": 1, "success_rate": 0.8}}, "stage_seconds": []});
        std::fs::write(b.join("summary.json"), s.to_string()).unwrap();
        std::fs::write(
            b.join("report.md"),
            format!("# R\n\n## ROC\n\nAUC 0.9\n\n## {TIMINGS_HEADING}\n\n1 s\n\n## Configuration\n\nseed 1\n"),
        )
        .unwrap();
        std::fs::write(b.join("extra.png"), "x").unwrap();
        let r = compare_runs(&a, &b).unwrap();
        let by = |p: &str| r.iter().find(|c| c.path == p).unwrap().clone();
        assert_eq!(by("t.csv").status, "differs");
        assert_eq!(
            by("summary.json").detail,
            "/type2/fgsm/success_rate: 0.9 vs 0.8"
        );
        assert!(
            by("report.md").detail.contains("seed 0"),
            "{:?}",
            by("report.md")
        );
        assert_eq!(by("extra.png").status, "only in B");
    }
}
