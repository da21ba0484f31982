//! The training side of ftcal: the run config, optimizers with PyTorch's semantics, learning-rate
//! schedules, the fine-tuning methods, checkpoints and resume, the saved outputs, and the pipeline that
//! joins them (source → pre-trained evaluation → fine-tuning → calibration and report).

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod optim;

pub use config::Backend;
pub use error::TrainError;
