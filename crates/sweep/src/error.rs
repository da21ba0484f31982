//! Errors of a sweep.

use std::path::PathBuf;

/// Everything that stops a sweep as a whole (a cell's own failure is recorded, not raised).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The sweep file is invalid: its syntax, a key, or a value.
    #[error("{path}: {message}")]
    File {
        /// The sweep file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// Cells whose config is invalid, each with its error (which names the key).
    #[error("{path}: {} of {total} cells are invalid; nothing was run:\n{}", .invalid.len(), .invalid.join("\n"))]
    InvalidCells {
        /// The sweep file.
        path: PathBuf,
        /// How many cells the sweep has.
        total: usize,
        /// `cell NAME: error`, one per invalid cell.
        invalid: Vec<String>,
    },
    /// A file of the sweep directory could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A run failed.
    #[error(transparent)]
    Train(#[from] ftcal_train::TrainError),
    /// Writing a table or a plot failed.
    #[error(transparent)]
    Eval(#[from] ftcal_eval::EvalError),
}

impl SweepError {
    /// An I/O error on `path`, with what to do about a full disk, a quota or a read-only file system.
    pub fn io(path: impl Into<PathBuf>, error: &std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            message: ftcal_eval::describe_io_error(error),
        }
    }
}
