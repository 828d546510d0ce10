//! Progress of a long command: an indicatif bar on a terminal, plain lines otherwise
//! (a run under `nohup` or in CI would print nothing until the end).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Plain lines come at most this often.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// A bar over `total` units of work (batches, pairs).
pub struct Progress {
    bar: indicatif::ProgressBar,
    plain: bool,
    label: String,
    unit: &'static str,
    total: u64,
    done: u64,
    message: String,
    start: Instant,
    last_line: Instant,
}

impl Progress {
    /// Starts a bar labelled `label` over `total` `unit`s.
    pub fn new(label: &str, total: u64, unit: &'static str) -> Self {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}} eta {{eta}} {{msg}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(label.to_string());
        let now = Instant::now();
        Self {
            bar,
            plain: !std::io::stderr().is_terminal(),
            label: label.to_string(),
            unit,
            total,
            done: 0,
            message: String::new(),
            start: now,
            last_line: now,
        }
    }

    /// The text after the bar (a running success rate).
    pub fn set_message(&mut self, message: String) {
        self.bar.set_message(message.clone());
        self.message = message;
    }

    /// Records `n` more units done.
    pub fn inc(&mut self, n: u64) {
        self.bar.inc(n);
        self.done += n;
        if self.plain && (self.last_line.elapsed() >= LINE_EVERY || self.done >= self.total) {
            self.last_line = Instant::now();
            let elapsed = self.start.elapsed().as_secs_f64();
            let eta =
                elapsed / self.done.max(1) as f64 * self.total.saturating_sub(self.done) as f64;
            eprintln!(
                "{}: {}/{} {} in {:.0} s, eta {:.0} s {}",
                self.label, self.done, self.total, self.unit, elapsed, eta, self.message
            );
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
