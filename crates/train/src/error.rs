//! Errors of the training crate.

use std::path::PathBuf;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config value is invalid.
    #[error("{key}: {message}")]
    Config {
        /// The config key, e.g. `fine_tuning.optimizer.betas`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A file of the run directory could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The data could not be listed or loaded.
    #[error(transparent)]
    Data(#[from] ftcal_data::DataError),
    /// The model could not be built or its weights read or written.
    #[error(transparent)]
    Model(#[from] ftcal_models::ModelError),
    /// A stop was requested (SIGTERM, Ctrl-C, or the resume test's hook) and the run stopped at a safe
    /// point with everything done so far saved; the same command resumes.
    #[error("stopped on request: {at}")]
    Interrupted {
        /// Where, e.g. `fine_tuning in epoch 2 after iteration 5/9`.
        at: String,
    },
    /// Metrics or calibration failed.
    #[error(transparent)]
    Eval(#[from] ftcal_eval::EvalError),
}

impl TrainError {
    /// A configuration error on `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A file error on `path`.
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::File {
            path: path.into(),
            message: message.into(),
        }
    }
}
