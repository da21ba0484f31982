//! Stopping a run cleanly: a request (the cli makes one on SIGTERM or Ctrl-C) that the run honours at its
//! next safe point, after which the same command resumes with nothing lost. Safe points: after any
//! training iteration (a checkpoint of the partial epoch is written), between evaluation batches (the
//! evaluation is redone on resume), and between stages.
//!
//! Also the test hook that holds a run at a named point, so that a test can kill it exactly there
//! instead of guessing a time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the run to stop at its next safe point. Safe to call from any thread.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// A place in a run where the test hook can hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausePoint {
    /// The point's name, e.g. `fine_tuning iteration`, `evaluating test, epoch 1`, `report metrics.csv`.
    pub name: String,
    /// Hold at the `nth` (1-based) time the run reaches it in this process.
    pub nth: usize,
}

impl std::str::FromStr for PausePoint {
    type Err = String;

    /// `NAME` or `NAME#N`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (name, nth) = match text.rsplit_once('#') {
            Some((name, nth)) => (
                name,
                nth.parse()
                    .map_err(|_| format!("`{nth}` is not a count in `{text}` (NAME#N)"))?,
            ),
            None => (text, 1),
        };
        if name.is_empty() || nth == 0 {
            return Err(format!("`{text}`: expected NAME or NAME#N with N ≥ 1"));
        }
        Ok(Self {
            name: name.to_string(),
            nth,
        })
    }
}

static PAUSE: Mutex<Option<(PausePoint, usize)>> = Mutex::new(None);

/// Holds the run at `point` (a test hook: `ftcal run`'s hidden `--pause-at`).
pub fn pause_at(point: Option<PausePoint>) {
    *PAUSE.lock().unwrap_or_else(|e| e.into_inner()) = point.map(|point| (point, 0));
}

/// The run reaches the point `name`. If the test hook asked for it, says so on stderr (a test waits for
/// that line) and waits there until a stop is requested; a kill ends the process meanwhile.
pub(crate) fn reached(name: &str) {
    let hold = {
        let mut guard = PAUSE.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some((point, seen)) if point.name == name => {
                *seen += 1;
                *seen == point.nth
            }
            _ => false,
        }
    };
    if hold {
        eprintln!("ftcal: paused at `{name}` (test hook)");
        while !stop_requested() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_points_parse_with_an_optional_count() {
        let point: PausePoint = "evaluating test, epoch 1#3".parse().unwrap();
        assert_eq!(point.name, "evaluating test, epoch 1");
        assert_eq!(point.nth, 3);
        let point: PausePoint = "report summary.json".parse().unwrap();
        assert_eq!(point.nth, 1);
        assert!("x#0".parse::<PausePoint>().is_err());
        assert!("x#two".parse::<PausePoint>().is_err());
        assert!("#2".parse::<PausePoint>().is_err());
    }
}
