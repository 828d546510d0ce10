//! Progress of long work: the harness's stages, training epochs and the xtask's
//! commands all report through one [`Progress`] trait, which libraries take as
//! `&mut dyn Progress` and never draw themselves. [`Silent`] ignores it (tests,
//! callers that want no output); [`Bar`] shows it on stderr: an `indicatif` bar on a
//! terminal, and otherwise (under `nohup`, in CI, piped to a log) a plain line at most
//! every 10 s plus one at the end, since a bar there would print nothing until the end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Plain lines come at most this often.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// Receives the progress of a sequence of tasks, one at a time: [`start`](Self::start),
/// any number of [`advance`](Self::advance) and [`set_message`](Self::set_message), then
/// [`finish`](Self::finish).
pub trait Progress {
    /// A task named `label` of `total` `unit`s (`"batches"`, `"pairs"`, `"images"`)
    /// begins; one still running ends first.
    fn start(&mut self, label: &str, total: u64, unit: &str);
    /// `n` more units are done.
    fn advance(&mut self, n: u64);
    /// The text shown after the count (a running loss, a success rate), until the
    /// next call or the task's end.
    fn set_message(&mut self, message: &str);
    /// The task ended.
    fn finish(&mut self);
}

impl<P: Progress + ?Sized> Progress for &mut P {
    fn start(&mut self, label: &str, total: u64, unit: &str) {
        (**self).start(label, total, unit);
    }
    fn advance(&mut self, n: u64) {
        (**self).advance(n);
    }
    fn set_message(&mut self, message: &str) {
        (**self).set_message(message);
    }
    fn finish(&mut self) {
        (**self).finish();
    }
}

/// Ignores progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: u64, _: &str) {}
    fn advance(&mut self, _: u64) {}
    fn set_message(&mut self, _: &str) {}
    fn finish(&mut self) {}
}

/// Progress on stderr: an `indicatif` bar on a terminal (cleared when its task
/// finishes), plain lines otherwise (`label: done/total unit in S s, eta S s message`,
/// at most every [`LINE_EVERY`], and one when the task reaches its total or finishes).
#[derive(Debug)]
pub struct Bar {
    plain: bool,
    start_lines: bool,
    task: Option<Task>,
}

/// The running task: its bar on a terminal, its plain lines otherwise.
#[derive(Debug)]
enum Task {
    Drawn(indicatif::ProgressBar),
    Plain(Lines),
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}

impl Bar {
    /// A bar with no task yet: drawn if stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self {
            plain: !std::io::stderr().is_terminal(),
            start_lines: false,
            task: None,
        }
    }

    /// A bar already running the task `label` of `total` `unit`s.
    pub fn started(label: &str, total: u64, unit: &str) -> Self {
        let mut bar = Self::new();
        bar.start(label, total, unit);
        bar
    }

    /// Also prints `label: total unit` when each task starts, so a terminal, where the
    /// bars are cleared, keeps a line per task (the harness's stages).
    pub fn with_start_lines(mut self) -> Self {
        self.start_lines = true;
        self
    }
}

impl Progress for Bar {
    fn start(&mut self, label: &str, total: u64, unit: &str) {
        self.finish();
        if self.start_lines {
            eprintln!("{label}: {total} {unit}");
        }
        self.task = Some(if self.plain {
            Task::Plain(Lines::new(label, total, unit, Instant::now()))
        } else {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}} eta {{eta}} {{msg}}"
                ))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(label.to_string());
            Task::Drawn(bar)
        });
    }

    fn advance(&mut self, n: u64) {
        match &mut self.task {
            Some(Task::Drawn(bar)) => bar.inc(n),
            Some(Task::Plain(lines)) => {
                if let Some(line) = lines.advance(n, Instant::now()) {
                    eprintln!("{line}");
                }
            }
            None => {}
        }
    }

    fn set_message(&mut self, message: &str) {
        match &mut self.task {
            Some(Task::Drawn(bar)) => bar.set_message(message.to_string()),
            Some(Task::Plain(lines)) => lines.message = message.to_string(),
            None => {}
        }
    }

    fn finish(&mut self) {
        match self.task.take() {
            Some(Task::Drawn(bar)) => bar.finish_and_clear(),
            Some(Task::Plain(mut lines)) => {
                if let Some(line) = lines.finish(Instant::now()) {
                    eprintln!("{line}");
                }
            }
            None => {}
        }
    }
}

/// The plain lines of one task. Every method takes the time and returns the line to
/// print, so the schedule is tested without a clock.
#[derive(Debug, Clone)]
struct Lines {
    label: String,
    unit: String,
    total: u64,
    done: u64,
    message: String,
    start: Instant,
    last_line: Instant,
    /// `done` as the last line showed it.
    shown: Option<u64>,
}

impl Lines {
    fn new(label: &str, total: u64, unit: &str, now: Instant) -> Self {
        Self {
            label: label.to_string(),
            unit: unit.to_string(),
            total,
            done: 0,
            message: String::new(),
            start: now,
            last_line: now,
            shown: None,
        }
    }

    /// Records `n` more units; a line if [`LINE_EVERY`] has passed since the last one
    /// or the total is reached.
    fn advance(&mut self, n: u64, now: Instant) -> Option<String> {
        self.done += n;
        let due = now.saturating_duration_since(self.last_line) >= LINE_EVERY;
        let reached = self.done >= self.total && self.shown != Some(self.done);
        (due || reached).then(|| self.line(now))
    }

    /// The task ended: a line unless the last one already showed where it ended.
    fn finish(&mut self, now: Instant) -> Option<String> {
        (self.shown != Some(self.done)).then(|| self.line(now))
    }

    fn line(&mut self, now: Instant) -> String {
        self.last_line = now;
        self.shown = Some(self.done);
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        // Nothing done yet (a long first unit that reports through its message): no
        // rate to project from.
        let eta = if self.done == 0 {
            String::new()
        } else {
            let left = self.total.saturating_sub(self.done) as f64;
            format!(", eta {:.0} s", elapsed / self.done as f64 * left)
        };
        let line = format!(
            "{}: {}/{} {} in {:.0} s{} {}",
            self.label, self.done, self.total, self.unit, elapsed, eta, self.message
        );
        line.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, seconds: u64) -> Instant {
        t0 + Duration::from_secs(seconds)
    }

    #[test]
    fn plain_lines_come_every_10_s_and_at_the_total() {
        let t0 = Instant::now();
        let mut lines = Lines::new("fgsm", 6, "batches", t0);
        let printed: Vec<Option<String>> = [1, 5, 10, 12, 19, 20]
            .iter()
            .map(|&s| lines.advance(1, at(t0, s)))
            .collect();
        assert_eq!(
            printed,
            [
                None,
                None,
                Some("fgsm: 3/6 batches in 10 s, eta 10 s".to_string()),
                None,
                None,
                Some("fgsm: 6/6 batches in 20 s, eta 0 s".to_string()),
            ]
        );
        // The last line showed the end: finishing adds none.
        assert_eq!(lines.finish(at(t0, 21)), None);
    }

    #[test]
    fn a_task_finished_early_gets_a_last_line_with_its_message() {
        let t0 = Instant::now();
        let mut lines = Lines::new("type I", 100, "pairs", t0);
        assert_eq!(lines.advance(40, at(t0, 4)), None);
        lines.message = "success 50.0%".to_string();
        assert_eq!(
            lines.finish(at(t0, 8)).as_deref(),
            Some("type I: 40/100 pairs in 8 s, eta 12 s success 50.0%")
        );
        assert_eq!(lines.finish(at(t0, 9)), None);
    }

    #[test]
    fn a_long_first_unit_shows_its_message_every_10_s_without_an_eta() {
        // CW-L2's one batch: nothing done for minutes, its own share in the message.
        let t0 = Instant::now();
        let mut lines = Lines::new("type II cw-l2", 250, "images", t0);
        lines.message = "(batch 1 of 1: 4 % of its steps)".to_string();
        assert_eq!(lines.advance(0, at(t0, 3)), None);
        assert_eq!(
            lines.advance(0, at(t0, 11)).as_deref(),
            Some("type II cw-l2: 0/250 images in 11 s (batch 1 of 1: 4 % of its steps)")
        );
        assert_eq!(lines.advance(0, at(t0, 15)), None);
        assert_eq!(
            lines.advance(250, at(t0, 30)).as_deref(),
            Some("type II cw-l2: 250/250 images in 30 s, eta 0 s (batch 1 of 1: 4 % of its steps)")
        );
    }

    #[test]
    fn a_bar_runs_one_task_after_another_and_silent_takes_any() {
        // Off a terminal (as under `cargo test`) or on one, a bar takes any sequence.
        let mut bar = Bar::started("a", 2, "steps").with_start_lines();
        bar.set_message("m");
        bar.advance(1);
        bar.start("b", 1, "steps");
        bar.advance(1);
        bar.finish();
        bar.finish();
        bar.advance(1);
        let progress: &mut dyn Progress = &mut Silent;
        progress.start("c", 1, "steps");
        progress.finish();
    }
}
