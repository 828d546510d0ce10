//! Helpers every other crate of the workspace shares, depending only on std,
//! `indicatif` and `thiserror`:
//!
//! - [`write_atomic`]: a file written through a temporary sibling and a rename, so an
//!   interrupted run never leaves a half-written one (checkpoints, artifacts, PNGs).

#![deny(missing_docs)]

mod atomic;

pub use atomic::{write_atomic, WriteError};
