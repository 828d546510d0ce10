//! What every command ends with: a markdown table on stdout and, with `--json FILE`, the
//! same numbers as JSON, written atomically once they exist.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// `(metric, value)` rows as a markdown table.
pub fn rows_table(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!(
        "| {:<width$} | value |\n| {:-<width$} | ----- |\n",
        "metric", ""
    );
    for (k, v) in rows {
        out.push_str(&format!("| {k:<width$} | {v} |\n"));
    }
    out
}

/// Prints `(metric, value)` rows as a markdown table.
pub fn print_rows(rows: &[(&str, String)]) {
    print!("{}", rows_table(rows));
}

/// Writes `value` as pretty JSON to `path` (through a temporary file and a rename), if a
/// path is given; an error names the file.
pub fn write_json<T: Serialize>(path: Option<&Path>, value: &T) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(value)
        .with_context(|| format!("encoding {} as JSON", path.display()))?;
    harness::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `v` formatted with `digits` decimals, `-` when it is not a number (no successes).
pub fn fixed(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_its_rows() {
        let t = rows_table(&[("a", "1".into()), ("longer", "2".into())]);
        assert_eq!(
            t,
            "| metric | value |\n| ------ | ----- |\n| a      | 1 |\n| longer | 2 |\n"
        );
    }

    #[test]
    fn json_write_failure_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let path = blocker.join("out.json");
        let err = write_json(Some(&path), &1).unwrap_err();
        assert!(
            format!("{err:#}").contains(&path.display().to_string()),
            "{err:#}"
        );
        write_json(Some(&dir.path().join("ok.json")), &[1, 2]).unwrap();
        let back: Vec<u32> =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("ok.json")).unwrap())
                .unwrap();
        assert_eq!(back, [1, 2]);
    }
}
