//! `cargo xtask data` and `cargo xtask fixtures`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mnist_data::{idx, standard_file_names, HubSource, Source, Split, NUM_CLASSES};
use serde::Serialize;
use sha2::{Digest, Sha256};

use harness::write_atomic;

/// Which data to load; exactly one of the three, the fixtures when none is given.
#[derive(Args, Debug, Clone)]
#[group(multiple = false)]
pub struct SourceArgs {
    /// A directory with the four standard IDX files (MNIST or Fashion-MNIST).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A Hugging Face Hub dataset repository, e.g. ylecun/mnist.
    #[arg(long, value_name = "REPO")]
    pub hub: Option<String>,
    /// The bundled fixtures (500 train and 500 test images).
    #[arg(long)]
    pub fixtures: bool,
    /// Branch, tag or commit of the Hub repository.
    #[arg(long, default_value = "main", requires = "hub")]
    pub revision: String,
    /// Hub endpoint (default: $HF_ENDPOINT or the public Hub).
    #[arg(long, requires = "hub")]
    pub endpoint: Option<String>,
}

impl SourceArgs {
    /// The source these flags name.
    pub fn source(&self) -> Source {
        if let Some(dir) = &self.data_dir {
            Source::Dir(dir.clone())
        } else if let Some(repo) = &self.hub {
            Source::Hub(HubSource {
                revision: self.revision.clone(),
                endpoint: self.endpoint.clone(),
                progress: true,
                ..HubSource::new(repo.clone())
            })
        } else {
            Source::Fixtures
        }
    }
}

/// Flags of `cargo xtask data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Which data.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Also write the counts as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Refuse an IDX file (with --data-dir) whose header announces more than this many
    /// decoded bytes, header included, before reading its data (full MNIST's largest
    /// file: 47,040,016 bytes).
    #[arg(long, value_name = "BYTES")]
    pub max_bytes: Option<u64>,
}

/// Image counts of one split.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SplitCounts {
    /// Images per class, 0 to 9.
    pub per_class: [usize; NUM_CLASSES],
    /// All images.
    pub total: usize,
}

/// What `cargo xtask data` prints.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct DataSummary {
    /// Where the data came from.
    pub source: String,
    /// The train split.
    pub train: SplitCounts,
    /// The test split.
    pub test: SplitCounts,
}

impl DataSummary {
    /// The origin line, then a table of per-class counts for both splits.
    pub fn table(&self) -> String {
        let mut out = format!("source: {}\n{:<6}", self.source, "split");
        for c in 0..NUM_CLASSES {
            let _ = write!(out, "{c:>7}");
        }
        let _ = writeln!(out, "{:>8}", "total");
        for (name, d) in [("train", &self.train), ("test", &self.test)] {
            let _ = write!(out, "{name:<6}");
            for n in d.per_class {
                let _ = write!(out, "{n:>7}");
            }
            let _ = writeln!(out, "{:>8}", d.total);
        }
        out
    }
}

fn summarise(args: &SourceArgs, max_bytes: Option<u64>) -> Result<DataSummary> {
    let splits = args.source().load_capped(max_bytes)?;
    let counts = |d: &mnist_data::Dataset| SplitCounts {
        per_class: d.class_counts(),
        total: d.len(),
    };
    Ok(DataSummary {
        source: splits.origin.to_string(),
        train: counts(&splits.train),
        test: counts(&splits.test),
    })
}

/// Prints the origin, then a table of per-class counts for both splits (and writes
/// `--json`).
pub fn print_counts(args: &DataArgs) -> Result<()> {
    let summary = summarise(&args.source, args.max_bytes)?;
    print!("{}", summary.table());
    crate::output::write_json(args.json.as_deref(), &summary)
}

/// Flags of `cargo xtask fixtures`.
#[derive(Args, Debug)]
pub struct FixturesArgs {
    /// Directory with the full MNIST files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Images per class taken from each split (the first ones in file order).
    #[arg(long, default_value_t = 50)]
    pub per_class: usize,
    /// Output directory.
    #[arg(long, default_value = "fixtures/mnist-mini")]
    pub out: PathBuf,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Writes the class-balanced subsets of both splits as IDX gz files plus a README with
/// provenance, licence and checksums.
pub fn make_fixtures(args: &FixturesArgs) -> Result<()> {
    let splits = mnist_data::load_dir(&args.data_dir)?;
    let mut table = String::new();
    let mut index_lists = String::new();
    for (split, data) in [(Split::Train, &splits.train), (Split::Test, &splits.test)] {
        let indices = data.balanced_indices(args.per_class)?;
        let subset = data.select(&indices)?;
        let (img_name, lab_name) = standard_file_names(split);
        let images =
            idx::encode_images(subset.len(), subset.rows(), subset.cols(), subset.pixels());
        let labels = idx::encode_labels(subset.labels());
        for (name, raw) in [(img_name, images), (lab_name, labels)] {
            let gz = idx::gzip(&raw);
            let file = format!("{name}.gz");
            write_atomic(&args.out.join(&file), &gz)?;
            let _ = writeln!(
                table,
                "| {file} | {} | {} | {} |",
                gz.len(),
                sha256_hex(&gz),
                sha256_hex(&raw)
            );
        }
        let _ = writeln!(
            index_lists,
            "- {} ({} images): {}",
            split.file_prefix(),
            indices.len(),
            indices
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let readme = format!(
        "# mnist-mini: the bundled MNIST fixtures\n\n\
         The first {per} images of every class, in file order, of each MNIST split \
         ({n} train and {n} test images), so that everything runs offline. Test image 0 \
         here is MNIST test image 0 (a 7), the image the study attacks.\n\n\
         Made by `cargo xtask fixtures --data-dir DIR --per-class {per}` from the original \
         MNIST files (sha256 of the uncompressed full test images: \
         0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7). \
         Same IDX format, gzip-compressed (deterministic header: no name, mtime 0).\n\n\
         MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges and is \
         licensed under CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/); \
         this subset is under the same licence.\n\n\
         | file | bytes | sha256 (gz) | sha256 (uncompressed) |\n| --- | --- | --- | --- |\n\
         {table}\n\
         Indices taken from the full files:\n\n{index_lists}",
        per = args.per_class,
        n = args.per_class * NUM_CLASSES,
    );
    write_atomic(&args.out.join("README.md"), readme.as_bytes())
        .context("writing the fixtures README")?;
    println!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--max-bytes` reaches the IDX reader: a header announcing 3,000,000 images is
    /// refused under the cap before any data is read, naming the file, the announced
    /// size and the cap; without a cap the same file is refused as truncated.
    #[test]
    fn max_bytes_refuses_a_lying_header_before_reading_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut header = Vec::new();
        for v in [0x803u32, 3_000_000, 28, 28] {
            header.extend_from_slice(&v.to_be_bytes());
        }
        header.extend_from_slice(&[0u8; 784]);
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), &header).unwrap();
        let labels = [0, 0, 8, 1, 0, 0, 0, 1, 7];
        std::fs::write(dir.path().join("train-labels-idx1-ubyte"), labels).unwrap();
        let args = SourceArgs {
            data_dir: Some(dir.path().to_path_buf()),
            hub: None,
            fixtures: false,
            revision: "main".into(),
            endpoint: None,
        };
        let e = format!("{:#}", summarise(&args, Some(47_040_016)).unwrap_err());
        assert!(
            e.contains("train-images-idx3-ubyte")
                && e.contains("2352000016")
                && e.contains("47040016"),
            "{e}"
        );
        let e = format!("{:#}", summarise(&args, None).unwrap_err());
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn counts_add_up_and_the_table_prints_the_json_numbers() {
        let s = summarise(
            &SourceArgs {
                data_dir: None,
                hub: None,
                fixtures: true,
                revision: "main".into(),
                endpoint: None,
            },
            None,
        )
        .unwrap();
        for split in [&s.train, &s.test] {
            assert_eq!(split.per_class.iter().sum::<usize>(), split.total);
            assert_eq!(
                split.per_class, [50; NUM_CLASSES],
                "the fixtures are balanced"
            );
        }
        let json = serde_json::to_value(&s).unwrap();
        let table = s.table();
        let lines: Vec<&str> = table.lines().collect();
        for (line, split) in [(lines[2], "train"), (lines[3], "test")] {
            let printed: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .map(|v| v.parse().unwrap())
                .collect();
            let mut expected: Vec<u64> = json[split]["per_class"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            expected.push(json[split]["total"].as_u64().unwrap());
            assert_eq!(printed, expected, "{split}");
        }
    }
}
