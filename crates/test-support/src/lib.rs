//! What the fuzz harnesses and the property tests of the workspace share (a
//! dev-dependency only, never published): the proptest configurations (a bounded number
//! of cases for CI, a fixed seed, both raised or changed by environment variables), the
//! byte-level edits every harness applies to its files, and panics turned into test
//! failures.
//!
//! - `FUZZ_CASES=N`: every fuzz property runs `N` cases instead of its CI count, e.g.
//!   `FUZZ_CASES=100000 cargo test --release -p mnist-data --test fuzz_idx`.
//! - `FUZZ_SEED=S`: another seed than [`SEED`] (a fixed seed makes CI's cases the same
//!   on every run; with the same seed, a longer run starts with CI's cases).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;

/// The environment variable that sets the number of cases of every fuzz property.
pub const CASES_VAR: &str = "FUZZ_CASES";

/// The environment variable that replaces the fixed seed.
pub const SEED_VAR: &str = "FUZZ_SEED";

/// The seed every fuzz property starts from, unless `FUZZ_SEED` says otherwise.
pub const SEED: u64 = 24;

/// A number from the environment variable `name`, if set; a value that is not a number
/// is a panic naming the variable (a long run must not silently fall back to CI's count).
fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={text:?} is not a number"),
    }
}

/// The configuration of a fuzz property: `ci` cases (or `FUZZ_CASES`), the fixed seed
/// [`SEED`] (or `FUZZ_SEED`), and no failure files written into the source tree.
pub fn fuzz_config(ci: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        cases: env_number(CASES_VAR).unwrap_or(ci),
        ..seeded(ci)
    }
}

/// The configuration of a unit test's property: `cases` cases drawn from the fixed seed
/// [`SEED`] (or `FUZZ_SEED`), so that every run (CI's too) tries the same cases; a case
/// that fails is still recorded in, and replayed from, the crate's
/// `proptest-regressions` directory (proptest's default).
pub fn seeded(cases: u32) -> ProptestConfig {
    ProptestConfig {
        rng_seed: RngSeed::Fixed(env_number(SEED_VAR).unwrap_or(SEED)),
        ..ProptestConfig::with_cases(cases)
    }
}

/// A byte-level edit of a file: what every format's harness does to its bytes, beside
/// the edits that know the format.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    /// Cut at a point (anywhere from empty to whole).
    Truncate(Index),
    /// Bytes added at the end.
    Append(Vec<u8>),
    /// One byte XORed with a non-zero mask.
    Flip(Index, u8),
    /// One byte inserted (anywhere, the end included).
    Insert(Index, u8),
    /// One byte removed.
    Delete(Index),
}

impl ByteEdit {
    /// Applies the edit; on an empty file a flip or a deletion does nothing.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            ByteEdit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            ByteEdit::Append(tail) => bytes.extend_from_slice(tail),
            ByteEdit::Flip(i, mask) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] ^= mask;
            }
            ByteEdit::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            ByteEdit::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i.index(bytes.len()));
            }
            ByteEdit::Flip(..) | ByteEdit::Delete(_) => {}
        }
    }
}

/// Any [`ByteEdit`], appending 1 to `max_append` bytes (at least 1).
pub fn byte_edit(max_append: usize) -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        any::<Index>().prop_map(ByteEdit::Truncate),
        prop::collection::vec(any::<u8>(), 1..=max_append.max(1)).prop_map(ByteEdit::Append),
        (any::<Index>(), 1u8..=255).prop_map(|(i, mask)| ByteEdit::Flip(i, mask)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<Index>().prop_map(ByteEdit::Delete),
    ]
}

/// The message of a panic's payload (empty when it is neither a `String` nor a `&str`).
pub fn panic_text(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs `f`; a panic becomes a test failure with its message and `input` (a description
/// of what the code under test was given).
pub fn no_panic<T>(
    input: impl FnOnce() -> String,
    f: impl FnOnce() -> T,
) -> Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| TestCaseError::fail(format!("panicked ({}) on {}", panic_text(p), input())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;

    /// An `Index` that picks `i` of `n` positions (`Index` has no constructor: drawn).
    fn at(i: usize, n: usize) -> Index {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        loop {
            let x = any::<Index>().new_tree(&mut runner).unwrap().current();
            if x.index(n) == i {
                return x;
            }
        }
    }

    #[test]
    fn edits_apply_as_named() {
        let file: Vec<u8> = (0u8..9).collect();
        let edited = |e: ByteEdit| {
            let mut b = file.clone();
            e.apply(&mut b);
            b
        };
        // 9 bytes: 10 places to cut or insert at, 9 bytes to flip or delete.
        assert_eq!(edited(ByteEdit::Truncate(at(3, 10))), [0, 1, 2]);
        assert_eq!(edited(ByteEdit::Truncate(at(9, 10))), file);
        assert_eq!(edited(ByteEdit::Append(vec![7, 7]))[7..], [7, 8, 7, 7]);
        assert_eq!(
            edited(ByteEdit::Flip(at(2, 9), 0xff)),
            [0, 1, 0xfd, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(
            edited(ByteEdit::Insert(at(9, 10), 42)),
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 42]
        );
        assert_eq!(edited(ByteEdit::Delete(at(8, 9))), [0, 1, 2, 3, 4, 5, 6, 7]);
        for e in [ByteEdit::Flip(at(0, 1), 1), ByteEdit::Delete(at(0, 1))] {
            let mut empty = Vec::new();
            e.apply(&mut empty);
            assert!(empty.is_empty());
        }
    }

    /// Two runs of a property under [`seeded`] try the same cases, in the same order;
    /// another seed tries others.
    #[test]
    fn seeded_properties_try_the_same_cases_every_run() {
        use proptest::test_runner::TestRunner;
        use std::cell::RefCell;
        let draw = |config: ProptestConfig| {
            let seen = RefCell::new(Vec::new());
            TestRunner::new(config)
                .run(&(0u64..u64::MAX), |v| {
                    seen.borrow_mut().push(v);
                    Ok(())
                })
                .unwrap();
            seen.into_inner()
        };
        let first = draw(seeded(20));
        assert_eq!(first.len(), 20);
        assert_eq!(first, draw(seeded(20)));
        // One past the seed in use (`FUZZ_SEED` may have replaced `SEED`).
        let RngSeed::Fixed(seed) = seeded(20).rng_seed else {
            panic!("seeded gives a fixed seed")
        };
        let other = ProptestConfig {
            rng_seed: RngSeed::Fixed(seed.wrapping_add(1)),
            ..seeded(20)
        };
        assert_ne!(first, draw(other));
    }

    proptest! {
        #![proptest_config(fuzz_config(200))]

        /// Each edit changes the length as it says, and a flip changes exactly one byte.
        #[test]
        fn edits_change_what_they_say(
            file in prop::collection::vec(any::<u8>(), 0..20),
            edit in byte_edit(5),
        ) {
            let mut b = file.clone();
            edit.apply(&mut b);
            let n = file.len();
            match &edit {
                ByteEdit::Truncate(_) => prop_assert!(b.len() <= n && file.starts_with(&b)),
                ByteEdit::Append(t) => {
                    prop_assert!((1..=5).contains(&t.len()));
                    prop_assert_eq!(&b[n..], t.as_slice());
                }
                ByteEdit::Flip(..) => prop_assert_eq!(
                    file.iter().zip(&b).filter(|(x, y)| x != y).count(),
                    usize::from(n > 0)
                ),
                ByteEdit::Insert(..) => prop_assert_eq!(b.len(), n + 1),
                ByteEdit::Delete(_) => prop_assert_eq!(b.len(), n.saturating_sub(1)),
            }
        }
    }

    #[test]
    fn a_panic_is_a_failure_with_its_message() {
        assert_eq!(no_panic(String::new, || 3).unwrap(), 3);
        let err = no_panic(|| "the input".into(), || panic!("boom {}", 1)).unwrap_err();
        assert!(
            err.to_string().contains("panicked (boom 1) on the input"),
            "{err}"
        );
    }

    #[test]
    fn the_seed_is_fixed() {
        if std::env::var_os(SEED_VAR).is_none() {
            assert_eq!(fuzz_config(5).rng_seed, RngSeed::Fixed(SEED));
        }
    }
}
