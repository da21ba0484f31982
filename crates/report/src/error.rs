//! Errors of a report.

use std::path::PathBuf;

/// Everything that stops a report (a run that is missing or failed is a state in its cell, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An input is not what a report reads: a plan's tag, a run directory without a config.
    #[error("{path}: {message}")]
    Input {
        /// The plan or the run directory.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The plan could not be read.
    #[error(transparent)]
    Sweep(#[from] ftcal_sweep::SweepError),
    /// A run directory's record could not be read.
    #[error(transparent)]
    Train(#[from] ftcal_train::TrainError),
    /// Evaluating saved outputs, writing a table or drawing a figure failed.
    #[error(transparent)]
    Eval(#[from] ftcal_eval::EvalError),
}

impl ReportError {
    /// An I/O error on `path`, with what to do about a full disk, a quota or a read-only file system.
    pub fn io(path: impl Into<PathBuf>, error: &std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            message: ftcal_eval::describe_io_error(error),
        }
    }
}
