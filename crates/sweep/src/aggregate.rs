//! A sweep's results in one place: `sweep.csv` (a row per cell: its values, state and every figure of its
//! `summary.json`), `sweep.md`, the mean ± standard deviation over seed replicates (`sweep-seeds.csv`),
//! and heatmaps of two keys (learning rate × weight decay by default), one panel per value of the others
//! (the optimizer): the paper's appendix figure. A cell without results shows its state, never a number.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use ftcal_eval::{
    AccuracyPercent, CalibratedMetrics, HeatCell, Heatmap, HeatmapPanel, ModelMetrics, Summary, plot_heatmap,
    write_atomic,
};
use serde::{Deserialize, Serialize};

use crate::SweepError;
use crate::plan::{Cell, Sweep, value_text};
use crate::status::CellState;

/// `[heatmap]` of a sweep file: the keys on the heatmaps' rows and columns and the keys whose values make
/// the panels; replicates over the remaining keys (seeds) are averaged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeatmapSettings {
    /// Default: the key ending in `lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<String>,
    /// Default: the key ending in `weight_decay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<String>,
    /// Default: every other key but `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panels: Option<Vec<String>>,
}

/// The heatmaps' keys, resolved against a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeatmapAxes {
    /// The key on the rows.
    pub rows: String,
    /// The key on the columns.
    pub columns: String,
    /// The keys whose values make the panels.
    pub panels: Vec<String>,
}

/// The seed key: replicates differ only in it.
const SEED: &str = "seed";

impl Sweep {
    /// The heatmaps' keys: those of `[heatmap]`, each checked to be a key of the sweep, or the defaults;
    /// `None` when the sweep has no rows or no columns key to plot.
    pub fn heatmap_axes(&self) -> Result<Option<HeatmapAxes>, SweepError> {
        let settings = &self.file.heatmap;
        let known = |key: &String| -> Result<String, SweepError> {
            match self.keys.iter().find(|k| &k.key == key || &k.short == key) {
                Some(found) => Ok(found.key.clone()),
                None => Err(SweepError::File {
                    path: self.path.clone(),
                    message: format!("heatmap: `{key}` is not a key of this sweep"),
                }),
            }
        };
        let ending = |suffix: &str| {
            (self.keys.iter())
                .find(|k| k.key == suffix || k.key.ends_with(&format!(".{suffix}")))
                .map(|k| k.key.clone())
        };
        let rows = match &settings.rows {
            Some(key) => Some(known(key)?),
            None => ending("lr"),
        };
        let columns = match &settings.columns {
            Some(key) => Some(known(key)?),
            None => ending("weight_decay"),
        };
        let (Some(rows), Some(columns)) = (rows, columns) else {
            return Ok(None);
        };
        let panels = match &settings.panels {
            Some(keys) => keys.iter().map(known).collect::<Result<_, _>>()?,
            None => (self.keys.iter())
                .map(|k| k.key.clone())
                .filter(|key| *key != rows && *key != columns && key != SEED)
                .collect(),
        };
        Ok(Some(HeatmapAxes {
            rows,
            columns,
            panels,
        }))
    }
}

/// One cell's row: its state and summary.
struct Row<'a> {
    cell: &'a Cell,
    state: CellState,
    summary: Option<Summary>,
}

/// Reads one figure of a `summary.json`; `None` where it is undefined or was not computed.
type ReadFigure = Box<dyn Fn(&Summary) -> Option<f64>>;

/// A figure of `summary.json` as a column: its name and how to read it.
struct Figure {
    name: String,
    read: ReadFigure,
}

fn figures() -> Vec<Figure> {
    let mut figures = Vec::new();
    type Pick = fn(&AccuracyPercent) -> Option<f64>;
    let groups: [(&str, Pick); 5] = [
        ("Y/Y", |a| a.y_y),
        ("S/Y", |a| a.s_y),
        ("U/Y", |a| a.u_y),
        ("S/S", |a| a.s_s),
        ("U/U", |a| a.u_u),
    ];
    type Model = fn(&Summary) -> Option<&ModelMetrics>;
    let models: [(&str, Model); 2] = [
        ("pretrained", |s| s.pretrained.as_ref()),
        ("fine-tuned", |s| s.finetuned.as_ref()),
    ];
    for (model_name, model) in models {
        for (group, pick) in groups {
            figures.push(Figure {
                name: format!("{model_name} {group}"),
                read: Box::new(move |s| model(s).and_then(|m| pick(&m.acc))),
            });
        }
        figures.push(Figure {
            name: format!("{model_name} top5 Y/Y"),
            read: Box::new(move |s| model(s).and_then(|m| m.acc_top5.y_y)),
        });
        for (group, pick) in &groups[..3] {
            let pick = *pick;
            figures.push(Figure {
                name: format!("{model_name} NCM {group}"),
                read: Box::new(move |s| model(s).and_then(|m| m.ncm.as_ref()).and_then(pick)),
            });
        }
        figures.push(Figure {
            name: format!("{model_name} AUSUC"),
            read: Box::new(move |s| model(s).and_then(|m| m.ausuc)),
        });
    }
    type Calibration = fn(&Summary) -> Option<&CalibratedMetrics>;
    let calibrations: [(&str, Calibration); 3] = [
        ("ALG", |s| s.calibrated.alg.as_ref()),
        ("PCV", |s| s.calibrated.pcv.as_ref()),
        ("oracle", |s| s.calibrated.oracle.as_ref()),
    ];
    for (calibration_name, calibration) in calibrations {
        figures.push(Figure {
            name: format!("{calibration_name} gamma"),
            read: Box::new(move |s| calibration(s).map(|c| c.gamma)),
        });
        for (group, pick) in groups {
            figures.push(Figure {
                name: format!("{calibration_name} {group}"),
                read: Box::new(move |s| calibration(s).and_then(|c| pick(&c.acc))),
            });
        }
        figures.push(Figure {
            name: format!("{calibration_name} top5 Y/Y"),
            read: Box::new(move |s| calibration(s).and_then(|c| c.acc_top5.y_y)),
        });
    }
    figures
}

/// The figures of `sweep.md`'s tables and of the seed means: (column, figure name).
const HEADLINE: [(&str, &str); 7] = [
    ("FT Y/Y", "fine-tuned Y/Y"),
    ("FT S/Y", "fine-tuned S/Y"),
    ("FT U/Y", "fine-tuned U/Y"),
    ("AUSUC", "fine-tuned AUSUC"),
    ("+ALG Y/Y", "ALG Y/Y"),
    ("+PCV Y/Y", "PCV Y/Y"),
    ("γ* Y/Y", "oracle Y/Y"),
];

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// `sweep.csv`, `sweep.md`, and the seed means and heatmaps where there are some.
    pub files: Vec<PathBuf>,
    /// `sweep.md`'s text.
    pub markdown: String,
    /// Why there is no heatmap, when there is none.
    pub no_heatmap: Option<String>,
}

/// Writes the sweep's report into its folder from what every cell's run directory holds now.
pub fn write_report(sweep: &Sweep) -> Result<ReportFiles, SweepError> {
    std::fs::create_dir_all(&sweep.dir).map_err(|e| SweepError::io(&sweep.dir, &e))?;
    let figures = figures();
    let mut rows = Vec::with_capacity(sweep.cells.len());
    for cell in &sweep.cells {
        let (state, summary) = sweep.state_and_summary(cell)?;
        rows.push(Row { cell, state, summary });
    }
    let value = |row: &Row<'_>, name: &str| -> Option<f64> {
        let figure = figures.iter().find(|f| f.name == name).expect("a known figure");
        row.summary.as_ref().and_then(|summary| (figure.read)(summary))
    };
    let mut files = Vec::new();

    let mut csv = String::from("cell");
    for key in &sweep.keys {
        write!(csv, ",{}", csv_field(&key.key)).unwrap();
    }
    csv.push_str(",status,detail");
    for figure in &figures {
        write!(csv, ",{}", csv_field(&figure.name)).unwrap();
    }
    csv.push('\n');
    for row in &rows {
        csv.push_str(&csv_field(&row.cell.name));
        for key in &sweep.keys {
            write!(
                csv,
                ",{}",
                csv_field(&row.cell.value_text(&key.key).unwrap_or_default())
            )
            .unwrap();
        }
        write!(csv, ",{},{}", row.state.word(), csv_field(&detail(&row.state))).unwrap();
        for figure in &figures {
            let text = row
                .summary
                .as_ref()
                .and_then(|s| (figure.read)(s))
                .map(|v| v.to_string());
            write!(csv, ",{}", text.unwrap_or_default()).unwrap();
        }
        csv.push('\n');
    }
    let path = sweep.dir.join("sweep.csv");
    write_atomic(&path, csv.as_bytes())?;
    files.push(path);

    let mut markdown = format!("# Sweep `{}`\n\n", sweep.name);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        *counts.entry(row.state.word()).or_default() += 1;
    }
    let counted: Vec<String> = counts.iter().map(|(word, n)| format!("{n} {word}")).collect();
    writeln!(markdown, "{} cells: {}.\n", rows.len(), counted.join(", ")).unwrap();
    let mut header: Vec<String> = sweep.keys.iter().map(|k| k.short.clone()).collect();
    header.push("status".into());
    header.extend(HEADLINE.iter().map(|(column, _)| column.to_string()));
    markdown_row(&mut markdown, &header);
    markdown_row(&mut markdown, &vec!["---".to_string(); header.len()]);
    for row in &rows {
        let mut line: Vec<String> = (sweep.keys.iter())
            .map(|k| row.cell.value_text(&k.key).unwrap_or_default())
            .collect();
        line.push(row.state.to_string());
        for (column, name) in HEADLINE {
            let decimals = if column == "AUSUC" { 4 } else { 2 };
            line.push(value(row, name).map_or(String::new(), |v| format!("{v:.decimals$}")));
        }
        markdown_row(&mut markdown, &line);
    }

    if sweep.keys.iter().any(|k| k.key == SEED) {
        let (seed_csv, seed_markdown) = seed_means(sweep, &rows, &value);
        let path = sweep.dir.join("sweep-seeds.csv");
        write_atomic(&path, seed_csv.as_bytes())?;
        files.push(path);
        markdown.push_str(&seed_markdown);
    }

    let mut no_heatmap = None;
    match sweep.heatmap_axes()? {
        Some(axes) => {
            for (file, title, name, decimals) in [
                (
                    "heatmap-ausuc.png",
                    "AUSUC of the fine-tuned model",
                    "fine-tuned AUSUC",
                    3,
                ),
                ("heatmap-alg.png", "Acc Y/Y after ALG (%)", "ALG Y/Y", 1),
            ] {
                let heatmap = heatmap(sweep, &axes, &rows, title, decimals, &|row| value(row, name));
                let path = sweep.dir.join(file);
                plot_heatmap(&heatmap, &path)?;
                writeln!(markdown, "\n![{title}]({file})").unwrap();
                files.push(path);
            }
        }
        None => no_heatmap = Some(
            "no heatmap: the sweep varies no learning rate or no weight decay; name the keys in [heatmap]"
                .to_string(),
        ),
    }
    let path = sweep.dir.join("sweep.md");
    write_atomic(&path, markdown.as_bytes())?;
    files.push(path);
    Ok(ReportFiles {
        files,
        markdown,
        no_heatmap,
    })
}

/// `sweep-seeds.csv` and `sweep.md`'s section: per combination of the other keys, the number of
/// completed seeds and the mean ± sample standard deviation (n − 1) of each headline figure.
fn seed_means(
    sweep: &Sweep,
    rows: &[Row<'_>],
    value: &dyn Fn(&Row<'_>, &str) -> Option<f64>,
) -> (String, String) {
    let others: Vec<&str> = (sweep.keys.iter())
        .map(|k| k.key.as_str())
        .filter(|key| *key != SEED)
        .collect();
    let mut groups: Vec<(Vec<String>, Vec<&Row<'_>>)> = Vec::new();
    for row in rows {
        let values: Vec<String> = (others.iter())
            .map(|key| row.cell.value_text(key).unwrap_or_default())
            .collect();
        match groups.iter_mut().find(|(group, _)| *group == values) {
            Some((_, members)) => members.push(row),
            None => groups.push((values, vec![row])),
        }
    }
    let mut csv = String::new();
    let mut header: Vec<String> = others.iter().map(|key| csv_field(key)).collect();
    header.extend([
        "seeds".to_string(),
        "completed".to_string(),
        "diverged".to_string(),
    ]);
    for (_, name) in HEADLINE {
        header.push(csv_field(&format!("{name} mean")));
        header.push(csv_field(&format!("{name} std")));
    }
    csv.push_str(&header.join(","));
    csv.push('\n');
    let mut markdown = String::from("\n## Mean ± standard deviation over seeds\n\n");
    let mut md_header: Vec<String> = (sweep.keys.iter())
        .filter(|k| k.key != SEED)
        .map(|k| k.short.clone())
        .collect();
    md_header.push("seeds".into());
    md_header.extend(HEADLINE.iter().map(|(column, _)| column.to_string()));
    markdown_row(&mut markdown, &md_header);
    markdown_row(&mut markdown, &vec!["---".to_string(); md_header.len()]);
    for (values, members) in &groups {
        let completed = members.iter().filter(|r| r.state == CellState::Completed).count();
        let diverged = (members.iter())
            .filter(|r| matches!(r.state, CellState::Diverged { .. }))
            .count();
        let mut line: Vec<String> = values.iter().map(|v| csv_field(v)).collect();
        line.extend([
            members.len().to_string(),
            completed.to_string(),
            diverged.to_string(),
        ]);
        let mut md_line = values.clone();
        let mut seeds = format!("{completed}/{}", members.len());
        if diverged > 0 {
            write!(seeds, " ({diverged} diverged)").unwrap();
        }
        md_line.push(seeds);
        for (column, name) in HEADLINE {
            let sample: Vec<f64> = members.iter().filter_map(|row| value(row, name)).collect();
            let (mean, std) = mean_and_std(&sample);
            line.push(mean.map(|v| v.to_string()).unwrap_or_default());
            line.push(std.map(|v| v.to_string()).unwrap_or_default());
            let decimals = if column == "AUSUC" { 4 } else { 2 };
            md_line.push(match (mean, std) {
                (Some(mean), Some(std)) => format!("{mean:.decimals$} ± {std:.decimals$}"),
                (Some(mean), None) => format!("{mean:.decimals$}"),
                _ => String::new(),
            });
        }
        csv.push_str(&line.join(","));
        csv.push('\n');
        markdown_row(&mut markdown, &md_line);
    }
    (csv, markdown)
}

/// The mean, and the sample standard deviation (n − 1; none for one value).
pub fn mean_and_std(values: &[f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (Some(mean), None);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (Some(mean), Some(variance.sqrt()))
}

/// The heatmap of one figure: rows and columns in increasing order of their values (numbers by value),
/// a cell the mean over its replicates when all of them completed, else what they are.
fn heatmap(
    sweep: &Sweep,
    axes: &HeatmapAxes,
    rows: &[Row<'_>],
    title: &str,
    decimals: usize,
    value: &dyn Fn(&Row<'_>) -> Option<f64>,
) -> Heatmap {
    let ordered = |key: &str, rows: &[&Row<'_>]| -> Vec<String> {
        let mut seen: Vec<(Option<f64>, String)> = Vec::new();
        for row in rows {
            if let Some((_, raw)) = row.cell.values.iter().find(|(name, _)| name == key) {
                let text = value_text(raw);
                if !seen.iter().any(|(_, existing)| *existing == text) {
                    let number = raw.as_float().or_else(|| raw.as_integer().map(|i| i as f64));
                    seen.push((number, text));
                }
            }
        }
        if seen.iter().all(|(number, _)| number.is_some()) {
            seen.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        }
        seen.into_iter().map(|(_, text)| text).collect()
    };
    let all_rows: Vec<&Row<'_>> = rows.iter().collect();
    let column_values = ordered(&axes.columns, &all_rows);
    let mut panel_values: Vec<Vec<String>> = Vec::new();
    for row in rows {
        let values: Vec<String> = (axes.panels.iter())
            .map(|key| row.cell.value_text(key).unwrap_or_default())
            .collect();
        if !panel_values.contains(&values) {
            panel_values.push(values);
        }
    }
    let short = |key: &str| {
        (sweep.keys.iter())
            .find(|k| k.key == key)
            .map_or(key.to_string(), |k| k.short.clone())
    };
    let panels = panel_values
        .iter()
        .map(|values| {
            let members: Vec<&Row<'_>> = (rows.iter())
                .filter(|row| {
                    (axes.panels.iter().zip(values))
                        .all(|(key, value)| row.cell.value_text(key).unwrap_or_default() == *value)
                })
                .collect();
            // Each panel its own rows: e.g. each optimizer over its own learning rates.
            let row_values = ordered(&axes.rows, &members);
            let cells = (row_values.iter())
                .map(|r| {
                    (column_values.iter())
                        .map(|c| {
                            let replicates: Vec<&Row<'_>> = (members.iter().copied())
                                .filter(|row| row.cell.value_text(&axes.rows).as_deref() == Some(r))
                                .filter(|row| row.cell.value_text(&axes.columns).as_deref() == Some(c))
                                .collect();
                            heat_cell(&replicates, value)
                        })
                        .collect()
                })
                .collect();
            let title = (axes.panels.iter().zip(values))
                .map(|(key, value)| format!("{}={value}", short(key)))
                .collect::<Vec<_>>()
                .join(", ");
            HeatmapPanel {
                title: if title.is_empty() {
                    sweep.name.clone()
                } else {
                    title
                },
                rows: row_values,
                cells,
            }
        })
        .collect();
    let replicated = sweep.keys.iter().any(|k| k.key == SEED);
    Heatmap {
        title: if replicated {
            format!("{title}, mean over seeds")
        } else {
            title.to_string()
        },
        row_label: short(&axes.rows),
        column_label: short(&axes.columns),
        columns: column_values,
        decimals,
        panels,
    }
}

fn heat_cell(replicates: &[&Row<'_>], value: &dyn Fn(&Row<'_>) -> Option<f64>) -> HeatCell {
    let n = replicates.len();
    if n == 0 {
        return HeatCell::State("not in sweep".into());
    }
    let count = |pick: fn(&CellState) -> bool| replicates.iter().filter(|r| pick(&r.state)).count();
    let diverged = count(|s| matches!(s, CellState::Diverged { .. }));
    let failed = count(|s| matches!(s, CellState::Failed { .. }));
    let completed = count(|s| *s == CellState::Completed);
    if diverged > 0 {
        return HeatCell::State(if diverged == n {
            "diverged".into()
        } else {
            format!("diverged {diverged}/{n}")
        });
    }
    if failed > 0 {
        return HeatCell::State("failed".into());
    }
    if completed < n {
        return HeatCell::State(match replicates {
            [only] => only.state.word().to_string(),
            _ => format!("{completed}/{n} done"),
        });
    }
    let values: Vec<f64> = replicates.iter().filter_map(|row| value(row)).collect();
    match mean_and_std(&values) {
        (Some(mean), _) if values.len() == n => HeatCell::Value(mean),
        _ => HeatCell::State("undefined".into()),
    }
}

fn detail(state: &CellState) -> String {
    match state {
        CellState::Diverged { at } => at.clone(),
        CellState::Failed { error } => error.lines().next().unwrap_or("").to_string(),
        _ => String::new(),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn markdown_row(out: &mut String, cells: &[String]) {
    let cells: Vec<String> = cells.iter().map(|cell| cell.replace('|', "\\|")).collect();
    writeln!(out, "| {} |", cells.join(" | ")).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftcal_eval::{Divergence, RunStatus};

    /// A sweep of lr × wd × seed over a minimal base config in `dir`, nothing run.
    fn sweep_in(dir: &std::path::Path) -> Sweep {
        let base = dir.join("base.toml");
        std::fs::write(
            &base,
            "name = \"b\"\n[model]\narch = \"resnet18\"\n[data.target]\nkind = \"digits2\"\n\
             domain = \"optdigits\"\n[data.classes]\nfine_tuning = [0, 1, 2]\n[fine_tuning]\nepochs = 2\nlr = 0.1\n[fine_tuning.optimizer]\nname = \"sgd\"\n",
        )
        .unwrap();
        let file = dir.join("s.toml");
        std::fs::write(
            &file,
            format!(
                "base = \"{}\"\noutput_dir = \"{}\"\n[grid]\n\"fine_tuning.lr\" = [0.1, 0.01]\n\
                 \"fine_tuning.optimizer.weight_decay\" = [0.0]\nseed = [0, 1, 2]\n",
                base.display(),
                dir.display()
            ),
        )
        .unwrap();
        Sweep::load(&file, &[]).unwrap()
    }

    /// A CSV file as rows of (column → field), quotes undone.
    fn read_csv(path: &std::path::Path) -> Vec<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(path).unwrap();
        let split = |line: &str| {
            let mut fields = vec![String::new()];
            let mut quoted = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match (c, quoted) {
                    ('"', true) if chars.peek() == Some(&'"') => {
                        chars.next();
                        fields.last_mut().unwrap().push('"');
                    }
                    ('"', _) => quoted = !quoted,
                    (',', false) => fields.push(String::new()),
                    (c, _) => fields.last_mut().unwrap().push(c),
                }
            }
            fields
        };
        let mut lines = text.lines().map(split);
        let header = lines.next().unwrap();
        lines
            .map(|fields| header.iter().cloned().zip(fields).collect())
            .collect()
    }

    fn write_summary(cell: &Cell, summary: &Summary) {
        std::fs::create_dir_all(&cell.dir).unwrap();
        let json = serde_json::to_string(summary).unwrap();
        std::fs::write(cell.dir.join("summary.json"), json).unwrap();
    }

    fn completed(ausuc: f64, y_y: f64) -> Summary {
        Summary {
            status: Some(RunStatus::Completed),
            finetuned: Some(ModelMetrics {
                acc: AccuracyPercent {
                    y_y: Some(y_y),
                    ..AccuracyPercent::default()
                },
                ausuc: Some(ausuc),
                ..ModelMetrics::default()
            }),
            ..Summary::default()
        }
    }

    #[test]
    fn the_report_averages_seeds_and_shows_states_not_numbers() {
        let temp = tempfile::tempdir().unwrap();
        let sweep = sweep_in(temp.path());
        let names: Vec<&str> = sweep.cells.iter().map(|cell| cell.name.as_str()).collect();
        assert_eq!(names[0], "lr=0.1,wd=0,seed=0");
        assert_eq!(names[5], "lr=0.01,wd=0,seed=2");
        // lr 0.1: three finished seeds. lr 0.01: one finished, one diverged, one never run.
        let ausucs = [0.5, 0.6, 0.7];
        let accuracies = [40.0, 45.0, 53.0];
        for (cell, (ausuc, y_y)) in sweep.cells[..3].iter().zip(ausucs.iter().zip(&accuracies)) {
            write_summary(cell, &completed(*ausuc, *y_y));
        }
        write_summary(&sweep.cells[3], &completed(0.9, 70.0));
        let diverged = Summary {
            status: Some(RunStatus::Diverged),
            diverged: Some(Divergence {
                stage: "fine_tuning".into(),
                epoch: 2,
                iteration: 5,
            }),
            ..Summary::default()
        };
        write_summary(&sweep.cells[4], &diverged);
        let written = write_report(&sweep).unwrap();
        assert!(
            written
                .markdown
                .contains("6 cells: 4 completed, 1 diverged, 1 pending."),
            "{}",
            written.markdown
        );

        let rows = read_csv(&sweep.dir.join("sweep.csv"));
        let field = |i: usize, name: &str| rows[i][name].clone();
        assert_eq!(field(0, "cell"), "lr=0.1,wd=0,seed=0");
        assert_eq!(field(0, "status"), "completed");
        assert_eq!(field(0, "fine-tuned AUSUC"), "0.5");
        assert_eq!(field(4, "status"), "diverged");
        assert_eq!(field(4, "detail"), "fine_tuning, epoch 2, iteration 5");
        assert_eq!(
            field(4, "fine-tuned AUSUC"),
            "",
            "a diverged cell has no number, not a zero"
        );
        assert_eq!(field(5, "status"), "pending");

        // The seed means, against the sample statistics computed here.
        let seeds = read_csv(&sweep.dir.join("sweep-seeds.csv"));
        let at = |name: &str| seeds[0][name].as_str();
        assert_eq!((at("seeds"), at("completed"), at("diverged")), ("3", "3", "0"));
        let mean = ausucs.iter().sum::<f64>() / 3.0;
        let std = (ausucs.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / 2.0).sqrt();
        assert!((at("fine-tuned AUSUC mean").parse::<f64>().unwrap() - mean).abs() < 1e-12);
        assert!((at("fine-tuned AUSUC std").parse::<f64>().unwrap() - std).abs() < 1e-12);
        let second = &seeds[1];
        let counts = [
            "fine_tuning.lr",
            "seeds",
            "completed",
            "diverged",
            "fine-tuned AUSUC std",
        ]
        .map(|k| second[k].as_str());
        assert_eq!(
            counts,
            ["0.01", "3", "1", "1", ""],
            "one completed seed: a mean, no std"
        );

        // The heatmap: lr 0.01 first (numbers in increasing order), its cell the divergence, not a mean.
        let axes = sweep.heatmap_axes().unwrap().unwrap();
        assert_eq!(
            (axes.rows.as_str(), axes.columns.as_str()),
            ("fine_tuning.lr", "fine_tuning.optimizer.weight_decay")
        );
        assert!(axes.panels.is_empty(), "the seed is averaged, not a panel");
        let rows: Vec<Row<'_>> = sweep
            .cells
            .iter()
            .map(|cell| {
                let (state, summary) = sweep.state_and_summary(cell).unwrap();
                Row { cell, state, summary }
            })
            .collect();
        let map = heatmap(&sweep, &axes, &rows, "AUSUC", 3, &|row| {
            row.summary
                .as_ref()
                .and_then(|s| s.finetuned.as_ref())
                .and_then(|m| m.ausuc)
        });
        assert_eq!(map.panels.len(), 1);
        assert_eq!(map.panels[0].rows, ["0.01", "0.1"]);
        assert_eq!(map.panels[0].cells[0], [HeatCell::State("diverged 1/3".into())]);
        match &map.panels[0].cells[1][0] {
            HeatCell::Value(value) => assert!((value - mean).abs() < 1e-12),
            other => panic!("{other:?}"),
        }
        assert!(sweep.dir.join("heatmap-ausuc.png").exists());
    }

    #[test]
    fn the_standard_deviation_is_the_samples() {
        let (mean, std) = mean_and_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(mean, Some(5.0));
        // Σ(x − 5)² = 32, over n − 1 = 7.
        assert!((std.unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_and_std(&[3.0]), (Some(3.0), None));
        assert_eq!(mean_and_std(&[]), (None, None));
    }

    #[test]
    fn csv_fields_are_quoted_when_they_must_be() {
        assert_eq!(csv_field("lr=0.1,wd=0"), "\"lr=0.1,wd=0\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
