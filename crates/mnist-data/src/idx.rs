//! The IDX format of MNIST: a big-endian header (magic, dimensions) then raw `u8` data,
//! optionally gzip-compressed (detected by the gzip magic bytes, not the file name).

use std::io::Read;
use std::path::Path;

use crate::error::{DataError, Defect, Result};

/// Magic number of an IDX file of `u8` images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images decoded from an IDX file: `count` images of `rows x cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixel bytes.
    pub pixels: Vec<u8>,
}

/// Returns the bytes, gunzipped when they start with the gzip magic `1f 8b`.
pub fn maybe_gunzip(bytes: &[u8]) -> Result<Vec<u8>, Defect> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| Defect::Gzip(e.to_string()))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the header (magic then `ndims` dimensions) and checks the data length.
/// Returns the dimensions and the data bytes.
fn parse_header<'a>(
    bytes: &'a [u8],
    magic: u32,
    what: &'static str,
) -> Result<(Vec<u32>, &'a [u8]), Defect> {
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let found = be_u32(bytes, 0).ok_or(Defect::Truncated {
        expected: header_len as u64,
        found: bytes.len() as u64,
    })?;
    if found != magic {
        return Err(Defect::WrongMagic {
            expected: magic,
            found,
            what,
        });
    }
    if bytes.len() < header_len {
        return Err(Defect::Truncated {
            expected: header_len as u64,
            found: bytes.len() as u64,
        });
    }
    let dims: Vec<u32> = (0..ndims)
        .map(|i| be_u32(bytes, 4 + 4 * i).unwrap_or(0))
        .collect();
    let data_len = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .ok_or_else(|| Defect::BadDimensions { dims: dims.clone() })?;
    let expected = header_len as u64 + data_len;
    let have = bytes.len() as u64;
    if have < expected {
        return Err(Defect::Truncated {
            expected,
            found: have,
        });
    }
    if have > expected {
        return Err(Defect::TrailingBytes {
            expected,
            extra: have - expected,
        });
    }
    Ok((dims, &bytes[header_len..]))
}

/// Parses (already gunzipped or raw) IDX image bytes. Any `rows x cols` is accepted,
/// zero rows or columns are not.
pub fn parse_images(bytes: &[u8]) -> Result<IdxImages, Defect> {
    let bytes = maybe_gunzip(bytes)?;
    let (dims, data) = parse_header(&bytes, IMAGES_MAGIC, "u8 images, 3 dimensions")?;
    let (count, rows, cols) = (dims[0] as usize, dims[1] as usize, dims[2] as usize);
    if rows == 0 || cols == 0 {
        return Err(Defect::BadDimensions { dims });
    }
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: data.to_vec(),
    })
}

/// Parses IDX label bytes; every label must be a digit class 0..=9.
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>, Defect> {
    let bytes = maybe_gunzip(bytes)?;
    let (_, data) = parse_header(&bytes, LABELS_MAGIC, "u8 labels, 1 dimension")?;
    if let Some((index, &label)) = data.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(Defect::LabelOutOfRange { index, label });
    }
    Ok(data.to_vec())
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing {
                path: path.to_path_buf(),
                hint: None,
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Reads an IDX image file (raw or gzip).
pub fn read_images(path: &Path) -> Result<IdxImages> {
    parse_images(&read_file(path)?).map_err(|defect| DataError::Format {
        path: path.to_path_buf(),
        defect,
    })
}

/// Reads an IDX label file (raw or gzip).
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    parse_labels(&read_file(path)?).map_err(|defect| DataError::Format {
        path: path.to_path_buf(),
        defect,
    })
}

/// Encodes images as IDX bytes (uncompressed): the inverse of [`parse_images`].
pub fn encode_images(count: usize, rows: usize, cols: usize, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pixels.len());
    out.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    for d in [count, rows, cols] {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Encodes labels as IDX bytes (uncompressed): the inverse of [`parse_labels`].
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// Gzip-compresses bytes (deterministic: no timestamp or file name in the header).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        (encode_images(2, 3, 4, &pixels), encode_labels(&[7, 2]))
    }

    #[test]
    fn round_trip_raw_and_gzip() {
        let (img, lab) = sample();
        for (i, l) in [(img.clone(), lab.clone()), (gzip(&img), gzip(&lab))] {
            let parsed = parse_images(&i).unwrap();
            assert_eq!((parsed.count, parsed.rows, parsed.cols), (2, 3, 4));
            assert_eq!(parsed.pixels[5], 5);
            assert_eq!(parse_labels(&l).unwrap(), vec![7, 2]);
        }
    }

    #[test]
    fn defects_are_named() {
        let (img, lab) = sample();
        assert!(matches!(parse_images(&lab), Err(Defect::WrongMagic { .. })));
        assert!(matches!(
            parse_images(&img[..img.len() - 1]),
            Err(Defect::Truncated { .. })
        ));
        assert!(matches!(
            parse_images(&img[..10]),
            Err(Defect::Truncated { .. })
        ));
        let mut longer = img.clone();
        longer.push(0);
        assert!(matches!(
            parse_images(&longer),
            Err(Defect::TrailingBytes { extra: 1, .. })
        ));
        assert_eq!(
            parse_labels(&encode_labels(&[1, 10])),
            Err(Defect::LabelOutOfRange {
                index: 1,
                label: 10
            })
        );
        let gz = gzip(&img);
        assert!(matches!(
            parse_images(&gz[..gz.len() / 2]),
            Err(Defect::Gzip(_))
        ));
        assert!(matches!(
            parse_images(&encode_images(1, 0, 4, &[])),
            Err(Defect::BadDimensions { .. })
        ));
    }

    #[test]
    fn huge_dimensions_do_not_allocate() {
        let mut img = IMAGES_MAGIC.to_be_bytes().to_vec();
        for _ in 0..3 {
            img.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        assert!(parse_images(&img).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_images(&bytes);
            let _ = parse_labels(&bytes);
        }

        #[test]
        fn mutated_files_never_panic(
            pos in any::<prop::sample::Index>(),
            value in any::<u8>(),
            cut in any::<prop::sample::Index>(),
            compress in any::<bool>(),
        ) {
            let (img, lab) = sample();
            for bytes in [img, lab] {
                let mut bytes = if compress { gzip(&bytes) } else { bytes };
                let p = pos.index(bytes.len());
                bytes[p] = value;
                bytes.truncate(cut.index(bytes.len() + 1));
                let _ = parse_images(&bytes);
                let _ = parse_labels(&bytes);
            }
        }
    }
}
