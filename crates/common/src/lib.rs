//! Helpers every other crate of the workspace shares, depending only on std,
//! `indicatif` and `thiserror`:
//!
//! - [`write_atomic`]: a file written through a temporary sibling and a rename, so an
//!   interrupted run never leaves a half-written one (checkpoints, artifacts, PNGs).
//! - [`progress`]: one [`Progress`](progress::Progress) trait for every long piece of
//!   work (the harness's stages, training epochs, the xtask's commands),
//!   [`Silent`](progress::Silent) for tests and libraries, and [`Bar`](progress::Bar), an
//!   `indicatif` bar on a terminal and a plain line at most every 10 s otherwise.
//! - [`seed`]: seeds mixed from identities (SplitMix64's finaliser, FNV-1a), so a draw
//!   depends on what it is drawn for, never on batch order or threads.
//!
//! ```
//! use common::progress::{Bar, Progress, Silent};
//! fn work(progress: &mut dyn Progress) {
//!     progress.start("work", 3, "steps");
//!     for _ in 0..3 {
//!         progress.advance(1);
//!     }
//!     progress.finish();
//! }
//! work(&mut Silent);
//! # let _ = Bar::new;
//! ```

#![deny(missing_docs)]

mod atomic;
pub mod progress;
pub mod seed;

pub use atomic::{write_atomic, WriteError};
