//! Summary tables in the paper's row layout, rendered as Markdown (for terminals and `report.md`) and CSV.

use crate::curve::SeenUnseenCurve;
use crate::report::{AccuracyPercent, CalibratedMetrics, ModelMetrics, Summary};

/// A table of labelled rows of optional numbers; a missing number means "not defined / not run".
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Column headers, the first one heading the row labels.
    pub columns: Vec<String>,
    /// Rows: a label and one value per remaining column.
    pub rows: Vec<(String, Vec<Option<f64>>)>,
    /// Decimal places of each value column in Markdown.
    pub decimals: Vec<usize>,
}

/// Which accuracies a summary table shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopK {
    /// Top-1 accuracies, with the NCM rows and AUSUC.
    Top1,
    /// Top-5 accuracies.
    Top5,
}

impl Table {
    /// Renders a GitHub-flavoured Markdown table; undefined values show as `—`.
    pub fn to_markdown(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|(label, values)| {
                std::iter::once(label.clone())
                    .chain(
                        values
                            .iter()
                            .zip(&self.decimals)
                            .map(|(value, &decimals)| match value {
                                Some(v) => format!("{v:.decimals$}"),
                                None => "—".to_owned(),
                            }),
                    )
                    .collect()
            })
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|c| {
                cells
                    .iter()
                    .map(|row| row[c].chars().count())
                    .chain([self.columns[c].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, &width))| {
                    let pad = " ".repeat(width - cell.chars().count());
                    if c == 0 {
                        format!("{cell}{pad}")
                    } else {
                        format!("{pad}{cell}")
                    }
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&self.columns);
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(c, &w)| {
                if c == 0 {
                    "-".repeat(w + 2)
                } else {
                    format!("{}:", "-".repeat(w + 1))
                }
            })
            .collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &cells {
            out.push_str(&line(row));
        }
        out
    }

    /// Renders CSV: full-precision numbers, empty cells for undefined values.
    pub fn to_csv(&self) -> String {
        let mut out = self
            .columns
            .iter()
            .map(|c| csv_field(c))
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
        for (label, values) in &self.rows {
            out.push_str(&csv_field(label));
            for value in values {
                out.push(',');
                if let Some(v) = value {
                    out.push_str(&v.to_string());
                }
            }
            out.push('\n');
        }
        out
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The paper's Table-1 layout for one run: pre-trained, fine-tuned, + ALG, + PCV, oracle γ\*, and the NCM
/// probes; only the rows that were run appear.
pub fn summary_table(summary: &Summary, top_k: TopK) -> Table {
    let top1 = top_k == TopK::Top1;
    let mut columns = vec!["model", "γ", "Y/Y", "S/Y", "U/Y", "S/S", "U/U"];
    if top1 {
        columns.push("AUSUC");
    }
    let mut rows = Vec::new();
    let accuracies = |acc: &AccuracyPercent| [acc.y_y, acc.s_y, acc.u_y, acc.s_s, acc.u_u];
    let mut model_row = |label: &str, metrics: &ModelMetrics| {
        let acc = if top1 { &metrics.acc } else { &metrics.acc_top5 };
        let mut values = vec![None];
        values.extend(accuracies(acc));
        if top1 {
            values.push(metrics.ausuc);
        }
        rows.push((label.to_owned(), values));
    };
    if let Some(pretrained) = &summary.pretrained {
        model_row("pre-trained", pretrained);
    }
    if let Some(finetuned) = &summary.finetuned {
        model_row("fine-tuned", finetuned);
    }
    let calibrated = [
        ("fine-tuned + ALG", &summary.calibrated.alg),
        ("fine-tuned + PCV", &summary.calibrated.pcv),
        ("oracle γ*", &summary.calibrated.oracle),
    ];
    for (label, metrics) in calibrated {
        if let Some(CalibratedMetrics { gamma, acc, acc_top5 }) = metrics {
            let mut values = vec![Some(*gamma)];
            values.extend(accuracies(if top1 { acc } else { acc_top5 }));
            if top1 {
                values.push(None);
            }
            rows.push((label.to_owned(), values));
        }
    }
    if top1 {
        for (label, metrics) in [
            ("NCM, pre-trained", &summary.pretrained),
            ("NCM, fine-tuned", &summary.finetuned),
        ] {
            if let Some(ncm) = metrics.as_ref().and_then(|m| m.ncm.as_ref()) {
                let mut values = vec![None];
                values.extend(accuracies(ncm));
                values.push(None);
                rows.push((label.to_owned(), values));
            }
        }
    }
    let mut decimals = vec![3, 2, 2, 2, 2, 2];
    if top1 {
        decimals.push(4);
    }
    Table {
        columns: columns.into_iter().map(str::to_owned).collect(),
        rows,
        decimals,
    }
}

/// The seen–unseen curve as CSV, one row per γ interval in increasing γ: the representative γ, the
/// interval's open ends (`-inf` / `inf` at the extremes), and Acc_{S/Y}, Acc_{U/Y}, Acc_{Y/Y} in percent.
pub fn curve_csv(curve: &SeenUnseenCurve) -> String {
    let mut out = String::from("gamma,gamma_low,gamma_high,S/Y,U/Y,Y/Y\n");
    let percent = |a: crate::ranking::Accuracy| a.percent().map_or(String::new(), |v| v.to_string());
    for p in curve.points() {
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            p.gamma,
            p.gamma_low,
            p.gamma_high,
            percent(p.s_y),
            percent(p.u_y),
            percent(p.y_y)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Calibrations;

    fn percent(y_y: f64) -> AccuracyPercent {
        AccuracyPercent {
            y_y: Some(y_y),
            s_y: Some(90.0),
            u_y: None,
            s_s: Some(95.5),
            u_u: None,
        }
    }

    fn summary() -> Summary {
        Summary {
            status: None,
            method: None,
            diverged: None,
            pretrained: None,
            finetuned: Some(ModelMetrics {
                acc: percent(50.0),
                acc_top5: percent(80.0),
                ncm: None,
                ausuc: Some(0.25),
            }),
            calibrated: Calibrations {
                alg: Some(CalibratedMetrics {
                    gamma: 1.5,
                    acc: percent(60.0),
                    acc_top5: percent(85.0),
                }),
                ..Calibrations::default()
            },
        }
    }

    #[test]
    fn markdown_shows_only_the_rows_that_ran_and_dashes_for_undefined() {
        let markdown = summary_table(&summary(), TopK::Top1).to_markdown();
        let lines: Vec<&str> = markdown.lines().collect();
        assert_eq!(lines.len(), 4, "{markdown}");
        assert_eq!(
            lines[0],
            "| model            |     γ |   Y/Y |   S/Y | U/Y |   S/S | U/U |  AUSUC |"
        );
        assert_eq!(
            lines[1],
            "|------------------|------:|------:|------:|----:|------:|----:|-------:|"
        );
        assert_eq!(
            lines[2],
            "| fine-tuned       |     — | 50.00 | 90.00 |   — | 95.50 |   — | 0.2500 |"
        );
        assert_eq!(
            lines[3],
            "| fine-tuned + ALG | 1.500 | 60.00 | 90.00 |   — | 95.50 |   — |      — |"
        );
    }

    #[test]
    fn curve_csv_lists_every_interval_with_open_ends() {
        use crate::{ClassSplit, Matrix, RankedScores};
        let matrix = Matrix::new(2, 2, vec![2.0f32, 0.0, 1.0, 0.0]).unwrap();
        let split = ClassSplit::from_absent(2, &[1]).unwrap();
        let curve = SeenUnseenCurve::new(&RankedScores::new(&matrix, &[0, 1], &split, 1));
        assert_eq!(
            curve_csv(&curve),
            "gamma,gamma_low,gamma_high,S/Y,U/Y,Y/Y\n0,-inf,1,100,0,50\n1.5,1,2,100,100,100\n3,2,inf,0,100,50\n"
        );
    }

    #[test]
    fn csv_leaves_undefined_cells_empty_and_keeps_full_precision() {
        let csv = summary_table(&summary(), TopK::Top5).to_csv();
        assert_eq!(
            csv,
            "model,γ,Y/Y,S/Y,U/Y,S/S,U/U\nfine-tuned,,80,90,,95.5,\nfine-tuned + ALG,1.5,85,90,,95.5,\n"
        );
    }
}
