//! `cargo xtask compare A B`: two result directories file by file, up to timings (a
//! merge of shards against the single-process run, docs/SCALE.md).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::output::write_json;

/// Flags of `cargo xtask compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The first result directory.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The second.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Also write every file's comparison as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Prints one row per file and fails when any differs or is missing on one side.
pub fn compare(args: &CompareArgs) -> Result<()> {
    let rows = harness::compare_runs(&args.a, &args.b)?;
    let width = rows.iter().map(|r| r.path.len()).max().unwrap_or(4).max(4);
    println!("| {:<width$} | status    | where |", "file");
    println!("| {:-<width$} | --------- | ----- |", "");
    for r in &rows {
        println!("| {:<width$} | {:<9} | {} |", r.path, r.status, r.detail);
    }
    let differing = rows.iter().filter(|r| !r.same()).count();
    println!(
        "{} files: {} the same up to timings ({}) and the build ({}), {differing} not",
        rows.len(),
        rows.len() - differing,
        harness::TIMING_KEYS.join(", "),
        harness::BUILD_KEYS.join(", ")
    );
    write_json(args.json.as_deref(), &rows)?;
    if differing > 0 {
        bail!(
            "{} and {} differ in {differing} file(s)",
            args.a.display(),
            args.b.display()
        );
    }
    Ok(())
}
