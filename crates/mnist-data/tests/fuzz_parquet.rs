//! Fuzz harness of the parquet reader (issue #24): tables written here with generated
//! cells (valid PNGs of one size or several, corrupt PNGs, PNGs whose header announces
//! a huge image, arbitrary bytes; labels of every integer type and out of range; the
//! image as a struct or a plain binary column; a column missing or of the wrong type),
//! and byte-level mutations of parquet files (the bundled Hub fixture, written by
//! pyarrow with snappy, and the tables written here), plus arbitrary bytes framed as a
//! parquet file.
//!
//! The properties: never a panic; a generated table loads exactly when every row has
//! an integer label in 0..=9 and a PNG of the first row's size, and then its images and
//! labels are the cells' own (decoded independently); otherwise the error names the
//! file and the first offending row; any accepted file is a consistent dataset.
//!
//! CI runs a bounded number of cases from a fixed seed (`test_support::fuzz_config`):
//! `FUZZ_CASES` raises the count for a long local run,
//! `FUZZ_CASES=10000 cargo test --release -p mnist-data --test fuzz_parquet`, and
//! `FUZZ_SEED` changes the seed.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use mnist_data::{load_parquet, Dataset};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use proptest::prelude::*;
use proptest::sample::Index;
use test_support::{byte_edit, fuzz_config, no_panic, ByteEdit};

// ---- Cells and tables ----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Cell {
    /// A grey PNG of `rows x cols` pixels.
    Png(u32, u32, Vec<u8>),
    /// A valid PNG whose bytes are then cut at a point or have one byte changed.
    Damaged(u32, u32, Vec<u8>, Index, Option<u8>),
    /// A 1x1 PNG whose header announces `width x height` (CRC fixed up).
    Huge(u32, u32),
    /// Anything.
    Bytes(Vec<u8>),
}

fn png(rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let img = image::GrayImage::from_raw(cols, rows, pixels.to_vec()).unwrap();
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

impl Cell {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Cell::Png(r, c, p) => png(*r, *c, p),
            Cell::Damaged(r, c, p, at, flip) => {
                let mut b = png(*r, *c, p);
                match flip {
                    Some(x) => {
                        let i = at.index(b.len());
                        b[i] ^= x;
                    }
                    None => b.truncate(at.index(b.len())),
                }
                b
            }
            Cell::Huge(w, h) => {
                let mut b = png(1, 1, &[7]);
                // IHDR data sits at 16..29, its CRC at 29..33.
                b[16..20].copy_from_slice(&w.to_be_bytes());
                b[20..24].copy_from_slice(&h.to_be_bytes());
                let mut crc = flate2::Crc::new();
                crc.update(&b[12..29]);
                b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
                b
            }
            Cell::Bytes(b) => b.clone(),
        }
    }
}

fn cell(rows: u32, cols: u32) -> impl Strategy<Value = Cell> {
    let n = (rows * cols) as usize;
    let pixels = prop::collection::vec(any::<u8>(), n);
    let other = (1u32..5, 1u32..5).prop_flat_map(|(r, c)| {
        prop::collection::vec(any::<u8>(), (r * c) as usize).prop_map(move |p| Cell::Png(r, c, p))
    });
    prop_oneof![
        12 => pixels.clone().prop_map(move |p| Cell::Png(rows, cols, p)),
        1 => other,
        2 => (pixels, any::<Index>(), prop::option::of(1u8..=255))
            .prop_map(move |(p, at, flip)| Cell::Damaged(rows, cols, p, at, flip)),
        1 => (prop_oneof![1u32..100_000, any::<u32>()], prop_oneof![1u32..100_000, any::<u32>()])
            .prop_map(|(w, h)| Cell::Huge(w, h)),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Cell::Bytes),
    ]
}

/// How the `image` column is written.
#[derive(Debug, Clone, Copy)]
enum ImageColumn {
    /// A struct with a `bytes` field, as the Hub writes it.
    Struct,
    /// A plain binary column.
    Binary,
    /// Under another name: no `image` column.
    Misnamed,
}

/// The physical and logical type of the `label` column.
#[derive(Debug, Clone, Copy)]
enum LabelColumn {
    Int64,
    Int32,
    Int8,
    Int16,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Double,
    Missing,
}

impl LabelColumn {
    fn schema(self) -> &'static str {
        match self {
            LabelColumn::Int64 => "required int64 label;",
            LabelColumn::Int32 => "required int32 label;",
            LabelColumn::Int8 => "required int32 label (INT_8);",
            LabelColumn::Int16 => "required int32 label (INT_16);",
            LabelColumn::UInt8 => "required int32 label (UINT_8);",
            LabelColumn::UInt16 => "required int32 label (UINT_16);",
            LabelColumn::UInt32 => "required int32 label (UINT_32);",
            LabelColumn::UInt64 => "required int64 label (UINT_64);",
            LabelColumn::Double => "required double label;",
            LabelColumn::Missing => "required int64 other;",
        }
    }

    /// A raw value in the type's range, and the label it denotes (`None`: not an integer).
    fn value(self, raw: i64) -> (i64, Option<i128>) {
        let in_range = |lo: i64, hi: i64| raw.rem_euclid(hi - lo + 1) + lo;
        let v = match self {
            LabelColumn::Int8 => in_range(-128, 127),
            LabelColumn::Int16 => in_range(-32768, 32767),
            LabelColumn::UInt8 => in_range(0, 255),
            LabelColumn::UInt16 => in_range(0, 65535),
            LabelColumn::Int32 | LabelColumn::UInt32 => raw as i32 as i64,
            _ => raw,
        };
        let label = match self {
            LabelColumn::UInt32 => Some(i128::from(v as i32 as u32)),
            LabelColumn::UInt64 => Some(i128::from(v as u64)),
            LabelColumn::Double | LabelColumn::Missing => None,
            _ => Some(i128::from(v)),
        };
        (v, label)
    }
}

#[derive(Debug, Clone)]
struct Table {
    image: ImageColumn,
    label: LabelColumn,
    rows: Vec<(Cell, i64)>,
}

fn table() -> impl Strategy<Value = Table> {
    let image = prop_oneof![
        8 => Just(ImageColumn::Struct),
        2 => Just(ImageColumn::Binary),
        1 => Just(ImageColumn::Misnamed),
    ];
    let label = prop_oneof![
        8 => Just(LabelColumn::Int64),
        1 => Just(LabelColumn::Int32),
        1 => Just(LabelColumn::Int8),
        1 => Just(LabelColumn::Int16),
        1 => Just(LabelColumn::UInt8),
        1 => Just(LabelColumn::UInt16),
        1 => Just(LabelColumn::UInt32),
        1 => Just(LabelColumn::UInt64),
        1 => Just(LabelColumn::Double),
        1 => Just(LabelColumn::Missing),
    ];
    let raw_label = prop_oneof![8 => 0i64..10, 1 => -3i64..14, 1 => any::<i64>()];
    (image, label, 1u32..6, 1u32..6).prop_flat_map(move |(image, label, r, c)| {
        prop::collection::vec((cell(r, c), raw_label.clone()), 0..6).prop_map(move |rows| Table {
            image,
            label,
            rows,
        })
    })
}

/// The table as parquet bytes (uncompressed, one row group).
fn write_table(t: &Table) -> Vec<u8> {
    let image = match t.image {
        ImageColumn::Struct => "required group image { required binary bytes; }",
        ImageColumn::Binary => "required binary image;",
        ImageColumn::Misnamed => "required binary picture;",
    };
    let schema = format!("message table {{ {image} {} }}", t.label.schema());
    let schema = Arc::new(parse_message_type(&schema).unwrap());
    let props = Arc::new(WriterProperties::builder().build());
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let cells: Vec<ByteArray> = t.rows.iter().map(|(c, _)| c.bytes().into()).collect();
    let labels: Vec<i64> = t.rows.iter().map(|(_, l)| t.label.value(*l).0).collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>()
        .write_batch(&cells, None, None)
        .unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    match t.label {
        LabelColumn::Int64 | LabelColumn::UInt64 | LabelColumn::Missing => {
            col.typed::<Int64Type>().write_batch(&labels, None, None)
        }
        LabelColumn::Double => {
            let v: Vec<f64> = labels.iter().map(|&l| l as f64).collect();
            col.typed::<DoubleType>().write_batch(&v, None, None)
        }
        _ => {
            let v: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
            col.typed::<Int32Type>().write_batch(&v, None, None)
        }
    }
    .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
    out
}

/// What loading the table must give: the dataset, or a text the error must contain.
fn expected(t: &Table) -> Result<Dataset, String> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut shape = None;
    for (row, (cell, raw)) in t.rows.iter().enumerate() {
        let (_, label) = t.label.value(*raw);
        let (Some(label), false) = (label, matches!(t.image, ImageColumn::Misnamed)) else {
            return Err(format!("row {row} lacks"));
        };
        if !(0..=9).contains(&label) {
            return Err(format!("label {label} at row {row} is outside 0..=9"));
        }
        let Ok(img) = image::load_from_memory_with_format(&cell.bytes(), image::ImageFormat::Png)
        else {
            return Err(format!("image at row {row}: "));
        };
        let img = img.to_luma8();
        let dims = (img.height() as usize, img.width() as usize);
        if *shape.get_or_insert(dims) != dims {
            return Err(format!("image at row {row}: size"));
        }
        pixels.extend_from_slice(img.as_raw());
        labels.push(label as u8);
    }
    let (rows, cols) = shape.unwrap_or((28, 28));
    Ok(Dataset::new(pixels, labels, rows, cols).unwrap())
}

/// `load_parquet` on `bytes` written to `dir`, the panic turned into a failure.
fn load(dir: &Path, bytes: &[u8]) -> Result<Result<Dataset, String>, TestCaseError> {
    let path = dir.join("fuzz.parquet");
    std::fs::write(&path, bytes).unwrap();
    let got = no_panic(|| format!("{} bytes", bytes.len()), || load_parquet(&path))?;
    Ok(got.map_err(|e| {
        let text = e.to_string();
        assert!(
            text.starts_with(&*path.to_string_lossy()),
            "the error does not name the file: {text}"
        );
        text
    }))
}

/// A dataset's own invariants.
fn consistent(d: &Dataset) -> Result<(), TestCaseError> {
    prop_assert_eq!(d.pixels().len(), d.len() * d.rows() * d.cols());
    prop_assert!(d.rows() > 0 && d.cols() > 0);
    prop_assert!(d.labels().iter().all(|&l| l <= 9));
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    /// A format-blind edit (truncation, trailing data, a flip, an insertion, a deletion).
    Bytes(ByteEdit),
    /// A little-endian `u32` (lengths in the footer, offsets) overwritten.
    Word(Index, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        5 => byte_edit(15).prop_map(Mutation::Bytes),
        1 => (
            any::<Index>(),
            prop_oneof![Just(0), Just(u32::MAX), Just(i32::MAX as u32), any::<u32>()]
        )
            .prop_map(|(i, w)| Mutation::Word(i, w)),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Bytes(e) => e.apply(b),
        Mutation::Word(i, w) if b.len() >= 4 => {
            let at = i.index(b.len() - 3);
            b[at..at + 4].copy_from_slice(&w.to_le_bytes());
        }
        _ => {}
    }
}

/// The Hub fixture's test split (pyarrow, snappy, 10 rows), read once.
fn fixture() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/hub-parquet/test-00000-of-00001.parquet");
        std::fs::read(p).unwrap()
    })
}

proptest! {
    #![proptest_config(fuzz_config(300))]

    /// Generated tables load exactly when they should, to their own cells.
    #[test]
    fn fuzz_parquet_generated_tables(t in table()) {
        let dir = tempfile::tempdir().unwrap();
        let got = load(dir.path(), &write_table(&t))?;
        match (got, expected(&t)) {
            (Ok(d), Ok(want)) => {
                consistent(&d)?;
                prop_assert_eq!(d, want);
            }
            (Err(e), Err(want)) => prop_assert!(e.contains(&want), "{} lacks {:?}", e, want),
            (got, want) => prop_assert!(false, "got {:?}, expected {:?}", got, want),
        }
    }

    /// Byte mutations of the pyarrow fixture and of generated tables: an error naming
    /// the file, or a consistent dataset; the fixture itself loads its 10 images.
    #[test]
    fn fuzz_parquet_mutated_files(
        t in prop::option::of(table()),
        mutations in prop::collection::vec(mutation(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = t.as_ref().map(write_table).unwrap_or_else(|| fixture().to_vec());
        for m in &mutations {
            apply(&mut bytes, m);
        }
        match load(dir.path(), &bytes)? {
            Ok(d) => {
                consistent(&d)?;
                if mutations.is_empty() && t.is_none() {
                    prop_assert_eq!(d.len(), 10);
                }
            }
            Err(e) => prop_assert!(!(mutations.is_empty() && t.is_none()), "{}", e),
        }
    }

    /// Arbitrary bytes, bare or framed as parquet (`PAR1`, a footer of that length,
    /// `PAR1`): the footer's metadata decoder sees garbage.
    #[test]
    fn fuzz_parquet_arbitrary_bytes(
        body in prop::collection::vec(any::<u8>(), 0..200),
        framed in any::<bool>(),
        footer in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = if framed {
            let len = footer.unwrap_or(body.len() as u32);
            [b"PAR1".as_slice(), &body, &len.to_le_bytes(), b"PAR1"].concat()
        } else {
            body
        };
        if let Ok(d) = load(dir.path(), &bytes)? {
            consistent(&d)?;
        }
    }
}
/// Regression (#24, found by `fuzz_parquet_generated_tables`): a label column of an
/// unsigned integer type (pyarrow writes numpy `uint8` labels as `INT32 (UINT_8)`) was
/// refused as "lacks an integer `label` column"; each such type is read, and a value
/// above `i64::MAX` is named as itself.
#[test]
fn unsigned_labels_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let rows = |labels: &[i64]| -> Vec<(Cell, i64)> {
        labels
            .iter()
            .map(|&l| (Cell::Png(2, 3, vec![l as u8; 6]), l))
            .collect()
    };
    for label in [
        LabelColumn::UInt8,
        LabelColumn::UInt16,
        LabelColumn::UInt32,
        LabelColumn::UInt64,
    ] {
        let t = Table {
            image: ImageColumn::Struct,
            label,
            rows: rows(&[3, 0, 9]),
        };
        let d = load(dir.path(), &write_table(&t)).unwrap().unwrap();
        assert_eq!(d.labels(), [3, 0, 9], "{label:?}");
        assert_eq!((d.rows(), d.cols()), (2, 3));
    }
    let t = Table {
        image: ImageColumn::Struct,
        label: LabelColumn::UInt64,
        rows: rows(&[1, -1]),
    };
    let err = load(dir.path(), &write_table(&t)).unwrap().unwrap_err();
    assert!(
        err.contains("label 18446744073709551615 at row 1 is outside 0..=9"),
        "{err}"
    );
}

/// Regression (#24, found by `fuzz_parquet_mutated_files`): one flipped byte of the
/// bundled pyarrow file made the parquet crate panic (an unwrapped `None` in the
/// footer, an assertion in its bit reader, indices out of bounds in its RLE decoder, a
/// definition level above the maximum); each is now an error naming the file.
#[test]
fn corrupt_pages_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    for (at, xor) in [
        (14, 0x10),
        (17, 0x01),
        (961, 0xff),
        (2413, 0x10),
        (2946, 0x01),
        (2951, 0x01),
        (2952, 0x10),
    ] {
        let mut bytes = fixture().to_vec();
        bytes[at] ^= xor;
        let err = load(dir.path(), &bytes)
            .unwrap_or_else(|e| panic!("byte {at} ^ {xor:#x}: {e}"))
            .unwrap_err();
        assert!(err.contains("parquet: "), "{err}");
    }
}

/// Regression (#24, found by `fuzz_parquet_arbitrary_bytes`): a 22-byte file whose
/// footer announces 2^31 - 1 schema elements made parquet 57 reserve about 70 GB
/// (apache/arrow-rs#10920) and the process abort; the footer is now checked first.
#[test]
fn footer_lists_longer_than_the_footer_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // FileMetaData { 1: version = 2, 2: schema = list<struct> of 2^31 - 1 } stop
    let footer = [0x15, 0x04, 0x19, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00];
    let bytes = [
        b"PAR1".as_slice(),
        &footer,
        &(footer.len() as u32).to_le_bytes(),
        b"PAR1",
    ]
    .concat();
    let err = load(dir.path(), &bytes).unwrap().unwrap_err();
    assert!(
        err.contains("corrupt footer metadata: a list announces 2147483647 elements"),
        "{err}"
    );
}
