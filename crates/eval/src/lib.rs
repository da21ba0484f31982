//! Metrics and post-hoc calibration for partial-class fine-tuning, on plain arrays of saved outputs.
//!
//! Every number of "Fine-Tuning is Fine, if Calibrated" is a function of logits, penultimate features and
//! labels. This crate computes them with no deep-learning framework, so it also calibrates logits saved by
//! PyTorch or any other tool:
//!
//! - Acc_{X/Z} for Y/Y, S/Y, U/Y, S/S, U/U, top-1 and top-5 ([`RankedScores::accuracy`]);
//! - the NCM probe on features ([`NcmProbe`]);
//! - the exact seen–unseen curve and AUSUC in O(N log N) ([`SeenUnseenCurve`]);
//! - γ by ALG ([`alg_gamma`]), PCV's selection rule ([`pcv_gamma`]) and the oracle
//!   ([`SeenUnseenCurve::oracle`]);
//! - `summary.json`, Markdown/CSV tables and the curve plot ([`Summary`], [`summary_table`],
//!   [`plot_seen_unseen`]).
//!
//! Inputs are `f32`; every sum is accumulated in `f64`. Among tied scores the lowest class index wins.

#![warn(missing_docs)]

pub mod classes;
pub mod curve;
mod error;
pub mod gamma;
pub mod io;
pub mod ncm;
pub mod pcv;
pub mod plot;
pub mod ranking;
pub mod report;
pub mod scores;
pub mod table;

pub use classes::{ClassSplit, Group, parse_class_list, parse_class_list_lines};
pub use curve::{CurvePoint, SeenUnseenCurve};
pub use error::{EvalError, describe_io_error};
pub use gamma::{PcvChoice, PcvFold, PcvFoldChoice, alg_gamma, apply_gamma, pcv_gamma};
pub use io::{read_scores, write_atomic, write_scores, write_scores_as};
pub use ncm::NcmProbe;
pub use pcv::{MeasuredFold, PcvFoldSplit, pcv_choice};
pub use plot::{
    BarGroup, CurveLine, EpochSeries, HeatCell, Heatmap, HeatmapPanel, PlotMark, curve_points, plot_bars,
    plot_epoch_values, plot_epochs, plot_heatmap, plot_seen_unseen, plot_seen_unseen_overlay,
};
pub use ranking::{Accuracy, AccuracyTable, RankedScores};
pub use report::{
    AccuracyPercent, CalibratedMetrics, CalibrationReport, Calibrations, Divergence, FineTuningMethod,
    ModelEvaluation, ModelMetrics, RunStatus, Summary, TOP5, calibrate,
};
pub use scores::{Matrix, Precision, Scores};
pub use table::{Table, TopK, curve_csv, summary_table};
