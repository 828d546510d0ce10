//! The IDX format of MNIST: a big-endian header (magic, dimensions) then raw `u8` data,
//! optionally gzip-compressed (detected by the gzip magic bytes, not the file name).

use std::io::{BufRead, BufReader, Read};
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

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, Defect> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Defect::Gzip(e.to_string())),
        }
    }
    Ok(n)
}

/// The stream, gunzipped when it starts with the gzip magic `1f 8b` (detected by the
/// bytes, not the file name).
fn decompressed<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>, Defect> {
    let mut buffered = BufReader::new(reader);
    let head = buffered
        .fill_buf()
        .map_err(|e| Defect::Gzip(e.to_string()))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Decodes one IDX stream (raw or gzip) in a single pass: the header (magic, then
/// `ndims` dimensions), then exactly the data it announces, then one more byte to detect
/// trailing data. Memory grows with the data actually read, never beyond what the
/// header announces, and an announced size above `max_bytes` is refused before any data
/// is read.
fn decode_stream(
    reader: impl Read,
    magic: u32,
    what: &'static str,
    max_bytes: Option<u64>,
) -> Result<(Vec<u32>, Vec<u8>), Defect> {
    let mut reader = decompressed(reader)?;
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let mut header = vec![0u8; header_len];
    let got = read_up_to(&mut reader, &mut header[..4])?;
    if got < 4 {
        return Err(Defect::Truncated {
            expected: header_len as u64,
            found: got as u64,
        });
    }
    let found = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if found != magic {
        return Err(Defect::WrongMagic {
            expected: magic,
            found,
            what,
        });
    }
    let got = 4 + read_up_to(&mut reader, &mut header[4..])?;
    if got < header_len {
        return Err(Defect::Truncated {
            expected: header_len as u64,
            found: got as u64,
        });
    }
    let dims: Vec<u32> = header[4..]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    // The announced size must be a number, header included: dimensions whose product
    // is near 2^64 would otherwise wrap to a few bytes and slip under any cap (#24).
    let (data_len, expected) = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .and_then(|data| Some((data, data.checked_add(header_len as u64)?)))
        .ok_or_else(|| Defect::BadDimensions { dims: dims.clone() })?;
    if let Some(cap) = max_bytes {
        if expected > cap {
            return Err(Defect::TooLarge {
                announced: expected,
                cap,
            });
        }
    }
    // Reserve the announced size when the allocator grants it (virtual memory: pages
    // become resident only as data arrives, and no doubling copies the buffer); grow
    // as the data comes otherwise.
    let mut data = Vec::new();
    if let Ok(len) = usize::try_from(data_len) {
        let _ = data.try_reserve_exact(len);
    }
    (&mut reader)
        .take(data_len)
        .read_to_end(&mut data)
        .map_err(|e| Defect::Gzip(e.to_string()))?;
    if (data.len() as u64) < data_len {
        return Err(Defect::Truncated {
            expected,
            found: header_len as u64 + data.len() as u64,
        });
    }
    let mut one = [0u8; 1];
    if read_up_to(&mut reader, &mut one)? > 0 {
        // At least one byte more; count the rest up to a bound, so a long tail costs
        // no memory.
        let rest = std::io::copy(&mut (&mut reader).take(1 << 20), &mut std::io::sink())
            .map_err(|e| Defect::Gzip(e.to_string()))?;
        return Err(Defect::TrailingBytes {
            expected,
            extra: 1 + rest,
        });
    }
    Ok((dims, data))
}

fn images_from(dims: Vec<u32>, pixels: Vec<u8>) -> Result<IdxImages, Defect> {
    let (count, rows, cols) = (dims[0] as usize, dims[1] as usize, dims[2] as usize);
    if rows == 0 || cols == 0 {
        return Err(Defect::BadDimensions { dims });
    }
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels,
    })
}

fn labels_from(data: Vec<u8>) -> Result<Vec<u8>, Defect> {
    if let Some((index, &label)) = data.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(Defect::LabelOutOfRange { index, label });
    }
    Ok(data)
}

const IMAGES_WHAT: &str = "u8 images, 3 dimensions";
const LABELS_WHAT: &str = "u8 labels, 1 dimension";

/// Parses IDX image bytes (raw or gzip). Any `rows x cols` is accepted, zero rows or
/// columns are not.
pub fn parse_images(bytes: &[u8]) -> Result<IdxImages, Defect> {
    let (dims, data) = decode_stream(bytes, IMAGES_MAGIC, IMAGES_WHAT, None)?;
    images_from(dims, data)
}

/// Parses IDX label bytes (raw or gzip); every label must be a digit class 0..=9.
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>, Defect> {
    let (_, data) = decode_stream(bytes, LABELS_MAGIC, LABELS_WHAT, None)?;
    labels_from(data)
}

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|source| {
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

fn named<T>(path: &Path, r: Result<T, Defect>) -> Result<T> {
    r.map_err(|defect| DataError::Format {
        path: path.to_path_buf(),
        defect,
    })
}

/// Reads an IDX image file (raw or gzip), streaming: memory is bounded by the size the
/// header announces, and by `max_bytes` (header included) when given.
pub fn read_images_capped(path: &Path, max_bytes: Option<u64>) -> Result<IdxImages> {
    let file = open(path)?;
    named(
        path,
        decode_stream(file, IMAGES_MAGIC, IMAGES_WHAT, max_bytes)
            .and_then(|(dims, data)| images_from(dims, data)),
    )
}

/// Reads an IDX label file (raw or gzip), streaming, with an optional size cap.
pub fn read_labels_capped(path: &Path, max_bytes: Option<u64>) -> Result<Vec<u8>> {
    let file = open(path)?;
    named(
        path,
        decode_stream(file, LABELS_MAGIC, LABELS_WHAT, max_bytes)
            .and_then(|(_, data)| labels_from(data)),
    )
}

/// Reads an IDX image file (raw or gzip), streaming, without a size cap.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    read_images_capped(path, None)
}

/// Reads an IDX label file (raw or gzip), streaming, without a size cap.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    read_labels_capped(path, None)
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

    /// A gzip of a few kilobytes whose header announces 3 million images: refused as
    /// truncated after reading what is there (memory grows with the data read, not with
    /// the announcement), and refused before reading any data under a cap.
    #[test]
    fn announced_sizes_are_not_trusted() {
        let mut liar = encode_images(3_000_000, 28, 28, &[]);
        liar.extend(std::iter::repeat_n(0u8, 1000 * 784));
        let gz = gzip(&liar);
        assert!(gz.len() < 10_000, "{}", gz.len());
        assert_eq!(
            parse_images(&gz),
            Err(Defect::Truncated {
                expected: 16 + 3_000_000 * 784,
                found: 16 + 1000 * 784
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liar-idx3-ubyte.gz");
        std::fs::write(&path, &gz).unwrap();
        let err = read_images_capped(&path, Some(100 << 20))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("liar-idx3-ubyte.gz")
                && err.contains("2352000016")
                && err.contains("104857600"),
            "{err}"
        );
        // An honest file under the cap reads; the cap counts the header too.
        let (img, _) = sample();
        std::fs::write(&path, gzip(&img)).unwrap();
        assert_eq!(read_images_capped(&path, Some(16 + 24)).unwrap().count, 2);
        assert!(read_images_capped(&path, Some(16 + 23)).is_err());
        // A long tail is reported, counted up to a bound.
        let mut tail = img.clone();
        tail.extend(std::iter::repeat_n(1u8, 5000));
        assert_eq!(
            parse_images(&gzip(&tail)),
            Err(Defect::TrailingBytes {
                expected: 40,
                extra: 5000
            })
        );
    }

    /// Announcing terabytes costs nothing: the data is read as it comes.
    #[test]
    fn huge_announcements_do_not_allocate() {
        let img = encode_images(u32::MAX as usize, 1000, 1000, &[1, 2, 3]);
        assert!(matches!(
            parse_images(&img),
            Err(Defect::Truncated { found: 19, .. })
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

    /// Regression (#24, found by the `fuzz_idx` harness): dimensions whose product is
    /// `u64::MAX` (4294967295 x 641 x 6700417) made the announced size, header added,
    /// wrap to 15 bytes; a capped read then passed the cap and read every byte the file
    /// held (a panic on overflow in a debug build).
    #[test]
    fn announced_size_overflowing_with_the_header_is_refused() {
        let dims = [u32::MAX, 641, 6_700_417];
        assert_eq!(
            dims.iter().map(|&d| u64::from(d)).product::<u64>(),
            u64::MAX
        );
        let mut liar = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in dims {
            liar.extend_from_slice(&d.to_be_bytes());
        }
        liar.resize(16 + (1 << 20), 0);
        assert_eq!(
            parse_images(&liar),
            Err(Defect::BadDimensions {
                dims: dims.to_vec()
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrap-idx3-ubyte.gz");
        std::fs::write(&path, gzip(&liar)).unwrap();
        let err = read_images_capped(&path, Some(1 << 10)).unwrap_err();
        assert!(
            matches!(
                &err,
                DataError::Format {
                    defect: Defect::BadDimensions { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    proptest! {
        #![proptest_config(test_support::seeded(512))]
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
