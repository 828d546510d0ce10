//! What a training loop reports as it goes ([`TrainEvent`]), who receives it
//! ([`Observer`]), and the observer that shows it as progress ([`ProgressBars`]).

use common::progress::{Bar, Progress};

/// What a training loop reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// An epoch begins.
    EpochStart {
        /// Stage name (`train`, or `svae` / `discriminator`).
        stage: &'static str,
        /// 1-based epoch.
        epoch: usize,
        /// Steps in the epoch.
        batches: usize,
    },
    /// A step finished.
    Step {
        /// Its loss.
        loss: f64,
    },
    /// An epoch ended and its checkpoint is on disk.
    EpochEnd {
        /// Stage name.
        stage: &'static str,
        /// 1-based epoch.
        epoch: usize,
        /// Mean training loss.
        loss: f64,
        /// Held-out figures (name, value), e.g. accuracy.
        heldout: Vec<(String, f64)>,
        /// Wall time of the epoch.
        seconds: f64,
    },
}

/// Receives [`TrainEvent`]s (a progress bar, a log, a test).
pub trait Observer {
    /// Called for every event.
    fn event(&mut self, event: &TrainEvent);
}

impl<F: FnMut(&TrainEvent)> Observer for F {
    fn event(&mut self, event: &TrainEvent) {
        self(event)
    }
}

/// Training shown through a [`Progress`]: a task per epoch counting its batches, with
/// the running loss as its message, and one line per finished epoch on stderr. By
/// default a [`Bar`]: an `indicatif` bar on a terminal, a plain line every 10 s otherwise.
#[derive(Debug)]
pub struct ProgressBars<P: Progress = Bar> {
    progress: P,
    sum: f64,
    n: usize,
}

impl Default for ProgressBars {
    fn default() -> Self {
        Self::new(Bar::new())
    }
}

impl<P: Progress> ProgressBars<P> {
    /// Shows training through `progress`.
    pub fn new(progress: P) -> Self {
        Self {
            progress,
            sum: 0.0,
            n: 0,
        }
    }
}

impl<P: Progress> Observer for ProgressBars<P> {
    fn event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::EpochStart {
                stage,
                epoch,
                batches,
            } => {
                self.progress.start(
                    &format!("{stage} epoch {epoch}"),
                    *batches as u64,
                    "batches",
                );
                self.sum = 0.0;
                self.n = 0;
            }
            TrainEvent::Step { loss } => {
                self.sum += loss;
                self.n += 1;
                if self.n.is_multiple_of(10) {
                    self.progress
                        .set_message(&format!("loss {:.4}", self.sum / self.n as f64));
                }
                self.progress.advance(1);
            }
            TrainEvent::EpochEnd {
                stage,
                epoch,
                loss,
                heldout,
                seconds,
            } => {
                self.progress.finish();
                let figures: Vec<String> =
                    heldout.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                // A line per epoch stays in the log even where the bar is cleared.
                eprintln!(
                    "{stage} epoch {epoch}: loss {loss:.4}, {} ({seconds:.0} s)",
                    figures.join(", ")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call as text.
    #[derive(Default)]
    struct Record(Vec<String>);

    impl Progress for Record {
        fn start(&mut self, label: &str, total: u64, unit: &str) {
            self.0.push(format!("start {label} {total} {unit}"));
        }
        fn advance(&mut self, n: u64) {
            self.0.push(format!("advance {n}"));
        }
        fn set_message(&mut self, message: &str) {
            self.0.push(format!("message {message}"));
        }
        fn finish(&mut self) {
            self.0.push("finish".into());
        }
    }

    #[test]
    fn progress_bars_show_an_epoch_as_a_task_with_the_running_loss() {
        let mut record = Record::default();
        let mut bars = ProgressBars::new(&mut record);
        bars.event(&TrainEvent::EpochStart {
            stage: "train",
            epoch: 2,
            batches: 10,
        });
        for step in 0..10 {
            bars.event(&TrainEvent::Step {
                loss: f64::from(step),
            });
        }
        bars.event(&TrainEvent::EpochEnd {
            stage: "train",
            epoch: 2,
            loss: 4.5,
            heldout: vec![("accuracy".into(), 0.5)],
            seconds: 1.0,
        });
        let mut expected = vec!["start train epoch 2 10 batches".to_string()];
        expected.extend(std::iter::repeat_n("advance 1".to_string(), 9));
        expected.extend([
            "message loss 4.5000".into(),
            "advance 1".into(),
            "finish".into(),
        ]);
        assert_eq!(record.0, expected);
    }
}
