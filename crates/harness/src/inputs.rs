//! What an evaluation's results depend on besides its configuration: the bytes of the
//! four checkpoints and the test set, as one sha256. Cached stages are reused only when
//! it matches, so a rerun with retrained weights or other data recomputes them.

use std::fmt;
use std::path::Path;

use mnist_data::Dataset;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{HarnessError, Result};
use crate::weights::WEIGHT_FILES;

/// Separates this hash from any other sha256 of the same bytes; bump it when the
/// framing below changes, so old caches stop matching.
const DOMAIN: &[u8] = b"harness input fingerprint v1\0";

/// Digits of [`InputFingerprint::short`].
pub const SHORT_DIGITS: usize = 12;

/// sha256 (64 lower-case hex digits) over the checkpoints, in [`WEIGHT_FILES`] order,
/// and the test set evaluated (its size, pixels and labels). Each part is framed by its
/// length, so no two different inputs share the byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InputFingerprint(String);

impl InputFingerprint {
    /// The fingerprint of checkpoint bytes, one per entry of [`WEIGHT_FILES`] in its
    /// order, and of `test`.
    pub fn new(checkpoints: [&[u8]; 5], test: &Dataset) -> Self {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        for (name, bytes) in WEIGHT_FILES.iter().zip(checkpoints) {
            framed(&mut h, name.as_bytes());
            framed(&mut h, bytes);
        }
        for n in [test.len(), test.rows(), test.cols()] {
            h.update((n as u64).to_le_bytes());
        }
        framed(&mut h, test.pixels());
        framed(&mut h, test.labels());
        Self(hex(&h.finalize()))
    }

    /// Reads the five [`WEIGHT_FILES`] of `dir` (the files `load_models` loads) and
    /// fingerprints them with `test`; an unreadable file is an error naming it.
    pub fn of_weights_dir(dir: &Path, test: &Dataset) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| HarnessError::Io { path, source })
        };
        let [a, b, c, d, e] = WEIGHT_FILES;
        let files = [read(a)?, read(b)?, read(c)?, read(d)?, read(e)?];
        Ok(Self::new(
            [&files[0], &files[1], &files[2], &files[3], &files[4]],
            test,
        ))
    }
}

/// `sha256` (all of the digest), `short` (its first [`SHORT_DIGITS`] characters, for
/// reports and messages) and `Display` (the short form) of a newtype over a hex digest.
macro_rules! hex_digest {
    ($t:ty, $all:literal) => {
        impl $t {
            #[doc = $all]
            pub fn sha256(&self) -> &str {
                &self.0
            }

            /// The first [`SHORT_DIGITS`] characters, for reports and messages.
            pub fn short(&self) -> &str {
                self.0.get(..SHORT_DIGITS).unwrap_or(&self.0)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.short())
            }
        }
    };
}

hex_digest!(InputFingerprint, "All 64 hex digits.");
hex_digest!(
    ProgramIdentity,
    "All of it (64 hex digits, or `unknown-<version>`)."
);

fn framed(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The running program: the sha256 of its executable's bytes. Every cache a run keeps
/// (the stage cache, the units files, a shard's manifest, the Type I checkpoints) is
/// keyed by it as well as by the configuration and the inputs, so results computed by
/// another build of the program, which may compute them differently, are recomputed
/// instead of mixed with this build's. A rebuild of the same sources with the same
/// toolchain gives the same bytes; any change to the code, the dependencies, the
/// compiler or its flags gives others.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProgramIdentity(String);

/// Separates the program's hash from any other sha256 of the same bytes.
const PROGRAM_DOMAIN: &[u8] = b"harness program identity v1\0";

impl ProgramIdentity {
    /// The identity of the program whose executable is `path` (read in 1 MiB pieces);
    /// an unreadable file is an error naming it.
    pub fn of_executable(path: &Path) -> Result<Self> {
        use std::io::Read;
        let io = |source| HarnessError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut h = Sha256::new();
        h.update(PROGRAM_DOMAIN);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(Self(hex(&h.finalize())))
    }

    /// An identity from its 64 hex digits, as a cache file records it.
    pub fn from_sha256(sha256: &str) -> Self {
        Self(sha256.to_string())
    }

    /// The running program (computed once a process). Its executable is read through
    /// `/proc/self/exe` where there is one, which still reads a binary replaced on disk
    /// while it runs (a rebuild during a run), else through `std::env::current_exe`.
    /// Where neither can be read the identity is `unknown-<version>`: then builds of the
    /// same version share caches, as every build did before the identity was recorded.
    pub fn running() -> &'static Self {
        static RUNNING: std::sync::OnceLock<ProgramIdentity> = std::sync::OnceLock::new();
        RUNNING.get_or_init(|| {
            Self::of_executable(Path::new("/proc/self/exe"))
                .ok()
                .or_else(|| Self::of_executable(&std::env::current_exe().ok()?).ok())
                .unwrap_or_else(|| Self(format!("unknown-{}", env!("CARGO_PKG_VERSION"))))
        })
    }
}

/// Where the data and weights came from, for the report, and their fingerprint, which
/// also keys the cached stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The data source.
    pub data: String,
    /// The weights' source.
    pub weights: String,
    /// The checkpoints the models were loaded from and the test set passed to
    /// [`crate::run_evaluation`] (e.g. [`InputFingerprint::of_weights_dir`]): a stage cached
    /// under other inputs is recomputed.
    pub inputs: InputFingerprint,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pixel: u8, label: u8) -> Dataset {
        Dataset::new(vec![0, pixel, 2, 3, 4, 5, 6, 7], vec![label, 1], 2, 2).unwrap()
    }

    #[test]
    fn every_input_byte_changes_the_fingerprint() {
        let w: [&[u8]; 5] = [b"g", b"m", b"o", b"s", b"r"];
        let base = InputFingerprint::new(w, &data(1, 0));
        assert_eq!(base.sha256().len(), 64);
        assert!(base.sha256().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(base.short(), &base.sha256()[..12]);
        assert_eq!(base.to_string(), base.short());
        assert_eq!(base, InputFingerprint::new(w, &data(1, 0)));
        assert_ne!(base, InputFingerprint::new(w, &data(9, 0)), "a pixel");
        assert_ne!(base, InputFingerprint::new(w, &data(1, 2)), "a label");
        assert_ne!(
            base,
            InputFingerprint::new([b"g", b"m", b"o", b"t", b"r"], &data(1, 0)),
            "a checkpoint"
        );
        // Length framing: moving a byte from one checkpoint to the next is a change.
        assert_ne!(
            InputFingerprint::new([b"ab", b"", b"o", b"s", b"r"], &data(1, 0)),
            InputFingerprint::new([b"a", b"b", b"o", b"s", b"r"], &data(1, 0)),
        );
        // The same pixels read as other image sizes are other data.
        let square = Dataset::new(vec![0; 8], vec![0, 1], 2, 2).unwrap();
        let wide = Dataset::new(vec![0; 8], vec![0, 1], 1, 4).unwrap();
        assert_ne!(
            InputFingerprint::new(w, &square),
            InputFingerprint::new(w, &wide)
        );
    }

    #[test]
    fn the_program_identity_is_the_hash_of_every_byte_of_the_executable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("program");
        // Larger than one read, so the pieces are joined in order.
        let mut bytes: Vec<u8> = (0..(3 << 20) + 7).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let id = ProgramIdentity::of_executable(&path).unwrap();
        let mut h = Sha256::new();
        h.update(PROGRAM_DOMAIN);
        h.update(&bytes);
        assert_eq!(id.sha256(), hex(&h.finalize()));
        assert_eq!(id.short(), &id.sha256()[..SHORT_DIGITS]);
        assert_eq!(id, ProgramIdentity::of_executable(&path).unwrap());
        // One byte anywhere, the last one of a piece included, is another program.
        for at in [0, (1 << 20) - 1, 1 << 20, bytes.len() - 1] {
            bytes[at] ^= 1;
            std::fs::write(&path, &bytes).unwrap();
            assert_ne!(
                id,
                ProgramIdentity::of_executable(&path).unwrap(),
                "byte {at}"
            );
            bytes[at] ^= 1;
        }
        let missing = dir.path().join("gone");
        let e = ProgramIdentity::of_executable(&missing).unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
        // The running test binary has a readable executable, so a real hash.
        let running = ProgramIdentity::running();
        assert_eq!(running.sha256().len(), 64, "{running:?}");
        assert_eq!(
            running,
            &ProgramIdentity::of_executable(&std::env::current_exe().unwrap()).unwrap()
        );
    }

    #[test]
    fn weights_dir_hashes_the_files_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in WEIGHT_FILES.iter().zip([b"g", b"m", b"o", b"s", b"r"]) {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let test = data(1, 0);
        assert_eq!(
            InputFingerprint::of_weights_dir(dir.path(), &test).unwrap(),
            InputFingerprint::new([b"g", b"m", b"o", b"s", b"r"], &test)
        );
        std::fs::remove_file(dir.path().join(WEIGHT_FILES[2])).unwrap();
        let e = InputFingerprint::of_weights_dir(dir.path(), &test).unwrap_err();
        assert!(e.to_string().contains(WEIGHT_FILES[2]), "{e}");
    }
}
