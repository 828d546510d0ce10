//! Progress of long stages, reported to whoever runs the evaluation.

/// Receives progress of long stages (a progress bar in the binary; nothing in tests).
pub trait Progress {
    /// A stage of `total` steps begins.
    fn start(&mut self, stage: &str, total: u64);
    /// `n` steps done.
    fn advance(&mut self, n: u64);
    /// The stage ended.
    fn finish(&mut self);
}

/// Ignores progress.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}
