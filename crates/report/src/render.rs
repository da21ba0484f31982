//! A table as Markdown (notes, the terminal), CSV (analysis: one line per cell, full precision) and
//! LaTeX (a booktabs `tabular` to `\input` in a manuscript).

use std::fmt::Write as _;

use crate::tables::{ReportTable, TableCell};

/// The table as a Markdown section: its title, the table (best of each column in bold), and a line on
/// what the figures are.
pub fn markdown(table: &ReportTable) -> String {
    let mut out = format!("## {}\n\n", table.title);
    let mut header = vec!["Method".to_string()];
    for benchmark in &table.benchmarks {
        for column in &table.columns {
            header.push(if table.columns.len() == 1 {
                benchmark.clone()
            } else {
                format!("{benchmark} {}", column.name)
            });
        }
    }
    let escape = |text: &str| text.replace('|', "\\|");
    writeln!(
        out,
        "| {} |",
        header.iter().map(|h| escape(h)).collect::<Vec<_>>().join(" | ")
    )
    .unwrap();
    let mut rule = vec!["---"];
    rule.extend(std::iter::repeat_n("---:", header.len() - 1));
    writeln!(out, "| {} |", rule.join(" | ")).unwrap();
    for (r, row) in table.rows.iter().enumerate() {
        let mut line = vec![escape(&row.label)];
        line.extend(row_cells(table, r, &MARKDOWN));
        writeln!(out, "| {} |", line.join(" | ")).unwrap();
    }
    out.push('\n');
    out.push_str(&legend(table));
    out.push('\n');
    out
}

fn legend(table: &ReportTable) -> String {
    let mut parts = Vec::new();
    let seeds: Vec<usize> = (table.rows.iter())
        .flat_map(|row| &row.cells)
        .filter_map(|cell| match cell {
            TableCell::Value { seeds, .. } => Some(*seeds),
            _ => None,
        })
        .collect();
    match (seeds.iter().min(), seeds.iter().max()) {
        (Some(1), Some(1)) | (None, _) => parts.push("One run per cell.".to_string()),
        (Some(low), Some(high)) if low == high => {
            parts.push(format!("Mean ± sample standard deviation over {low} seeds."))
        }
        (Some(low), Some(high)) => parts.push(format!(
            "Mean ± sample standard deviation over the seeds of each cell ({low} to {high})."
        )),
        _ => {}
    }
    parts.push("Bold: the best of a column (references excluded).".into());
    if table.rows.iter().any(|row| row.reference) {
        let references: Vec<&str> = (table.rows.iter())
            .filter(|row| row.reference)
            .map(|row| row.label.as_str())
            .collect();
        parts.push(format!("References, not methods: {}.", references.join(", ")));
    }
    parts.push("—: not defined for these runs; a word in italics: the state of a cell's runs.".into());
    format!("{}\n", parts.join(" "))
}

/// How a format writes a cell: the best value, a mean with its standard deviation, an undefined figure,
/// a state.
struct CellFormat {
    bold: fn(&str) -> String,
    spread: fn(&str, &str) -> String,
    undefined: &'static str,
    state: fn(&str) -> String,
}

const MARKDOWN: CellFormat = CellFormat {
    bold: |mean| format!("**{mean}**"),
    spread: |mean, std| format!("{mean} ± {std}"),
    undefined: "—",
    state: |state| format!("*{}*", state.replace('|', "\\|")),
};

const LATEX: CellFormat = CellFormat {
    bold: |mean| format!("\\textbf{{{mean}}}"),
    spread: |mean, std| format!("{mean}{{\\scriptsize\\,$\\pm$\\,{std}}}"),
    undefined: "--",
    state: |state| format!("\\textit{{{}}}", latex_text(state)),
};

/// Row `r`'s cells, benchmark by benchmark, as `format` writes them.
fn row_cells(table: &ReportTable, r: usize, format: &CellFormat) -> Vec<String> {
    let mut cells = Vec::new();
    for b in 0..table.benchmarks.len() {
        for (c, column) in table.columns.iter().enumerate() {
            let decimals = column.decimals;
            cells.push(match table.cell(r, b, c) {
                TableCell::Value { mean, std, .. } => {
                    let shown = format!("{mean:.decimals$}");
                    let shown = if table.is_best(r, b, c) {
                        (format.bold)(&shown)
                    } else {
                        shown
                    };
                    match std {
                        Some(std) => (format.spread)(&shown, &format!("{std:.decimals$}")),
                        None => shown,
                    }
                }
                TableCell::Undefined => format.undefined.to_string(),
                TableCell::State(state) => (format.state)(state),
            });
        }
    }
    cells
}

/// The table as CSV, one line per cell: `row,benchmark,column,mean,std,seeds,state` with full precision;
/// `state` is `completed`, `undefined`, or the runs' state.
pub fn csv(table: &ReportTable) -> String {
    let mut out = String::from("row,benchmark,column,mean,std,seeds,state\n");
    for (r, row) in table.rows.iter().enumerate() {
        for (b, benchmark) in table.benchmarks.iter().enumerate() {
            for (c, column) in table.columns.iter().enumerate() {
                let (mean, std, seeds, state) = match table.cell(r, b, c) {
                    TableCell::Value { mean, std, seeds } => (
                        mean.to_string(),
                        std.map(|s| s.to_string()).unwrap_or_default(),
                        seeds.to_string(),
                        "completed".to_string(),
                    ),
                    TableCell::Undefined => Default::default(),
                    TableCell::State(state) => (String::new(), String::new(), String::new(), state.clone()),
                };
                let state = if state.is_empty() {
                    "undefined".to_string()
                } else {
                    state
                };
                let fields = [&row.label, benchmark, &column.name, &mean, &std, &seeds, &state];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", line.join(",")).unwrap();
            }
        }
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The table as a booktabs `tabular` (needs `\usepackage{booktabs}`): one column group per benchmark,
/// the best of each column in bold, ± std in a smaller size, states in italics.
pub fn latex(table: &ReportTable) -> String {
    let columns = table.columns.len();
    let total = table.benchmarks.len() * columns;
    let mut out = format!(
        "% Written by ftcal report: {}. Needs \\usepackage{{booktabs}}.\n",
        table.title
    );
    writeln!(out, "\\begin{{tabular}}{{l{}}}", "r".repeat(total)).unwrap();
    out.push_str("\\toprule\n");
    if columns == 1 {
        let header: Vec<String> = table.benchmarks.iter().map(|b| latex_text(b)).collect();
        writeln!(out, "Method & {} \\\\", header.join(" & ")).unwrap();
    } else {
        let groups: Vec<String> = (table.benchmarks.iter())
            .map(|b| format!("\\multicolumn{{{columns}}}{{c}}{{{}}}", latex_text(b)))
            .collect();
        writeln!(out, " & {} \\\\", groups.join(" & ")).unwrap();
        for b in 0..table.benchmarks.len() {
            write!(
                out,
                "\\cmidrule(lr){{{}-{}}}",
                2 + b * columns,
                1 + (b + 1) * columns
            )
            .unwrap();
        }
        out.push('\n');
        let names: Vec<String> = (0..table.benchmarks.len())
            .flat_map(|_| table.columns.iter().map(|c| latex_text(&c.name)))
            .collect();
        writeln!(out, "Method & {} \\\\", names.join(" & ")).unwrap();
    }
    out.push_str("\\midrule\n");
    for (r, row) in table.rows.iter().enumerate() {
        if row.reference && r > 0 && !table.rows[r - 1].reference {
            out.push_str("\\midrule\n");
        }
        let mut line = vec![latex_text(&row.label)];
        line.extend(row_cells(table, r, &LATEX));
        writeln!(out, "{} \\\\", line.join(" & ")).unwrap();
    }
    out.push_str("\\bottomrule\n\\end{tabular}\n");
    out
}

/// Text for LaTeX: its special characters escaped, the symbols ftcal's labels use in math mode.
pub fn latex_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '→' => out.push_str("$\\to$"),
            '←' => out.push_str("$\\leftarrow$"),
            'γ' => out.push_str("$\\gamma$"),
            '±' => out.push_str("$\\pm$"),
            '×' => out.push_str("$\\times$"),
            '–' => out.push_str("--"),
            '—' => out.push_str("---"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{ColumnSpec, ReportRow};

    fn table() -> ReportTable {
        let value = |mean: f64, std: Option<f64>| TableCell::Value { mean, std, seeds: 3 };
        ReportTable {
            name: "t".into(),
            title: "Table 1: top-1 accuracy (%)".into(),
            benchmarks: vec!["Ar→Cl".into(), "my_set & 50% #2".into()],
            columns: vec![
                ColumnSpec {
                    name: "γ".into(),
                    decimals: 3,
                    bold_best: false,
                },
                ColumnSpec {
                    name: "Y/Y".into(),
                    decimals: 2,
                    bold_best: true,
                },
            ],
            rows: vec![
                ReportRow {
                    label: "Fine-tuning + γ (ALG)".into(),
                    reference: false,
                    cells: vec![
                        value(1.5, None),
                        value(70.004, Some(0.5)),
                        value(2.0, None),
                        TableCell::State("diverged 1/3".into()),
                    ],
                },
                ReportRow {
                    label: "Fine-tuning + γ (PCV)".into(),
                    reference: false,
                    cells: vec![
                        value(2.5, None),
                        value(69.996, Some(0.25)),
                        TableCell::Undefined,
                        value(10.0, None),
                    ],
                },
                ReportRow {
                    label: "Oracle_γ*".into(),
                    reference: true,
                    cells: vec![
                        value(3.0, None),
                        value(90.0, None),
                        value(4.0, None),
                        value(99.0, None),
                    ],
                },
            ],
        }
    }

    #[test]
    fn best_values_are_bold_at_the_precision_shown_and_references_never() {
        let markdown = markdown(&table());
        // 70.004 and 69.996 both show as 70.00: a tie, both bold; the oracle's 90 is a reference.
        assert!(
            markdown
                .contains("| Fine-tuning + γ (ALG) | 1.500 | **70.00** ± 0.50 | 2.000 | *diverged 1/3* |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| Fine-tuning + γ (PCV) | 2.500 | **70.00** ± 0.25 | — | 10.00 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| Oracle_γ* | 3.000 | 90.00 | 4.000 | 99.00 |"),
            "{markdown}"
        );
        assert!(markdown.contains("my_set & 50% #2 Y/Y"));
        // One value in the second Y/Y column: nothing to compare, nothing bold.
        assert!(!markdown.contains("**10.00**"));
    }

    /// Checks what a LaTeX run would reject first: unbalanced braces and environments, rows with the wrong
    /// number of cells, unescaped special characters.
    fn check_structure(tex: &str, columns: usize) {
        let mut depth = 0i32;
        let mut previous = ' ';
        for c in tex.chars() {
            if previous != '\\' {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            assert!(depth >= 0, "a brace closes before it opens:\n{tex}");
            previous = c;
        }
        assert_eq!(depth, 0, "unbalanced braces:\n{tex}");
        assert_eq!(
            tex.matches("\\begin{tabular}").count(),
            tex.matches("\\end{tabular}").count()
        );
        for line in tex.lines().filter(|line| line.ends_with("\\\\")) {
            let unescaped = line.matches('&').count() - line.matches("\\&").count();
            let spans: usize = line
                .match_indices("\\multicolumn{")
                .map(|(i, _)| {
                    let rest = &line[i + "\\multicolumn{".len()..];
                    rest[..rest.find('}').unwrap()].parse::<usize>().unwrap() - 1
                })
                .sum();
            assert_eq!(unescaped + 1 + spans, columns + 1, "row `{line}`");
        }
        assert!(
            !tex.contains('γ') && !tex.contains('→'),
            "unicode left in:\n{tex}"
        );
    }

    #[test]
    fn latex_is_a_booktabs_table_that_compiles() {
        let tex = latex(&table());
        check_structure(&tex, 4);
        assert!(
            tex.contains("\\multicolumn{2}{c}{Ar$\\to$Cl} & \\multicolumn{2}{c}{my\\_set \\& 50\\% \\#2}"),
            "{tex}"
        );
        assert!(
            tex.contains("\\textbf{70.00}{\\scriptsize\\,$\\pm$\\,0.50}"),
            "{tex}"
        );
        assert!(tex.contains("\\textit{diverged 1/3}"), "{tex}");
        assert!(
            tex.contains("\\midrule\nOracle\\_$\\gamma$*"),
            "a rule before the references:\n{tex}"
        );
        // CI installs Debian's texlive-latex-base and -recommended and sets FTCAL_REQUIRE_LATEX=1; elsewhere
        // the compile runs where a pdflatex is found.
        let required = std::env::var("FTCAL_REQUIRE_LATEX").is_ok_and(|v| v == "1");
        let found = std::process::Command::new("pdflatex")
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            assert!(!required, "FTCAL_REQUIRE_LATEX=1 but no pdflatex on PATH");
            eprintln!("no pdflatex: the .tex was checked for structure only");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.tex"), &tex).unwrap();
        std::fs::write(
            dir.path().join("doc.tex"),
            "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{t.tex}\n\\end{document}\n",
        )
        .unwrap();
        let output = std::process::Command::new("pdflatex")
            .args(["-interaction=nonstopmode", "-halt-on-error", "doc.tex"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success() && dir.path().join("doc.pdf").exists(),
            "pdflatex failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    #[test]
    fn csv_keeps_full_precision_and_says_what_each_cell_is() {
        let csv = csv(&table());
        assert!(csv.starts_with("row,benchmark,column,mean,std,seeds,state\n"));
        assert!(
            csv.contains("Fine-tuning + γ (ALG),Ar→Cl,Y/Y,70.004,0.5,3,completed\n"),
            "{csv}"
        );
        assert!(
            csv.contains("Fine-tuning + γ (ALG),my_set & 50% #2,Y/Y,,,,diverged 1/3\n"),
            "{csv}"
        );
        assert!(
            csv.contains("Fine-tuning + γ (PCV),my_set & 50% #2,γ,,,,undefined\n"),
            "{csv}"
        );
    }
}
