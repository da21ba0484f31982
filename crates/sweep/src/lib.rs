//! Sweeps of ftcal runs: a sweep file expands to cells (a grid, explicit cells, bundles of settings), each
//! an ordinary run directory made exactly as `ftcal run BASE --set …` makes it; cells run in this process,
//! as local child processes or as a Slurm job array, share their source stage, and are aggregated into
//! `sweep.csv`, `sweep.md` and heatmaps. Above `ftcal-train`: a sweep is many runs.

#![warn(missing_docs)]

pub mod aggregate;
mod error;
pub mod execute;
pub mod plan;
pub mod slurm;
pub mod status;

pub use aggregate::{HeatmapAxes, HeatmapSettings, ReportFiles, write_report};
pub use error::SweepError;
pub use execute::{LocalOptions, LocalOutcome, Progress, SweepEvent, run_cell, run_local};
pub use plan::{Cell, Sweep, SweepFile, SweepKey};
pub use slurm::SlurmSettings;
pub use status::CellState;
