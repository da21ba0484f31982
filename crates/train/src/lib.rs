//! The training side of ftcal: the run config, optimizers with PyTorch's semantics, learning-rate
//! schedules, the fine-tuning methods, checkpoints and resume, the saved outputs, and the pipeline that
//! joins them (source → pre-trained evaluation → fine-tuning → calibration and report).

#![warn(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod config_file;
pub mod disk;
pub mod error;
pub mod head_norms;
pub mod holistic;
pub mod interrupt;
pub mod optim;
pub mod outputs;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod run_dir;
pub mod shared;
pub mod trainer;

pub use config::{
    Backend, CalibrationMethod, EvalSettings, EvalSplit, FeatureEpochs, Method, RunConfig, SaveSettings,
    Stage, TrainingSettings,
};
pub use error::TrainError;
pub use pipeline::{RunOptions, RunOutcome, run, run_dir};
pub use progress::{Event, Observer, Silent};
pub use report::{RunReport, evaluate_run};
pub use run_dir::RunDir;
