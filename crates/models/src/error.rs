//! The errors of ftcal-models; each names the file, key or config field it is about.

use std::path::PathBuf;

/// Why a model could not be built, loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A weight file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The weight file.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
    /// A weight file could not be written (the message names it).
    #[error(transparent)]
    Write(#[from] ftcal_eval::EvalError),
    /// Weights do not fit the model: missing, unexpected or mis-shaped keys, all of them listed.
    #[error("{path}: the weights do not fit the model:\n  {}", problems.join("\n  "))]
    Mismatch {
        /// The weight file.
        path: PathBuf,
        /// One line per key.
        problems: Vec<String>,
    },
    /// A model configuration is invalid.
    #[error("{key}: {message}")]
    Config {
        /// The config key, e.g. `model.depth`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl ModelError {
    /// A file error on `path`.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::File {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A configuration error on `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}
