//! The figures: Figure 1 per benchmark (the seen–unseen curves of fine-tuning and of Holistic Transfer,
//! with the pre-trained point and γ = 0, ALG, PCV and γ\* marked) and the NCM bar chart (the probe's
//! Acc_{U/Y} before and after fine-tuning, per benchmark).

use std::path::{Path, PathBuf};

use ftcal_eval::{BarGroup, CurveLine, PlotMark, plot_bars, plot_seen_unseen_overlay};
use ftcal_sweep::CellState;

use crate::ReportError;
use crate::method::Method;
use crate::runs::{RunRecord, Runs};
use crate::tables::{TableCell, aggregate};

/// What [`write_figures`] drew and what it could not.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// The PNG files written.
    pub written: Vec<PathBuf>,
    /// A figure not drawn, and why.
    pub skipped: Vec<String>,
}

/// Draws Figure 1 for each benchmark with a completed fine-tuning run (`figure1-<benchmark>.png`) and
/// the NCM bar chart (`ncm.png`) into `out`.
pub fn write_figures(runs: &Runs, out: &Path) -> Result<Figures, ReportError> {
    let mut figures = Figures::default();
    for benchmark in &runs.benchmarks {
        let path = out.join(format!("figure1-{}.png", file_slug(benchmark)));
        let fine_tuning = first_completed(runs, benchmark, Method::FineTuning);
        let holistic = first_completed(runs, benchmark, Method::HolisticTransfer);
        if fine_tuning.is_none() && holistic.is_none() {
            figures.skipped.push(format!(
                "Figure 1 of `{benchmark}`: no completed fine-tuning or Holistic Transfer run"
            ));
            continue;
        }
        let mut curves = Vec::new();
        let mut marks = Vec::new();
        let mut seeds = Vec::new();
        let mut missing = Vec::new();
        for (record, name) in [(fine_tuning, "fine-tuning"), (holistic, "HT")] {
            let Some(record) = record else { continue };
            let summary = record.summary.as_ref().expect("a completed run has a summary");
            let curve = record.dir.join("curve.csv");
            if !curve.exists() {
                missing.push(curve.display().to_string());
                continue;
            }
            seeds.push(format!("{name} seed {}", record.seed));
            curves.push(CurveLine {
                label: format!("{name}: seen–unseen curve"),
                points: read_curve(&curve)?,
            });
            let first = marks.is_empty();
            let mut mark = |label: String, acc: Option<&ftcal_eval::AccuracyPercent>| {
                if let Some((s_y, u_y)) = acc.and_then(|a| Some((a.s_y?, a.u_y?))) {
                    marks.push(PlotMark { label, s_y, u_y });
                }
            };
            if first {
                mark("pre-trained".into(), summary.pretrained.as_ref().map(|m| &m.acc));
            }
            mark(
                format!("{name}, γ = 0"),
                summary.finetuned.as_ref().map(|m| &m.acc),
            );
            let calibrated = &summary.calibrated;
            for (label, calibration) in [
                ("ALG", &calibrated.alg),
                ("PCV", &calibrated.pcv),
                ("γ*", &calibrated.oracle),
            ] {
                mark(format!("{name} + {label}"), calibration.as_ref().map(|c| &c.acc));
            }
        }
        if curves.is_empty() {
            figures.skipped.push(format!(
                "Figure 1 of `{benchmark}`: no curve.csv ({})",
                missing.join(", ")
            ));
            continue;
        }
        let title = format!("{benchmark} ({})", seeds.join(", "));
        plot_seen_unseen_overlay(&curves, &marks, &title, &path)?;
        figures.written.push(path);
    }

    let groups: Vec<BarGroup> = (runs.benchmarks.iter())
        .map(|benchmark| {
            let members = first_variant(runs, benchmark, Method::FineTuning);
            let mean = |read: fn(&RunRecord) -> Option<f64>| match aggregate(&members, read) {
                TableCell::Value { mean, .. } => Some(mean),
                _ => None,
            };
            BarGroup {
                label: benchmark.clone(),
                values: vec![
                    mean(|r| r.summary.as_ref()?.pretrained.as_ref()?.ncm?.u_y),
                    mean(|r| r.summary.as_ref()?.finetuned.as_ref()?.ncm?.u_y),
                ],
            }
        })
        .collect();
    if groups.iter().any(|g| g.values.iter().any(Option::is_some)) {
        let path = out.join("ncm.png");
        let series = ["pre-trained".to_string(), "fine-tuned".to_string()];
        plot_bars(
            &groups,
            &series,
            "NCM probe on the penultimate features: Acc U/Y before and after fine-tuning",
            "NCM Acc U/Y (%)",
            &path,
        )?;
        figures.written.push(path);
    } else {
        figures
            .skipped
            .push("ncm.png: no completed fine-tuning run with NCM figures (features saved)".into());
    }
    Ok(figures)
}

/// The runs of the method's first variant in `benchmark`.
fn first_variant<'a>(runs: &'a Runs, benchmark: &str, method: Method) -> Vec<&'a RunRecord> {
    match runs.variants(method).first() {
        Some(variant) => runs.members(benchmark, method, variant),
        None => Vec::new(),
    }
}

/// The completed run of the method's first variant with the lowest seed: the one a figure draws.
fn first_completed<'a>(runs: &'a Runs, benchmark: &str, method: Method) -> Option<&'a RunRecord> {
    (first_variant(runs, benchmark, method).into_iter())
        .filter(|r| r.state == CellState::Completed && r.summary.is_some())
        .min_by_key(|r| r.seed)
}

/// The (S/Y, U/Y) points of a run's `curve.csv`.
fn read_curve(path: &Path) -> Result<Vec<(f64, f64)>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, &e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let index = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| ReportError::Input {
                path: path.to_path_buf(),
                message: format!("no `{name}` column"),
            })
    };
    let (s_y, u_y) = (index("S/Y")?, index("U/Y")?);
    let mut points = Vec::new();
    for (number, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        match (parse(s_y), parse(u_y)) {
            (Some(s), Some(u)) => points.push((s, u)),
            _ if fields.get(s_y).is_some_and(|f| f.is_empty()) => {}
            _ => {
                return Err(ReportError::Input {
                    path: path.to_path_buf(),
                    message: format!("line {}: not a curve point: `{line}`", number + 2),
                });
            }
        }
    }
    Ok(points)
}

/// A benchmark's name as a file name: letters, digits, `-` and `.`; anything else becomes `_`.
pub fn file_slug(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if slug.is_empty() { "benchmark".into() } else { slug }
}
