//! The errors of ftcal-data; each names the file, line or config key it is about.

use std::path::PathBuf;

/// Why a dataset, a class split, an image or a batch could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A line of a list file is not `relative/path label`.
    #[error("{path}:{line}: {message}")]
    ListLine {
        /// The list file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line and what to do.
        message: String,
    },
    /// An image file exists but cannot be decoded.
    #[error("{path}: {message}")]
    Image {
        /// The image file (or the embedded file it came from).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A dataset or class-split setting is invalid.
    #[error("{key}: {message}")]
    Config {
        /// The config key, e.g. `data.classes.fine_tuning`.
        key: String,
        /// What is wrong with it and what to do.
        message: String,
    },
    /// A folder layout does not match the configured dataset kind.
    #[error("{path}: {message}")]
    Layout {
        /// The folder.
        path: PathBuf,
        /// What was expected there.
        message: String,
    },
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A configuration error on `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// An undecodable image at `path`.
    pub fn image(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Image {
            path: path.into(),
            message: message.into(),
        }
    }
}
