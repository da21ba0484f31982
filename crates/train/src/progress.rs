//! What a run reports while it works: events for a front end (the cli draws progress bars from them) and
//! `log.txt` in the run directory, which keeps every message and a line per tenth of each epoch.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::TrainError;

/// Something a run reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A line for the user (also written to `log.txt`).
    Message(&'a str),
    /// An epoch of a training stage begins.
    EpochStarted {
        /// `source`, `fine_tuning` or `pcv-<k>`.
        stage: &'a str,
        /// 0-based epoch.
        epoch: usize,
        /// Epochs of the stage.
        epochs: usize,
        /// Iterations in this epoch.
        iterations: usize,
    },
    /// A training iteration finished.
    Iteration {
        /// 1-based iteration within the epoch.
        iteration: usize,
        /// The batch's loss, when this iteration read the losses back from the device (every tenth of an
        /// epoch; between, the device runs ahead).
        loss: Option<f64>,
        /// The head's learning rate used for the step.
        lr: f64,
        /// Training throughput over the epoch so far.
        images_per_second: f64,
    },
    /// The epoch's training iterations are done (evaluation and the checkpoint follow).
    EpochFinished,
    /// Images of a split are being evaluated.
    Evaluating {
        /// What is evaluated, e.g. `test, epoch 3`.
        what: &'a str,
        /// Images to evaluate.
        images: usize,
    },
}

/// Receives a run's events (the cli's progress bars; tests use a silent one).
pub trait Observer {
    /// Called for every event, in order.
    fn event(&mut self, event: &Event<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _: &Event<'_>) {}
}

/// `log.txt` plus the observer: every message goes to both.
pub struct RunLog<'a> {
    file: File,
    observer: &'a mut dyn Observer,
}

impl<'a> RunLog<'a> {
    /// Appends to `path` (a resumed run keeps its earlier lines).
    pub fn open(path: &Path, observer: &'a mut dyn Observer) -> Result<Self, TrainError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::file(path, format!("cannot open the log: {e}")))?;
        Ok(Self { file, observer })
    }

    /// A message for the user and the log.
    pub fn message(&mut self, text: &str) {
        self.log_only(text);
        self.observer.event(&Event::Message(text));
    }

    /// A line in `log.txt` only (progress the front end shows its own way).
    pub fn log_only(&mut self, text: &str) {
        // The log is a record, not a result: a failed write must not stop training.
        let _ = writeln!(self.file, "{} {text}", utc_timestamp());
    }

    /// Passes an event to the observer.
    pub fn event(&mut self, event: &Event<'_>) {
        self.observer.event(event);
    }
}

/// Now as `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc_timestamp() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_time(seconds)
}

/// `seconds` since 1970-01-01 00:00:00 UTC as `YYYY-MM-DD HH:MM:SS`, without a date-time dependency.
fn utc_time(seconds: u64) -> String {
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_become_the_civil_date_and_time_in_utc() {
        for (seconds, expected) in [
            (0, "1970-01-01 00:00:00"),
            (951_782_400, "2000-02-29 00:00:00"),
            (1_796_432_523, "2026-12-05 01:02:03"),
            (4_107_542_399, "2100-02-28 23:59:59"),
        ] {
            assert_eq!(utc_time(seconds), expected, "{seconds}");
        }
    }
}
