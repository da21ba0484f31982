//! Where each cell stands, read from its run directory and the sweep's records, so that any process (a
//! rerun, a Slurm task, `--report`) sees the same state without a database.
//!
//! ```text
//! <sweep>/sweep.toml  cells.json  sweep.csv  sweep.md  heatmap-*.png
//! <sweep>/<cell>/          the cell's run directory
//! <sweep>/shared/          the shared stages (ftcal_train::shared)
//! <sweep>/failed/<cell>.txt   the error of a cell's last attempt, removed when it is tried again
//! <sweep>/logs/<cell>.log     what a cell run by the local executor printed; logs/slurm-*.out by Slurm
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use ftcal_eval::{RunStatus, Summary, write_atomic};
use ftcal_train::RunDir;
use serde::Serialize;

use crate::SweepError;
use crate::plan::{Cell, Sweep};

/// The state of a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellState {
    /// Never started.
    Pending,
    /// Started and stopped before its end (killed, stopped by a signal): a rerun resumes it.
    Interrupted,
    /// A live process holds its run directory.
    Running,
    /// Finished: `summary.json` holds its results.
    Completed,
    /// Its loss became NaN or infinite; `summary.json` says where.
    Diverged {
        /// `stage, epoch e, iteration i`.
        at: String,
    },
    /// Its last attempt ended with an error.
    Failed {
        /// The error.
        error: String,
    },
}

impl CellState {
    /// Whether a rerun of the sweep leaves the cell as it is.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Diverged { .. })
    }

    /// One word: `pending`, `interrupted`, `running`, `completed`, `diverged`, `failed`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Interrupted => "interrupted",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Diverged { .. } => "diverged",
            Self::Failed { .. } => "failed",
        }
    }
}

impl fmt::Display for CellState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Diverged { at } => write!(f, "diverged ({at})"),
            Self::Failed { error } => write!(f, "failed: {}", error.lines().next().unwrap_or("")),
            other => f.write_str(other.word()),
        }
    }
}

/// What a run directory says of itself: running (a live process holds its lock), completed (with its
/// `summary.json`) or diverged; `None` when it says none of these (never started, interrupted, failed).
pub fn run_dir_state(dir: &RunDir) -> Result<Option<(CellState, Option<Summary>)>, SweepError> {
    if dir.is_locked() {
        return Ok(Some((CellState::Running, None)));
    }
    let Some(summary) = ftcal_train::report::read_summary(dir)? else {
        return Ok(None);
    };
    Ok(match summary.status {
        Some(RunStatus::Completed) => Some((CellState::Completed, Some(summary))),
        Some(RunStatus::Diverged) => {
            let at = summary.diverged.map_or_else(String::new, |at| {
                format!("{}, epoch {}, iteration {}", at.stage, at.epoch, at.iteration)
            });
            Some((CellState::Diverged { at }, None))
        }
        None => None,
    })
}

impl Sweep {
    /// `<sweep>/failed/<cell>.txt`.
    pub fn failure_record(&self, cell: &Cell) -> PathBuf {
        self.dir.join("failed").join(format!("{}.txt", cell.name))
    }

    /// `<sweep>/logs/<cell>.log`.
    pub fn log(&self, cell: &Cell) -> PathBuf {
        self.dir.join("logs").join(format!("{}.log", cell.name))
    }

    /// `<sweep>/shared/`.
    pub fn shared_dir(&self) -> PathBuf {
        self.dir.join("shared")
    }

    /// The state of `cell`.
    pub fn state(&self, cell: &Cell) -> Result<CellState, SweepError> {
        Ok(self.state_and_summary(cell)?.0)
    }

    /// The state of `cell`, and its `summary.json` when it completed (read once for both).
    pub fn state_and_summary(&self, cell: &Cell) -> Result<(CellState, Option<Summary>), SweepError> {
        let dir = RunDir::new(&cell.dir);
        if let Some(known) = run_dir_state(&dir)? {
            return Ok(known);
        }
        let record = self.failure_record(cell);
        if record.exists() {
            let error = std::fs::read_to_string(&record).map_err(|e| SweepError::io(&record, &e))?;
            return Ok((
                CellState::Failed {
                    error: error.trim_end().to_string(),
                },
                None,
            ));
        }
        let state = if dir.config().exists() {
            CellState::Interrupted
        } else {
            CellState::Pending
        };
        Ok((state, None))
    }

    /// Records the error of a cell's attempt.
    pub fn record_failure(&self, cell: &Cell, error: &str) -> Result<(), SweepError> {
        let path = self.failure_record(cell);
        create_parent(&path)?;
        write_atomic(&path, format!("{}\n", error.trim_end()).as_bytes())?;
        Ok(())
    }

    /// Forgets the error of a cell's earlier attempt (it is being tried again).
    pub fn clear_failure(&self, cell: &Cell) -> Result<(), SweepError> {
        let path = self.failure_record(cell);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(SweepError::io(&path, &error)),
        }
    }

    /// Writes `sweep.toml` (the sweep as it runs) and `cells.json` (each cell's folder, overrides and the
    /// `ftcal run` command that makes it alone) into the sweep's folder.
    pub fn write_index(&self) -> Result<(), SweepError> {
        #[derive(Serialize)]
        struct IndexEntry<'a> {
            index: usize,
            name: &'a str,
            dir: &'a Path,
            set: Vec<String>,
            command: String,
        }
        let entries: Vec<IndexEntry<'_>> = (self.cells.iter())
            .map(|cell| {
                let set: Vec<String> = cell.overrides.iter().map(ToString::to_string).collect();
                let mut command = vec![
                    "ftcal".to_string(),
                    "run".to_string(),
                    shell_quote(&cell.base.display().to_string()),
                ];
                for assignment in &set {
                    command.push("--set".into());
                    command.push(shell_quote(assignment));
                }
                command.push("--out".into());
                command.push(shell_quote(&cell.dir.display().to_string()));
                IndexEntry {
                    index: cell.index,
                    name: &cell.name,
                    dir: &cell.dir,
                    set,
                    command: command.join(" "),
                }
            })
            .collect();
        let index = self.dir.join("cells.json");
        create_parent(&index)?;
        let json = serde_json::to_string_pretty(&entries).expect("the index serialises");
        write_atomic(&index, format!("{json}\n").as_bytes())?;
        write_atomic(&self.dir.join("sweep.toml"), self.resolved_text().as_bytes())?;
        Ok(())
    }
}

/// Creates the folder that will hold `path`.
pub(crate) fn create_parent(path: &Path) -> Result<(), SweepError> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| SweepError::io(parent, &e)),
        None => Ok(()),
    }
}

/// `text` as one shell word.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/=,+:@%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("fine_tuning.lr=1e-3"), "fine_tuning.lr=1e-3");
        assert_eq!(shell_quote("model.arch=\"x y\""), "'model.arch=\"x y\"'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
