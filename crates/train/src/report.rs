//! The eval stage of a run: a pure function of the run directory's saved outputs (`ftcal eval RUN_DIR`
//! reruns it). It computes nothing itself; ftcal-eval does, on the files [`crate::pipeline`] wrote.
//!
//! Writes `summary.json`, `metrics.csv` (one row per evaluated epoch), `report.md` (the paper's Table-1
//! rows for this run, PCV's folds, the epochs), `curve.png` and `curve.csv` (the fine-tuned model's
//! seen–unseen curve with γ = 0, ALG, PCV and γ\* marked) and `epochs.png` (Acc_{S/Y}, Acc_{U/Y} and the
//! NCM probe's Acc_{U/Y} per epoch).

use std::fmt::Write as _;
use std::path::Path;

use ftcal_eval::{
    AccuracyPercent, CalibratedMetrics, ClassSplit, EpochSeries, FineTuningMethod, MeasuredFold,
    ModelEvaluation, PlotMark, RunStatus, Scores, Summary, Table, TopK, alg_gamma, curve_csv, pcv_choice,
    plot_epoch_values, plot_epochs, plot_seen_unseen, read_scores, summary_table, write_atomic,
};

pub use ftcal_eval::Divergence;

use crate::TrainError;
use crate::checkpoint::{Checkpoint, EpochRecord, TrainingState};
use crate::config::{CalibrationMethod, RunConfig, config_name};
use crate::head_norms::HeadNorms;
use crate::interrupt;
use crate::run_dir::{PRETRAINED_EPOCH, PcvFoldSplit, RunDir, SavedSplit, read_json, write_json};

/// One PCV fold's choice, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct PcvFoldReport {
    /// The fold's split of S.
    pub split: PcvFoldSplit,
    /// The γ the fold chose.
    pub gamma: f64,
    /// Whether some γ kept the pseudo-absent accuracy at the pre-trained model's.
    pub constraint_met: bool,
}

/// One evaluated epoch (a row of `metrics.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    /// −1 for the pre-trained model.
    pub epoch: i64,
    /// Mean training loss of the epoch.
    pub loss: Option<f64>,
    /// The head's learning rate at the epoch's end.
    pub lr: Option<f64>,
    /// The test split's metrics.
    pub test: ftcal_eval::ModelMetrics,
    /// γ by ALG on the training split of this epoch, when it was evaluated (and U is not empty).
    pub alg_gamma: Option<f64>,
    /// The oracle γ\* on the test curve; none when U is empty (nothing to calibrate).
    pub oracle_gamma: Option<f64>,
    /// The head's weight norms by group, measured on the model when the epoch was evaluated (not from its
    /// outputs: `ftcal eval` keeps them as recorded).
    pub head: HeadNorms,
}

/// Everything the eval stage computed.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// `summary.json`.
    pub summary: Summary,
    /// The evaluated epochs.
    pub epochs: Vec<EpochMetrics>,
    /// PCV's folds, when it ran.
    pub pcv_folds: Vec<PcvFoldReport>,
    /// The summary table (top-1) as Markdown, as `ftcal run` prints it.
    pub table: String,
}

/// The run's resolved config.
pub fn read_config(dir: &RunDir) -> Result<RunConfig, TrainError> {
    let path = dir.config();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        TrainError::file(
            &path,
            format!("{e}; is {} an ftcal run directory?", dir.root().display()),
        )
    })?;
    toml::from_str(&text).map_err(|e| TrainError::file(&path, e.to_string()))
}

/// `summary.json`, if written.
pub fn read_summary(dir: &RunDir) -> Result<Option<Summary>, TrainError> {
    let path = dir.summary();
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

fn read_split(dir: &RunDir) -> Result<ClassSplit, TrainError> {
    read_json::<SavedSplit>(&dir.classes())?.split()
}

fn training_history(dir: &RunDir) -> Result<Option<TrainingState>, TrainError> {
    Checkpoint::new(dir.checkpoint("fine_tuning")).state()
}

fn read_output(dir: &RunDir, split: &str, epoch: i64) -> Result<Option<Scores>, TrainError> {
    let path = dir.output(split, epoch);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(read_scores(&path)?))
}

/// The evaluation of one epoch's test outputs, with NCM class means from its training outputs.
fn evaluate_epoch(
    dir: &RunDir,
    epoch: i64,
    split: &ClassSplit,
) -> Result<Option<(ModelEvaluation, Option<Scores>)>, TrainError> {
    let Some(test) = read_output(dir, "test", epoch)? else {
        return Ok(None);
    };
    let train = read_output(dir, "train", epoch)?;
    let reference = train
        .as_ref()
        .filter(|t| t.features().is_some() && test.features().is_some());
    let evaluation = ModelEvaluation::new(&test, split, reference)?;
    Ok(Some((evaluation, train)))
}

/// The metrics of one evaluated epoch from its outputs (in memory as the run evaluates it, or read back):
/// the test split's tables, the NCM probe's with class means from the training split when both carry
/// features, ALG's γ on the training split, and the epoch's loss and lr from the training `history`.
pub fn epoch_metrics(
    epoch: i64,
    test: &Scores,
    train: Option<&Scores>,
    split: &ClassSplit,
    history: &[EpochRecord],
) -> Result<EpochMetrics, TrainError> {
    let reference = train.filter(|t| t.features().is_some() && test.features().is_some());
    let evaluation = ModelEvaluation::new(test, split, reference)?;
    // A run fine-tuned on every class (U empty) has accuracies but nothing to calibrate.
    let calibrates = !split.absent().is_empty();
    let record = usize::try_from(epoch)
        .ok()
        .and_then(|e| history.iter().find(|r| r.epoch == e));
    Ok(EpochMetrics {
        epoch,
        loss: record.map(|r| r.loss),
        lr: record.map(|r| r.lr),
        test: evaluation.metrics().clone(),
        alg_gamma: (train.filter(|_| calibrates))
            .map(|train| alg_gamma(train, split))
            .transpose()?,
        oracle_gamma: calibrates.then(|| evaluation.curve().oracle().gamma),
        head: HeadNorms::default(),
    })
}

/// The fine-tuning stage's loss and lr per epoch.
pub fn training_records(dir: &RunDir) -> Result<Vec<EpochRecord>, TrainError> {
    Ok(training_history(dir)?
        .map(|state| state.history)
        .unwrap_or_default())
}

/// Every row of `metrics.csv` computed again from the saved outputs (`ftcal eval`). An epoch saved without
/// features keeps the NCM metrics its `recorded` row holds: they were measured before the features were
/// dropped. The head's norms are always those recorded: they were measured on the model, not its outputs.
pub fn recompute_rows(
    dir: &RunDir,
    split: &ClassSplit,
    recorded: &[EpochMetrics],
) -> Result<Vec<EpochMetrics>, TrainError> {
    let history = training_records(dir)?;
    let mut rows = Vec::new();
    for epoch in dir.saved_epochs("test") {
        let Some(test) = read_output(dir, "test", epoch)? else {
            continue;
        };
        let train = read_output(dir, "train", epoch)?;
        let mut row = epoch_metrics(epoch, &test, train.as_ref(), split, &history)?;
        if let Some(earlier) = recorded.iter().find(|r| r.epoch == epoch) {
            if row.test.ncm.is_none() {
                row.test.ncm = earlier.test.ncm;
            }
            row.head = earlier.head;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The columns of `metrics.csv`, in order.
const METRICS_COLUMNS: [&str; 25] = [
    "epoch",
    "loss",
    "lr",
    "Y/Y",
    "S/Y",
    "U/Y",
    "S/S",
    "U/U",
    "top5 Y/Y",
    "top5 S/Y",
    "top5 U/Y",
    "top5 S/S",
    "top5 U/U",
    "NCM Y/Y",
    "NCM S/Y",
    "NCM U/Y",
    "NCM S/S",
    "NCM U/U",
    "AUSUC",
    "ALG gamma",
    "oracle gamma",
    "head norm S",
    "head norm U",
    "head bias S",
    "head bias U",
];

fn table_cells(table: Option<&AccuracyPercent>) -> [Option<f64>; 5] {
    table.map_or([None; 5], |t| [t.y_y, t.s_y, t.u_y, t.s_s, t.u_u])
}

fn table_of(cells: &[Option<f64>]) -> AccuracyPercent {
    AccuracyPercent {
        y_y: cells[0],
        s_y: cells[1],
        u_y: cells[2],
        s_s: cells[3],
        u_u: cells[4],
    }
}

fn metrics_csv(rows: &[EpochMetrics]) -> String {
    let mut out = METRICS_COLUMNS.join(",");
    out.push('\n');
    // Rust prints an f64 with the fewest digits that read back to the same value: the file round-trips.
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    for row in rows {
        let mut cells = vec![Some(row.epoch as f64), row.loss, row.lr];
        cells.extend(table_cells(Some(&row.test.acc)));
        cells.extend(table_cells(Some(&row.test.acc_top5)));
        cells.extend(table_cells(row.test.ncm.as_ref()));
        cells.extend([row.test.ausuc, row.alg_gamma, row.oracle_gamma]);
        let head = &row.head;
        cells.extend([
            head.fine_tuning,
            head.absent,
            head.fine_tuning_bias,
            head.absent_bias,
        ]);
        let line: Vec<String> = cells.into_iter().map(cell).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// The rows `metrics.csv` holds (none when there is no such file yet).
pub fn read_metrics(dir: &RunDir) -> Result<Vec<EpochMetrics>, TrainError> {
    let path = dir.metrics();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(TrainError::file(&path, error.to_string())),
    };
    let mut lines = text.lines();
    // A file of an older ftcal, with other columns: its rows are computed again.
    if lines.next() != Some(METRICS_COLUMNS.join(",").as_str()) {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    for (index, line) in lines.enumerate() {
        let bad = |what: &str| TrainError::file(&path, format!("line {}: {what}", index + 2));
        let cells: Vec<Option<f64>> = line
            .split(',')
            .map(|cell| (!cell.is_empty()).then(|| cell.parse::<f64>()).transpose())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("a cell is not a number"))?;
        if cells.len() != METRICS_COLUMNS.len() {
            return Err(bad(&format!(
                "{} cells for {} columns",
                cells.len(),
                METRICS_COLUMNS.len()
            )));
        }
        let ncm = cells[13..18]
            .iter()
            .any(Option::is_some)
            .then(|| table_of(&cells[13..18]));
        rows.push(EpochMetrics {
            epoch: cells[0].ok_or_else(|| bad("no epoch"))? as i64,
            loss: cells[1],
            lr: cells[2],
            test: ftcal_eval::ModelMetrics {
                acc: table_of(&cells[3..8]),
                acc_top5: table_of(&cells[8..13]),
                ncm,
                ausuc: cells[18],
            },
            alg_gamma: cells[19],
            oracle_gamma: cells[20],
            head: HeadNorms {
                fine_tuning: cells[21],
                absent: cells[22],
                fine_tuning_bias: cells[23],
                absent_bias: cells[24],
            },
        });
    }
    Ok(rows)
}

/// Records one evaluated epoch's row: `metrics.csv` is written again, atomically, with the row in its
/// place (it replaces a row of the same epoch). Each epoch is evaluated once, however long the run.
pub fn record_epoch(dir: &RunDir, row: EpochMetrics) -> Result<(), TrainError> {
    let mut rows = read_metrics(dir)?;
    rows.retain(|r| r.epoch != row.epoch);
    rows.push(row);
    rows.sort_by_key(|r| r.epoch);
    write_atomic(&dir.metrics(), metrics_csv(&rows).as_bytes())?;
    Ok(())
}

/// Where `evaluate_run` takes the per-epoch rows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochRows {
    /// `metrics.csv` as the run recorded it, one row per evaluated epoch (`ftcal run`).
    Recorded,
    /// Computed again from the saved outputs (`ftcal eval`).
    Recomputed,
}

/// PCV's γ from the saved folds, or `None` when not every fold has finished.
fn pcv(
    dir: &RunDir,
    config: &RunConfig,
    split: &ClassSplit,
) -> Result<Option<(f64, Vec<PcvFoldReport>)>, TrainError> {
    let Some(seeds) = &config.eval.pcv_seeds else {
        return Ok(None);
    };
    let Some(pretrained_train) = read_output(dir, "train", PRETRAINED_EPOCH)? else {
        return Ok(None);
    };
    let mut folds = Vec::with_capacity(seeds.len());
    for fold in 0..seeds.len() {
        let output = dir.pcv_output(fold);
        if !output.exists() {
            return Ok(None);
        }
        let fold_split: PcvFoldSplit = read_json(&dir.pcv_split(fold))?;
        let fold_scores = read_scores(&output)?;
        folds.push(MeasuredFold::new(
            fold_split,
            &fold_scores,
            &pretrained_train,
            split,
        )?);
    }
    let choice = pcv_choice(&folds)?;
    let reports = folds
        .into_iter()
        .zip(&choice.folds)
        .map(|(fold, chosen)| PcvFoldReport {
            split: fold.split,
            gamma: chosen.point.gamma,
            constraint_met: chosen.constraint_met,
        })
        .collect();
    Ok(Some((choice.gamma, reports)))
}

/// Computes the summary and the calibrations from the run directory's outputs and writes the report
/// files, `summary.json` last: a run killed while writing them has no new summary, and its rerun writes
/// them all again. The per-epoch rows come from `metrics.csv` or are computed again (`rows`).
pub fn evaluate_run(dir: &Path, rows: EpochRows) -> Result<RunReport, TrainError> {
    let dir = &RunDir::new(dir);
    let config = read_config(dir)?;
    let split = read_split(dir)?;
    let recorded = read_metrics(dir)?;
    let epochs = match rows {
        EpochRows::Recorded if !recorded.is_empty() => recorded,
        _ => recompute_rows(dir, &split, &recorded)?,
    };
    let earlier = read_summary(dir)?;
    let mut summary = Summary::default();
    let parts = config.fine_tuning.holistic_transfer_parts();
    summary.method = Some(FineTuningMethod {
        name: config_name(&config.fine_tuning.method),
        label: (!parts.is_empty()).then(|| crate::holistic::LABEL.to_string()),
        holistic_transfer_parts: parts,
    });
    if let Some((pretrained, _)) = evaluate_epoch(dir, PRETRAINED_EPOCH, &split)? {
        summary.pretrained = Some(pretrained.metrics().clone());
    }
    let finished = dir.fine_tuned_model().exists();
    let last = epochs.iter().map(|row| row.epoch).filter(|&e| e >= 0).max();
    let mut pcv_folds = Vec::new();
    let mut marks = Vec::new();
    let mut fine_tuned_curve = None;
    // A diverged run has no fine-tuned model: its last good epoch stays in metrics.csv, not in the summary.
    let diverged = earlier.as_ref().and_then(|s| s.status) == Some(RunStatus::Diverged);
    if let Some(last) = last.filter(|_| !diverged)
        && let Some((evaluation, train)) = evaluate_epoch(dir, last, &split)?
    {
        summary.finetuned = Some(evaluation.metrics().clone());
        // With U empty (a run fine-tuned on every class) there is nothing to calibrate.
        let methods: &[CalibrationMethod] = if split.absent().is_empty() {
            &[]
        } else {
            &config.eval.calibration
        };
        let calibrated = |gamma: f64| -> CalibratedMetrics { evaluation.calibrated(gamma) };
        if methods.contains(&CalibrationMethod::Alg)
            && let Some(train) = &train
        {
            summary.calibrated.alg = Some(calibrated(alg_gamma(train, &split)?));
        }
        if methods.contains(&CalibrationMethod::Pcv)
            && finished
            && let Some((gamma, folds)) = pcv(dir, &config, &split)?
        {
            summary.calibrated.pcv = Some(calibrated(gamma));
            pcv_folds = folds;
        }
        if methods.contains(&CalibrationMethod::Oracle) {
            summary.calibrated.oracle = Some(evaluation.oracle());
        }
        let point = evaluation.curve().point_at(0.0);
        if let (Some(s_y), Some(u_y)) = (point.s_y.percent(), point.u_y.percent()) {
            marks.push(PlotMark {
                label: "fine-tuned, γ = 0".into(),
                s_y,
                u_y,
            });
        }
        for (label, metrics) in [
            ("ALG", &summary.calibrated.alg),
            ("PCV", &summary.calibrated.pcv),
            ("oracle γ*", &summary.calibrated.oracle),
        ] {
            if let Some(m) = metrics
                && let (Some(s_y), Some(u_y)) = (m.acc.s_y, m.acc.u_y)
            {
                marks.push(PlotMark {
                    label: format!("{label}, γ = {:.2}", m.gamma),
                    s_y,
                    u_y,
                });
            }
        }
        if let Some(pretrained) = &summary.pretrained
            && let (Some(s_y), Some(u_y)) = (pretrained.acc.s_y, pretrained.acc.u_y)
        {
            marks.push(PlotMark {
                label: "pre-trained".into(),
                s_y,
                u_y,
            });
        }
        fine_tuned_curve = Some(evaluation.curve().clone());
    }
    let pcv_expected =
        config.eval.calibration.contains(&CalibrationMethod::Pcv) && !split.absent().is_empty();
    summary.status = match earlier.as_ref().and_then(|s| s.status) {
        Some(RunStatus::Diverged) => {
            summary.diverged = earlier.and_then(|s| s.diverged);
            Some(RunStatus::Diverged)
        }
        _ if finished && (!pcv_expected || !pcv_folds.is_empty()) => Some(RunStatus::Completed),
        _ => None,
    };
    interrupt::reached("report metrics.csv");
    write_atomic(&dir.metrics(), metrics_csv(&epochs).as_bytes())?;
    if let Some(curve) = &fine_tuned_curve {
        interrupt::reached("report curve");
        write_atomic(&dir.curve_csv(), curve_csv(curve).as_bytes())?;
        let title = format!(
            "{}: seen–unseen curve of the fine-tuned model (test)",
            config.name
        );
        // A test split without S or U has no curve to draw; the table still stands. Any other failure
        // to draw or write the plot is an error like that of any result file.
        if curve.is_defined() {
            plot_seen_unseen(curve, &marks, &title, &dir.curve_plot())?;
        }
    }
    if !epochs.is_empty() {
        let epoch_numbers: Vec<i64> = epochs.iter().map(|row| row.epoch).collect();
        let series = [
            ("Acc S/Y", epochs.iter().map(|r| r.test.acc.s_y).collect()),
            ("Acc U/Y", epochs.iter().map(|r| r.test.acc.u_y).collect()),
            (
                "NCM Acc U/Y",
                epochs.iter().map(|r| r.test.ncm.and_then(|n| n.u_y)).collect(),
            ),
        ]
        .map(|(label, values)| EpochSeries {
            label: label.to_string(),
            values,
        });
        interrupt::reached("report epochs.png");
        plot_epochs(
            &epoch_numbers,
            &series,
            &format!("{}: test accuracy per epoch", config.name),
            &dir.epochs_plot(),
        )?;
        let norms = [
            (
                "mean ‖w_c‖, c in S",
                epochs.iter().map(|r| r.head.fine_tuning).collect(),
            ),
            (
                "mean ‖w_c‖, c in U",
                epochs.iter().map(|r| r.head.absent).collect(),
            ),
            (
                "mean b_c, c in S",
                epochs.iter().map(|r| r.head.fine_tuning_bias).collect(),
            ),
            (
                "mean b_c, c in U",
                epochs.iter().map(|r| r.head.absent_bias).collect(),
            ),
        ]
        .map(|(label, values)| EpochSeries {
            label: label.to_string(),
            values,
        });
        // Rows recorded before the norms were (an older run) have none to draw.
        if norms.iter().any(|line| line.values.iter().any(Option::is_some)) {
            plot_epoch_values(
                &epoch_numbers,
                &norms,
                &format!("{}: the head's weights by class group", config.name),
                "norm / bias",
                &dir.head_norms_plot(),
            )?;
        }
    }
    let table = summary_table(&summary, TopK::Top1).to_markdown();
    let report = RunReport {
        summary,
        epochs,
        pcv_folds,
        table,
    };
    interrupt::reached("report report.md");
    write_atomic(
        &dir.report(),
        report_markdown(&config, &split, &report).as_bytes(),
    )?;
    interrupt::reached("report summary.json");
    write_json(&dir.summary(), &report.summary)?;
    Ok(report)
}

/// Writes `summary.json` for a run whose loss diverged, with what was measured before it.
pub fn write_diverged(dir: &RunDir, divergence: Divergence) -> Result<RunReport, TrainError> {
    let mut summary = read_summary(dir)?.unwrap_or_default();
    summary.status = Some(RunStatus::Diverged);
    summary.diverged = Some(divergence);
    write_json(&dir.summary(), &summary)?;
    evaluate_run(dir.root(), EpochRows::Recorded)
}

fn report_markdown(config: &RunConfig, split: &ClassSplit, report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", config.name);
    let fine_tuning = &config.fine_tuning;
    let _ = writeln!(
        out,
        "Model `{}`, backend `{}`{}, seed {}. Fine-tuning: method `{}`{}, optimizer `{}`, lr {} (backbone × {}), {} epochs of {}, batch {}.\n",
        config.model.arch,
        config_name(&config.backend),
        if config.precision.is_f32() {
            ""
        } else {
            " (bf16 mixed precision)"
        },
        config.seed,
        config_name(&fine_tuning.method),
        match fine_tuning.holistic_transfer_parts() {
            parts if parts.is_empty() => String::new(),
            parts => format!(" ({}: {})", crate::holistic::LABEL, parts.join(" + ")),
        },
        config_name(&fine_tuning.optimizer.name()),
        fine_tuning.lr,
        fine_tuning.backbone_multiplier(),
        fine_tuning.epochs,
        fine_tuning
            .iterations_per_epoch
            .map_or("one pass".to_string(), |n| format!("{n} iterations")),
        fine_tuning.batch_size,
    );
    let _ = writeln!(
        out,
        "S ({} classes): {:?}. U ({} classes): {:?}.{}\n",
        split.fine_tuning().len(),
        split.fine_tuning(),
        split.absent().len(),
        split.absent(),
        if split.num_outside() > 0 {
            format!(
                " {} further classes are outside S ∪ U and {} in the argmax.",
                split.num_outside(),
                if split.outside_compete() {
                    "compete"
                } else {
                    "do not compete"
                }
            )
        } else {
            String::new()
        }
    );
    if let Some(divergence) = &report.summary.diverged {
        let _ = writeln!(
            out,
            "**Diverged**: the loss of stage `{}` became NaN or infinite at epoch {}, iteration {}.\n",
            divergence.stage, divergence.epoch, divergence.iteration
        );
    }
    for k in &config.eval.top_k {
        let (title, top) = if *k == 1 {
            ("Top-1", TopK::Top1)
        } else {
            ("Top-5", TopK::Top5)
        };
        let _ = writeln!(out, "## {title} accuracy (%) on the test split\n");
        out.push_str(&summary_table(&report.summary, top).to_markdown());
        out.push('\n');
    }
    if !report.pcv_folds.is_empty() {
        let _ = writeln!(
            out,
            "## PCV folds\n\n| fold | seed | pseudo-absent | γ | constraint met |\n|---|---|---|---|---|"
        );
        for (index, fold) in report.pcv_folds.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {index} | {} | {:?} | {:.3} | {} |",
                fold.split.seed, fold.split.pseudo_absent, fold.gamma, fold.constraint_met
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Per epoch (test split, top-1 %)\n");
    let table = Table {
        columns: [
            "epoch",
            "loss",
            "Y/Y",
            "S/Y",
            "U/Y",
            "NCM U/Y",
            "AUSUC",
            "ALG γ",
            "γ*",
            "‖w‖ S",
            "‖w‖ U",
        ]
        .map(String::from)
        .to_vec(),
        rows: report
            .epochs
            .iter()
            .map(|row| {
                (
                    row.epoch.to_string(),
                    vec![
                        row.loss,
                        row.test.acc.y_y,
                        row.test.acc.s_y,
                        row.test.acc.u_y,
                        row.test.ncm.and_then(|n| n.u_y),
                        row.test.ausuc,
                        row.alg_gamma,
                        row.oracle_gamma,
                        row.head.fine_tuning,
                        row.head.absent,
                    ],
                )
            })
            .collect(),
        decimals: vec![4, 2, 2, 2, 2, 4, 3, 3, 3, 3],
    };
    out.push_str(&table.to_markdown());
    out.push_str("\n![seen–unseen curve](curve.png)\n\n![accuracy per epoch](epochs.png)\n");
    out.push_str("\n![the head's weight norms per epoch](head-norms.png)\n");
    out
}
