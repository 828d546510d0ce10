//! Parquet tables of the Hub's image datasets: a column `image` (a struct with PNG
//! `bytes`) and a column `label` (an integer), one row per image.

use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};

use crate::dataset::Dataset;
use crate::error::{DataError, Defect, Result};

fn defect(path: &Path, defect: Defect) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        defect,
    }
}

/// PNG bytes and label of one row.
fn row_parts(row: &Row, index: usize) -> std::result::Result<(Vec<u8>, i64), Defect> {
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
            ("label", Field::Long(v)) => label = Some(*v),
            ("label", Field::Int(v)) => label = Some(i64::from(*v)),
            ("label", Field::Short(v)) => label = Some(i64::from(*v)),
            ("label", Field::Byte(v)) => label = Some(i64::from(*v)),
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
