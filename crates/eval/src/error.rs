//! The errors of ftcal-eval: each names the file, tensor, row or class a user has to fix.

use std::path::PathBuf;

/// Everything that can go wrong while reading scores, validating them or computing a metric.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{}: {}", path.display(), describe_io_error(source))]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A file is not a valid `.safetensors` / `.npz` of scores.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and, where possible, what to do.
        message: String,
    },

    /// Two arrays that describe the same samples disagree on how many there are.
    #[error(
        "{origin}: `{tensor}` has {found} rows but `logits` has {expected}; every tensor needs one row per sample"
    )]
    RowCountMismatch {
        /// Where the scores came from (a path or a description).
        origin: String,
        /// The tensor whose row count is wrong.
        tensor: &'static str,
        /// Rows of `logits`.
        expected: usize,
        /// Rows of `tensor`.
        found: usize,
    },

    /// A label is negative or not below the number of classes.
    #[error(
        "{origin}: labels[{row}] = {label} is outside 0..{num_classes} (`logits` has {num_classes} columns)"
    )]
    LabelOutOfRange {
        /// Where the scores came from.
        origin: String,
        /// The row (sample) index.
        row: usize,
        /// The offending label.
        label: i64,
        /// Number of classes, the column count of `logits`.
        num_classes: usize,
    },

    /// A logit or feature is NaN or infinite.
    #[error(
        "{origin}: {tensor}[{row}, {column}] is {value}; every value must be finite (a NaN often means the model diverged)"
    )]
    NonFinite {
        /// Where the scores came from.
        origin: String,
        /// `logits` or `features`.
        tensor: &'static str,
        /// Row (sample) index.
        row: usize,
        /// Column index.
        column: usize,
        /// The value found.
        value: f32,
    },

    /// Two score sets that must share a label space or feature space do not.
    #[error("{message}")]
    Incompatible {
        /// Which sets and which dimension disagree.
        message: String,
    },

    /// A class set (S, U) is empty, out of range, overlapping or leaves no fine-tuning class.
    #[error("{0}")]
    ClassSplit(String),

    /// A class list such as `5,6,7-9` could not be parsed.
    #[error("{origin}: {message}")]
    ClassList {
        /// The argument or `file:line` that holds the bad entry.
        origin: String,
        /// What is wrong.
        message: String,
    },

    /// A quantity cannot be computed from the data given (for example ALG with no sample of S).
    #[error("{0}")]
    Undefined(String),

    /// A plot could not be drawn.
    #[error("plot {}: {message}", path.display())]
    Plot {
        /// The output file.
        path: PathBuf,
        /// What the drawing library said.
        message: String,
    },
}

/// An I/O error as the operating system said it, and what to do about the ones a long run meets on a
/// cluster (a full disk, a quota, a file system gone read-only).
pub fn describe_io_error(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let hint = match error.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            "; the disk is full: free some space and run the same command again (what was written before is intact)"
        }
        ErrorKind::ReadOnlyFilesystem => {
            "; the file system is read-only: make it writable and run the same command again (what was written before is intact)"
        }
        _ => "",
    };
    format!("{error}{hint}")
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        EvalError::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
