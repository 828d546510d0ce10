//! Parquet tables of the Hub's image datasets: a column `image` (a struct with PNG
//! `bytes`) and a column `label` (an integer), one row per image.

use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};

use crate::dataset::Dataset;
use crate::error::{DataError, Defect, Result};
use crate::footer::check_footer;

fn defect(path: &Path, defect: Defect) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        defect,
    }
}

/// PNG bytes and label of one row. The label may be any integer type, signed or not
/// (pyarrow writes a `uint8` column as `UINT_8`).
fn row_parts(row: &Row, index: usize) -> std::result::Result<(Vec<u8>, i128), Defect> {
    let mut png = None;
    let mut label = None;
    for (name, field) in row.get_column_iter() {
        match (name.as_str(), field) {
            ("image", Field::Group(group)) => {
                for (inner, value) in group.get_column_iter() {
                    if let ("bytes", Field::Bytes(b)) = (inner.as_str(), value) {
                        png = Some(b.data().to_vec());
                    }
                }
            }
            ("image", Field::Bytes(b)) => png = Some(b.data().to_vec()),
            ("label", Field::Long(v)) => label = Some(i128::from(*v)),
            ("label", Field::Int(v)) => label = Some(i128::from(*v)),
            ("label", Field::Short(v)) => label = Some(i128::from(*v)),
            ("label", Field::Byte(v)) => label = Some(i128::from(*v)),
            ("label", Field::ULong(v)) => label = Some(i128::from(*v)),
            ("label", Field::UInt(v)) => label = Some(i128::from(*v)),
            ("label", Field::UShort(v)) => label = Some(i128::from(*v)),
            ("label", Field::UByte(v)) => label = Some(i128::from(*v)),
            _ => {}
        }
    }
    match (png, label) {
        (Some(p), Some(l)) => Ok((p, l)),
        _ => Err(Defect::Parquet(format!(
            "row {index} lacks an `image` (PNG bytes) or an integer `label` column"
        ))),
    }
}

/// Reads a parquet table of PNG images and labels into a [`Dataset`].
pub fn load_parquet(path: &Path) -> Result<Dataset> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // The parquet crate panics on some corrupt pages (an assertion in its bit reader,
    // indices out of bounds in its RLE decoder, a definition level above the maximum:
    // one flipped byte of a real file suffices, found by `fuzz_parquet`, #24). That is a
    // defect of the file: it becomes this file's error. Nothing the closure built
    // survives a panic, so no broken state is observed.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_table(path, file)))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(defect(
                path,
                Defect::Parquet(format!("corrupt data, the reader gave up: {what}")),
            ))
        })
}

/// Checks the footer's Thrift lengths ([`check_footer`]) before the parquet crate
/// decodes them; a file without a plain `PAR1` footer is left to the parquet crate to
/// refuse.
fn check_footer_of(file: &mut std::fs::File) -> std::result::Result<(), Defect> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e: std::io::Error| Defect::Parquet(e.to_string());
    let len = file.metadata().map_err(io)?.len();
    if len < 12 {
        return Ok(());
    }
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start(len - 8)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if &tail[4..] != b"PAR1" || footer_len + 12 > len {
        return Ok(());
    }
    let mut footer = vec![0u8; footer_len as usize];
    file.seek(SeekFrom::Start(len - 8 - footer_len))
        .map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    check_footer(&footer).map_err(|m| Defect::Parquet(format!("corrupt footer metadata: {m}")))
}

fn read_table(path: &Path, mut file: std::fs::File) -> Result<Dataset> {
    check_footer_of(&mut file).map_err(|d| defect(path, d))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| defect(path, Defect::Parquet(e.to_string())))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| defect(path, Defect::Parquet(e.to_string())))?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut shape = None;
    for (index, row) in rows.enumerate() {
        let row = row.map_err(|e| defect(path, Defect::Parquet(e.to_string())))?;
        let (png, label) = row_parts(&row, index).map_err(|d| defect(path, d))?;
        let label = u8::try_from(label)
            .ok()
            .filter(|&l| l <= 9)
            .ok_or_else(|| {
                defect(
                    path,
                    Defect::Parquet(format!("label {label} at row {index} is outside 0..=9")),
                )
            })?;
        let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
            .map_err(|e| {
                defect(
                    path,
                    Defect::Image {
                        row: index,
                        message: e.to_string(),
                    },
                )
            })?
            .to_luma8();
        let dims = (image.height() as usize, image.width() as usize);
        if *shape.get_or_insert(dims) != dims {
            return Err(defect(
                path,
                Defect::Image {
                    row: index,
                    message: format!("size {dims:?} differs from the first image's {shape:?}"),
                },
            ));
        }
        pixels.extend_from_slice(image.as_raw());
        labels.push(label);
    }
    let (rows, cols) = shape.unwrap_or((28, 28));
    Dataset::new(pixels, labels, rows, cols)
}
