//! Fuzz harness of the IDX reader (issue #24): arbitrary bytes, and valid image and
//! label files put through structured mutations (truncation, byte flips, insertions and
//! deletions, a wrong magic, dimension fields set to huge or inconsistent values,
//! trailing data), raw and gzipped, through `parse_*` and the capped file readers.
//!
//! The properties, beyond "never panics": the streaming reader gives exactly what a
//! plain reference decoder of the whole slice gives (the same images or the same
//! `Defect`, counts included); whatever it accepts re-encodes to the very bytes it read
//! (`count x rows x cols` pixel bytes, labels 0..=9); a file's error names the file;
//! an announced size above the cap is refused, and a capped read allocates at most
//! what the cap allows (measured by a counting allocator).
//!
//! CI runs a bounded number of cases from a fixed seed (`test_support::fuzz_config`):
//! `FUZZ_CASES` raises the count for a long local run,
//! `FUZZ_CASES=100000 cargo test --release -p mnist-data --test fuzz_idx`, and
//! `FUZZ_SEED` changes the seed.

// The counting allocator below is the one piece of unsafe code: a `GlobalAlloc` must be.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use mnist_data::idx::{
    encode_images, encode_labels, gzip, parse_images, parse_labels, read_images_capped,
    read_labels_capped, IdxImages, IMAGES_MAGIC, LABELS_MAGIC,
};
use mnist_data::{DataError, Defect};
use proptest::prelude::*;
use test_support::{byte_edit, fuzz_config, no_panic, ByteEdit};

// ---- A per-thread count of live heap bytes and their peak -------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn count_alloc(n: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(n);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now.wrapping_sub(peak.get()) as isize > 0 {
                peak.set(now)
            }
        });
    });
}

fn count_free(n: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_sub(n)));
}

// SAFETY: every call forwards to `System` unchanged; the counters are plain thread-local
// cells (const-initialised, no destructor), so counting never allocates or re-enters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        count_free(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            count_free(layout.size());
            count_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its value with the most heap bytes it held at once (this thread).
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let value = f();
    (value, PEAK.with(Cell::get).wrapping_sub(start))
}

/// What a capped read may hold beyond the announced data: the buffered reader, the gzip
/// decoder's state and window, the header and an error message.
const READER_OVERHEAD: usize = 256 << 10;

// ---- A reference decoder: the whole slice at once, obviously right ------------------

const IMAGES_WHAT: &str = "u8 images, 3 dimensions";
const LABELS_WHAT: &str = "u8 labels, 1 dimension";
/// How far the reader counts trailing bytes (one, then up to 1 MiB more).
const TAIL_COUNT: u64 = 1 + (1 << 20);

fn reference(bytes: &[u8], magic: u32, cap: Option<u64>) -> Result<(Vec<u32>, Vec<u8>), Defect> {
    let what = if magic == IMAGES_MAGIC {
        IMAGES_WHAT
    } else {
        LABELS_WHAT
    };
    let header_len = 4 + 4 * (magic & 0xff) as usize;
    let len = bytes.len() as u64;
    if bytes.len() < 4 {
        return Err(Defect::Truncated {
            expected: header_len as u64,
            found: len,
        });
    }
    let found = u32::from_be_bytes(bytes[..4].try_into().unwrap());
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
            found: len,
        });
    }
    let dims: Vec<u32> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
        .collect();
    // The announced size, header included, must be a number at all.
    let Some(expected) = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .and_then(|data| data.checked_add(header_len as u64))
    else {
        return Err(Defect::BadDimensions { dims });
    };
    if let Some(cap) = cap {
        if expected > cap {
            return Err(Defect::TooLarge {
                announced: expected,
                cap,
            });
        }
    }
    if len < expected {
        return Err(Defect::Truncated {
            expected,
            found: len,
        });
    }
    if len > expected {
        return Err(Defect::TrailingBytes {
            expected,
            extra: (len - expected).min(TAIL_COUNT),
        });
    }
    Ok((dims, bytes[header_len..].to_vec()))
}

fn reference_images(bytes: &[u8], cap: Option<u64>) -> Result<IdxImages, Defect> {
    let (dims, pixels) = reference(bytes, IMAGES_MAGIC, cap)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(Defect::BadDimensions { dims });
    }
    Ok(IdxImages {
        count: dims[0] as usize,
        rows: dims[1] as usize,
        cols: dims[2] as usize,
        pixels,
    })
}

fn reference_labels(bytes: &[u8], cap: Option<u64>) -> Result<Vec<u8>, Defect> {
    let (_, labels) = reference(bytes, LABELS_MAGIC, cap)?;
    match labels.iter().position(|&l| l > 9) {
        Some(index) => Err(Defect::LabelOutOfRange {
            index,
            label: labels[index],
        }),
        None => Ok(labels),
    }
}

// ---- Inputs ------------------------------------------------------------------------

/// A valid file: images (`count x rows x cols` random pixels) or labels (0..=9).
fn valid_file() -> impl Strategy<Value = Vec<u8>> {
    let images = (0usize..5, 1usize..5, 1usize..5).prop_flat_map(|(n, r, c)| {
        prop::collection::vec(any::<u8>(), n * r * c)
            .prop_map(move |pixels| encode_images(n, r, c, &pixels))
    });
    let labels = prop::collection::vec(0u8..10, 0..12).prop_map(|l| encode_labels(&l));
    prop_oneof![images, labels]
}

/// Dimension triples whose product is `u64::MAX`: adding the header's length to it
/// overflows.
const OVERFLOWING_DIMS: [[u32; 3]; 2] = [
    [u32::MAX, 641, 6_700_417],
    [255, 257 * 6_700_417, 65_537 * 641],
];

fn dimension() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..8,
        any::<u32>(),
        Just(u32::MAX),
        prop::sample::select(vec![641, 6_700_417, 65_535, 65_537, 1 << 16, 1 << 31]),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    /// A format-blind edit (truncation, trailing data, a flip, an insertion, a deletion).
    Bytes(ByteEdit),
    /// The magic number replaced by another.
    Magic(u32),
    /// Dimension field `i` (counting from 0) set to a value.
    Dimension(usize, u32),
    /// All three image dimensions set to a product that overflows with the header.
    Overflow(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        5 => byte_edit(40).prop_map(Mutation::Bytes),
        1 => prop_oneof![
            any::<u32>(),
            Just(IMAGES_MAGIC),
            Just(LABELS_MAGIC),
            Just(0x0000_0802),
            Just(0x0000_0c03),
            Just(0x0803_0000),
        ]
        .prop_map(Mutation::Magic),
        1 => (0usize..3, dimension()).prop_map(|(i, d)| Mutation::Dimension(i, d)),
        1 => (0usize..OVERFLOWING_DIMS.len()).prop_map(Mutation::Overflow),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let set_u32 = |bytes: &mut Vec<u8>, at: usize, v: u32| {
        if bytes.len() < at + 4 {
            bytes.resize(at + 4, 0);
        }
        bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
    };
    match m {
        Mutation::Bytes(e) => e.apply(bytes),
        Mutation::Magic(v) => set_u32(bytes, 0, *v),
        Mutation::Dimension(i, v) => set_u32(bytes, 4 + 4 * i, *v),
        Mutation::Overflow(k) => {
            for (i, d) in OVERFLOWING_DIMS[*k].iter().enumerate() {
                set_u32(bytes, 4 + 4 * i, *d);
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(64).map(|b| format!("{b:02x}")).collect();
    format!(
        "{} bytes: {shown}{}",
        bytes.len(),
        if bytes.len() > 64 { "..." } else { "" }
    )
}

/// Both parsers on `input` (which decodes to `plain`), checked against the reference.
fn check_parsers(input: &[u8], plain: &[u8]) -> Result<(), TestCaseError> {
    let images = no_panic(|| hex(input), || parse_images(input))?;
    let labels = no_panic(|| hex(input), || parse_labels(input))?;
    // A plain file that itself starts like gzip is gunzipped: no reference for that.
    if input == plain && plain.starts_with(&[0x1f, 0x8b]) {
        prop_assert!(images.is_err() || labels.is_err());
        return Ok(());
    }
    prop_assert_eq!(&images, &reference_images(plain, None), "{}", hex(input));
    prop_assert_eq!(&labels, &reference_labels(plain, None), "{}", hex(input));
    if let Ok(img) = &images {
        prop_assert_eq!(img.pixels.len(), img.count * img.rows * img.cols);
        // Accepted means: exactly these bytes, nothing left over.
        prop_assert_eq!(
            encode_images(img.count, img.rows, img.cols, &img.pixels),
            plain
        );
    }
    if let Ok(l) = &labels {
        prop_assert!(l.iter().all(|&x| x <= 9));
        prop_assert_eq!(encode_labels(l), plain);
    }
    Ok(())
}

/// The defect of a file's error, checked to be a format error naming the file.
fn format_defect<T>(path: &Path, r: Result<T, DataError>) -> Result<T, Defect> {
    r.map_err(|e| {
        let text = e.to_string();
        match e {
            DataError::Format { path: p, defect } if p == path => {
                assert!(text.starts_with(&*path.to_string_lossy()), "{text}");
                defect
            }
            other => panic!("not a format error of {}: {other}", path.display()),
        }
    })
}

/// The capped file readers on `input` (decoding to `plain`): the same answer as the
/// reference with the cap, the file named in every error, and the heap held within
/// the cap.
fn check_files(dir: &Path, input: &[u8], plain: &[u8], cap: u64) -> Result<(), TestCaseError> {
    if input == plain && plain.starts_with(&[0x1f, 0x8b]) {
        return Ok(());
    }
    let path = dir.join("fuzz-idx-ubyte");
    std::fs::write(&path, input).unwrap();
    let (images, held) =
        peak_heap(|| no_panic(|| hex(input), || read_images_capped(&path, Some(cap))));
    let images = images?;
    prop_assert!(
        held as u64 <= cap + READER_OVERHEAD as u64,
        "held {} bytes under a cap of {}: {}",
        held,
        cap,
        hex(input)
    );
    prop_assert_eq!(
        format_defect(&path, images),
        reference_images(plain, Some(cap))
    );
    let (labels, held) =
        peak_heap(|| no_panic(|| hex(input), || read_labels_capped(&path, Some(cap))));
    let labels = labels?;
    prop_assert!(held as u64 <= cap + READER_OVERHEAD as u64);
    prop_assert_eq!(
        format_defect(&path, labels),
        reference_labels(plain, Some(cap))
    );
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(2000))]

    /// Arbitrary bytes, raw or gzipped, some starting with a right magic number.
    #[test]
    fn fuzz_idx_arbitrary_bytes(
        magic in prop::option::of(prop::sample::select(vec![IMAGES_MAGIC, LABELS_MAGIC])),
        body in prop::collection::vec(any::<u8>(), 0..64),
        compress in any::<bool>(),
    ) {
        let mut plain = magic.map(|m| m.to_be_bytes().to_vec()).unwrap_or_default();
        plain.extend(body);
        let input = if compress { gzip(&plain) } else { plain.clone() };
        check_parsers(&input, &plain)?;
    }
}

proptest! {
    #![proptest_config(fuzz_config(1500))]

    /// Valid files mutated (0 to 3 mutations), raw or gzipped: the reference's answer,
    /// and an unmutated file read back exactly.
    #[test]
    fn fuzz_idx_mutated_files(
        valid in valid_file(),
        mutations in prop::collection::vec(mutation(), 0..4),
        compress in any::<bool>(),
    ) {
        let mut plain = valid.clone();
        for m in &mutations {
            apply(&mut plain, m);
        }
        let input = if compress { gzip(&plain) } else { plain.clone() };
        check_parsers(&input, &plain)?;
        if mutations.is_empty() {
            let ok = if valid[3] == 3 {
                parse_images(&input).is_ok()
            } else {
                parse_labels(&input).is_ok()
            };
            prop_assert!(ok, "a valid file was refused: {}", hex(&valid));
        }
    }

    /// Corrupt gzip streams (bytes of the compressed file mutated): an error, or a
    /// file consistent with its header.
    #[test]
    fn fuzz_idx_corrupt_gzip(
        valid in valid_file(),
        edits in prop::collection::vec(byte_edit(40), 1..3),
    ) {
        let mut input = gzip(&valid);
        for e in &edits {
            e.apply(&mut input);
        }
        let images = no_panic(|| hex(&input), || parse_images(&input))?;
        let labels = no_panic(|| hex(&input), || parse_labels(&input))?;
        if let Ok(img) = images {
            prop_assert_eq!(img.pixels.len(), img.count * img.rows * img.cols);
            prop_assert!(img.rows > 0 && img.cols > 0);
        }
        if let Ok(l) = labels {
            prop_assert!(l.iter().all(|&x| x <= 9));
        }
    }
}

proptest! {
    #![proptest_config(fuzz_config(400))]

    /// The capped file readers on mutated files, raw or gzipped, under caps around the
    /// file's size: the reference's answer with the cap, the file named, the heap bounded.
    #[test]
    fn fuzz_idx_capped_files(
        valid in valid_file(),
        mutations in prop::collection::vec(mutation(), 0..3),
        compress in any::<bool>(),
        cap in prop_oneof![0u64..200, any::<u64>()],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut plain = valid;
        for m in &mutations {
            apply(&mut plain, m);
        }
        let input = if compress { gzip(&plain) } else { plain.clone() };
        check_files(dir.path(), &input, &plain, cap)?;
    }
}

proptest! {
    #![proptest_config(fuzz_config(24))]

    /// A header announcing more than the cap, followed by a lot of data that gzip
    /// makes small: refused before any of it is read into memory.
    #[test]
    fn fuzz_idx_liars_stay_within_the_cap(
        dims in prop_oneof![
            prop::sample::select(OVERFLOWING_DIMS.to_vec()),
            (dimension(), dimension(), dimension()).prop_map(|(a, b, c)| [a, b, c]),
        ],
        cap in 16u64..(64 << 10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut plain = IMAGES_MAGIC.to_be_bytes().to_vec();
        for d in dims {
            plain.extend_from_slice(&d.to_be_bytes());
        }
        plain.resize(plain.len() + (1 << 20), 0);
        check_files(dir.path(), &gzip(&plain), &plain, cap)?;
    }
}
