//! The tables: which rows come from which runs and figures (the paper's Table 1, Table 2 and appendix
//! comparisons), each cell the mean ± sample standard deviation over seeds, or the state of its runs.

use std::collections::BTreeMap;

use ftcal_eval::{AccuracyPercent, CalibratedMetrics, ModelMetrics, Summary};
use ftcal_sweep::CellState;
use ftcal_sweep::aggregate::mean_and_std;

use crate::method::Method;
use crate::runs::{RunRecord, Runs};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum TableCell {
    /// Every run of the cell completed: the mean, and the sample standard deviation (n − 1) over `seeds`
    /// runs when there are two or more.
    Value {
        /// The mean over the runs.
        mean: f64,
        /// The sample standard deviation, none for one run.
        std: Option<f64>,
        /// How many runs (seeds).
        seeds: usize,
    },
    /// The runs completed, but the figure is not defined for them (e.g. U/Y of a run with U empty, PCV
    /// not run).
    Undefined,
    /// Not every run completed: what they are (`missing`, `pending`, `running`, `interrupted`, `failed`,
    /// `diverged`, or counts such as `diverged 1/3`).
    State(String),
}

/// A column under each benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// Its header, e.g. `Y/Y`.
    pub name: String,
    /// Decimals shown (the CSV keeps full precision).
    pub decimals: usize,
    /// Whether the best (highest) value of the column is set in bold (not for γ).
    pub bold_best: bool,
}

/// A row of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// Its label, e.g. `Fine-tuning + γ (ALG)`.
    pub label: String,
    /// A reference, not a method (the Oracle, γ\*): never bold, never the best.
    pub reference: bool,
    /// Its cells: for each benchmark in order, one per column.
    pub cells: Vec<TableCell>,
}

/// A table: column groups (benchmarks) of the same columns, and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportTable {
    /// Its file name without extension, e.g. `table1`.
    pub name: String,
    /// Its caption.
    pub title: String,
    /// The benchmarks, in order.
    pub benchmarks: Vec<String>,
    /// The columns of each benchmark.
    pub columns: Vec<ColumnSpec>,
    /// The rows, in order.
    pub rows: Vec<ReportRow>,
}

impl ReportTable {
    /// The cell of `row` in `benchmark`'s `column` (indices).
    pub fn cell(&self, row: usize, benchmark: usize, column: usize) -> &TableCell {
        &self.rows[row].cells[benchmark * self.columns.len() + column]
    }

    /// The best mean of a column among the rows that are not references, when the column is ranked and
    /// at least two rows have a value.
    pub fn best(&self, benchmark: usize, column: usize) -> Option<f64> {
        if !self.columns[column].bold_best {
            return None;
        }
        let values: Vec<f64> = (0..self.rows.len())
            .filter(|&row| !self.rows[row].reference)
            .filter_map(|row| match self.cell(row, benchmark, column) {
                TableCell::Value { mean, .. } => Some(*mean),
                _ => None,
            })
            .collect();
        if values.len() < 2 {
            return None;
        }
        Some(values.into_iter().fold(f64::NEG_INFINITY, f64::max))
    }

    /// Whether the cell is the best of its column (at the precision it is shown with: a tie is bold twice).
    pub fn is_best(&self, row: usize, benchmark: usize, column: usize) -> bool {
        let (Some(best), false) = (self.best(benchmark, column), self.rows[row].reference) else {
            return false;
        };
        let decimals = self.columns[column].decimals as i32;
        match self.cell(row, benchmark, column) {
            TableCell::Value { mean, .. } => {
                let shown = |v: f64| (v * 10f64.powi(decimals)).round();
                shown(*mean) == shown(best)
            }
            _ => false,
        }
    }
}

/// Reads a figure of a run; `None` where it is not defined.
type Read = fn(&RunRecord) -> Option<f64>;

/// A row as the tables define it: the runs it reads and what it reads from each.
struct RowSpec {
    label: &'static str,
    method: Method,
    reference: bool,
    /// Only the method's first variant (the Pre-trained row: the same model for every variant).
    first_variant_only: bool,
    read: Vec<Read>,
}

impl RowSpec {
    fn new(label: &'static str, method: Method, read: Vec<Read>) -> Self {
        Self {
            label,
            method,
            reference: false,
            first_variant_only: false,
            read,
        }
    }

    fn reference(mut self) -> Self {
        self.reference = true;
        self
    }

    fn first_variant_only(mut self) -> Self {
        self.first_variant_only = true;
        self
    }
}

/// A table as defined: its columns, rows, and the methods without whose runs it is not made.
struct TableSpec {
    name: &'static str,
    title: &'static str,
    columns: Vec<ColumnSpec>,
    rows: Vec<RowSpec>,
    needs: &'static [Method],
}

fn column(name: &str, decimals: usize, bold_best: bool) -> ColumnSpec {
    ColumnSpec {
        name: name.to_string(),
        decimals,
        bold_best,
    }
}

fn summary(record: &RunRecord) -> Option<&Summary> {
    record.summary.as_ref()
}
fn pretrained(record: &RunRecord) -> Option<&ModelMetrics> {
    summary(record)?.pretrained.as_ref()
}
fn finetuned(record: &RunRecord) -> Option<&ModelMetrics> {
    summary(record)?.finetuned.as_ref()
}
fn alg(record: &RunRecord) -> Option<&CalibratedMetrics> {
    summary(record)?.calibrated.alg.as_ref()
}
fn pcv(record: &RunRecord) -> Option<&CalibratedMetrics> {
    summary(record)?.calibrated.pcv.as_ref()
}
fn oracle_gamma(record: &RunRecord) -> Option<&CalibratedMetrics> {
    summary(record)?.calibrated.oracle.as_ref()
}
/// An all-classes run's accuracies under its benchmark's S and U; without them (no partial-class run of
/// the benchmark to take S and U from), only Acc_{Y/Y}, which does not depend on them.
fn all_classes(record: &RunRecord, top5: bool) -> Option<AccuracyPercent> {
    if let Some(metrics) = &record.under_benchmark_split {
        return Some(if top5 { metrics.acc_top5 } else { metrics.acc });
    }
    let own = finetuned(record)?;
    let acc = if top5 { own.acc_top5 } else { own.acc };
    Some(AccuracyPercent {
        y_y: acc.y_y,
        ..AccuracyPercent::default()
    })
}

/// A method's rows of γ and Acc_{Y/Y} by ALG, by PCV and at γ\* (a reference), labelled `labels`.
fn calibration_rows(method: Method, labels: [&'static str; 3]) -> Vec<RowSpec> {
    vec![
        RowSpec::new(
            labels[0],
            method,
            vec![|r| Some(alg(r)?.gamma), |r| alg(r)?.acc.y_y],
        ),
        RowSpec::new(
            labels[1],
            method,
            vec![|r| Some(pcv(r)?.gamma), |r| pcv(r)?.acc.y_y],
        ),
        RowSpec::new(
            labels[2],
            method,
            vec![|r| Some(oracle_gamma(r)?.gamma), |r| oracle_gamma(r)?.acc.y_y],
        )
        .reference(),
    ]
}

/// The Table-1 columns of a model's accuracy table.
macro_rules! accuracies {
    ($get:expr, $table:ident) => {
        vec![
            |r: &RunRecord| ($get)(r).and_then(|m| m.$table.y_y),
            |r: &RunRecord| ($get)(r).and_then(|m| m.$table.s_y),
            |r: &RunRecord| ($get)(r).and_then(|m| m.$table.u_y),
        ]
    };
}

fn specs() -> Vec<TableSpec> {
    let accuracy_columns = || {
        vec![
            column("Y/Y", 2, true),
            column("S/Y", 2, true),
            column("U/Y", 2, true),
        ]
    };
    // The same rows over the top-1 table (`acc`) or the top-5 one (`acc_top5`); fn pointers capture
    // nothing, so the table is chosen by the macro, not by a variable.
    macro_rules! table1_rows {
        ($table:ident, $top5:literal) => {
            vec![
                RowSpec::new(
                    "Pre-trained",
                    Method::FineTuning,
                    accuracies!(pretrained, $table),
                )
                .first_variant_only(),
                RowSpec::new(
                    "Fine-tuning",
                    Method::FineTuning,
                    accuracies!(finetuned, $table),
                ),
                RowSpec::new(
                    "Holistic Transfer (HT-style, ftcal)",
                    Method::HolisticTransfer,
                    accuracies!(finetuned, $table),
                ),
                RowSpec::new(
                    "Fine-tuning + γ (ALG)",
                    Method::FineTuning,
                    accuracies!(alg, $table),
                ),
                RowSpec::new(
                    "Fine-tuning + γ (PCV)",
                    Method::FineTuning,
                    accuracies!(pcv, $table),
                ),
                RowSpec::new(
                    "Oracle (all classes)",
                    Method::AllClasses,
                    vec![
                        |r| all_classes(r, $top5)?.y_y,
                        |r| all_classes(r, $top5)?.s_y,
                        |r| all_classes(r, $top5)?.u_y,
                    ],
                )
                .reference(),
            ]
        };
    }
    let table1 = |name: &'static str, title: &'static str, rows: Vec<RowSpec>| TableSpec {
        name,
        title,
        columns: accuracy_columns(),
        rows,
        needs: &[Method::FineTuning, Method::HolisticTransfer],
    };
    vec![
        table1("table1", "Table 1: top-1 accuracy (%)", table1_rows!(acc, false)),
        table1(
            "table1-top5",
            "Table 1: top-5 accuracy (%)",
            table1_rows!(acc_top5, true),
        ),
        TableSpec {
            name: "table2",
            title: "Table 2: AUSUC (area under the seen–unseen curve)",
            columns: vec![column("AUSUC", 4, true)],
            rows: vec![
                RowSpec::new("Pre-trained", Method::FineTuning, vec![|r| pretrained(r)?.ausuc])
                    .first_variant_only(),
                RowSpec::new(
                    "Holistic Transfer (HT-style, ftcal)",
                    Method::HolisticTransfer,
                    vec![|r| finetuned(r)?.ausuc],
                ),
                RowSpec::new("Fine-tuning", Method::FineTuning, vec![|r| finetuned(r)?.ausuc]),
            ],
            needs: &[Method::FineTuning, Method::HolisticTransfer],
        },
        TableSpec {
            name: "appendix-calibration",
            title: "ALG vs PCV vs the oracle γ*: γ and top-1 Acc Y/Y (%)",
            columns: vec![column("γ", 3, false), column("Y/Y", 2, true)],
            rows: [
                calibration_rows(
                    Method::FineTuning,
                    [
                        "Fine-tuning + γ (ALG)",
                        "Fine-tuning + γ (PCV)",
                        "Fine-tuning + γ*",
                    ],
                ),
                calibration_rows(
                    Method::HolisticTransfer,
                    ["HT + γ (ALG)", "HT + γ (PCV)", "HT + γ*"],
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            needs: &[Method::FineTuning, Method::HolisticTransfer],
        },
        TableSpec {
            name: "appendix-methods",
            title: "Fine-tuning vs frozen classifier vs linear probing: AUSUC and the NCM probe's Acc U/Y (%)",
            columns: vec![column("AUSUC", 4, true), column("NCM U/Y", 2, true)],
            rows: vec![
                RowSpec::new(
                    "Pre-trained",
                    Method::FineTuning,
                    vec![|r| pretrained(r)?.ausuc, |r| pretrained(r)?.ncm?.u_y],
                )
                .first_variant_only(),
                RowSpec::new(
                    "Fine-tuning",
                    Method::FineTuning,
                    vec![|r| finetuned(r)?.ausuc, |r| finetuned(r)?.ncm?.u_y],
                ),
                RowSpec::new(
                    "Frozen classifier",
                    Method::FrozenClassifier,
                    vec![|r| finetuned(r)?.ausuc, |r| finetuned(r)?.ncm?.u_y],
                ),
                RowSpec::new(
                    "Linear probing",
                    Method::LinearProbe,
                    vec![|r| finetuned(r)?.ausuc, |r| finetuned(r)?.ncm?.u_y],
                ),
            ],
            needs: &[Method::FrozenClassifier, Method::LinearProbe],
        },
        TableSpec {
            name: "appendix-head",
            title: "FC vs cosine classifier: top-1 accuracy (%), AUSUC and Acc Y/Y after ALG",
            columns: vec![
                column("Y/Y", 2, true),
                column("U/Y", 2, true),
                column("AUSUC", 4, true),
                column("+ALG Y/Y", 2, true),
            ],
            rows: vec![
                RowSpec::new(
                    "Fine-tuning, FC classifier",
                    Method::FineTuning,
                    vec![
                        |r| finetuned(r)?.acc.y_y,
                        |r| finetuned(r)?.acc.u_y,
                        |r| finetuned(r)?.ausuc,
                        |r| alg(r)?.acc.y_y,
                    ],
                ),
                RowSpec::new(
                    "Fine-tuning, cosine classifier",
                    Method::CosineClassifier,
                    vec![
                        |r| finetuned(r)?.acc.y_y,
                        |r| finetuned(r)?.acc.u_y,
                        |r| finetuned(r)?.ausuc,
                        |r| alg(r)?.acc.y_y,
                    ],
                ),
            ],
            needs: &[Method::CosineClassifier],
        },
        TableSpec {
            name: "appendix-ncm",
            title: "The NCM probe before and after fine-tuning: top-1 accuracy (%)",
            columns: accuracy_columns(),
            rows: vec![
                RowSpec::new(
                    "Pre-trained, NCM",
                    Method::FineTuning,
                    vec![|r| pretrained(r)?.ncm?.y_y, |r| pretrained(r)?.ncm?.s_y, |r| {
                        pretrained(r)?.ncm?.u_y
                    }],
                )
                .first_variant_only(),
                RowSpec::new(
                    "Fine-tuning, NCM",
                    Method::FineTuning,
                    vec![|r| finetuned(r)?.ncm?.y_y, |r| finetuned(r)?.ncm?.s_y, |r| {
                        finetuned(r)?.ncm?.u_y
                    }],
                ),
                RowSpec::new(
                    "Holistic Transfer, NCM",
                    Method::HolisticTransfer,
                    vec![|r| finetuned(r)?.ncm?.y_y, |r| finetuned(r)?.ncm?.s_y, |r| {
                        finetuned(r)?.ncm?.u_y
                    }],
                ),
            ],
            needs: &[Method::FineTuning],
        },
    ]
}

/// Every table that `runs` has runs for, in order; rows whose method has no run are left out, and so
/// are rows whose completed runs do not define their figure while no run does (PCV where no run
/// calibrated by PCV).
pub fn all_tables(runs: &Runs) -> Vec<ReportTable> {
    let present = |method: Method| runs.records.iter().any(|r| r.method == method);
    let mut tables = Vec::new();
    for spec in specs() {
        if !spec.needs.iter().any(|m| present(*m)) {
            continue;
        }
        // A benchmark is a column group of the table only where the table's own runs are (the cosine
        // classifier's table has the benchmarks that ran it, not every benchmark of the plan).
        let benchmarks: Vec<String> = (runs.benchmarks.iter())
            .filter(|b| (runs.records.iter()).any(|r| r.benchmark == **b && spec.needs.contains(&r.method)))
            .cloned()
            .collect();
        let mut rows = Vec::new();
        for row in &spec.rows {
            let mut variants = runs.variants(row.method);
            if row.first_variant_only {
                variants.truncate(1);
            }
            for variant in variants {
                let label = if variant.is_empty() || row.first_variant_only {
                    row.label.to_string()
                } else {
                    format!("{} ({variant})", row.label)
                };
                let mut cells = Vec::new();
                for benchmark in &benchmarks {
                    let members = runs.members(benchmark, row.method, &variant);
                    for read in &row.read {
                        cells.push(aggregate(&members, *read));
                    }
                }
                // Not defined where runs completed, and nowhere a value: the row is not this plan's (PCV
                // where no run calibrates by PCV). Runs that have not finished keep their rows.
                let defined = cells.iter().any(|cell| matches!(cell, TableCell::Value { .. }));
                if !defined && cells.contains(&TableCell::Undefined) {
                    continue;
                }
                rows.push(ReportRow {
                    label,
                    reference: row.reference,
                    cells,
                });
            }
        }
        if rows.is_empty() {
            continue;
        }
        tables.push(ReportTable {
            name: spec.name.to_string(),
            title: spec.title.to_string(),
            benchmarks,
            columns: spec.columns,
            rows,
        });
    }
    tables
}

/// One cell from its runs (one per seed): a value only when every run completed, else their states.
pub fn aggregate(members: &[&RunRecord], read: fn(&RunRecord) -> Option<f64>) -> TableCell {
    if members.is_empty() {
        return TableCell::State("missing".into());
    }
    let mut unfinished: BTreeMap<&str, usize> = BTreeMap::new();
    for member in members {
        if member.state != CellState::Completed {
            *unfinished.entry(member.state.word()).or_default() += 1;
        }
    }
    if !unfinished.is_empty() {
        if members.len() == 1 {
            return TableCell::State(members[0].state.word().to_string());
        }
        let states: Vec<String> = (unfinished.iter())
            .map(|(word, n)| format!("{word} {n}/{}", members.len()))
            .collect();
        return TableCell::State(states.join(", "));
    }
    let values: Option<Vec<f64>> = members.iter().map(|m| read(m)).collect();
    match values {
        None => TableCell::Undefined,
        Some(values) => {
            let (mean, std) = mean_and_std(&values);
            TableCell::Value {
                mean: mean.expect("at least one run"),
                std,
                seeds: values.len(),
            }
        }
    }
}
