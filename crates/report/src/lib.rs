//! The paper's tables and figures from many runs: `ftcal report PLAN.toml` (an experiment plan, in the
//! sweep file format, whose cells are tagged with their benchmark and method) or `ftcal report RUN_DIR…`.
//! Table 1 (top-1 and top-5), Table 2 (AUSUC) and the appendix's comparisons as Markdown, CSV and LaTeX,
//! mean ± sample standard deviation over seeds; Figure 1 (the seen–unseen curves per benchmark) and the
//! NCM bar chart. A run that is missing, running, failed or diverged is shown as such, never as a number.
//! Above `ftcal-sweep`: a report reads many runs and computes no metric itself (ftcal-eval does).

#![warn(missing_docs)]

mod error;
pub mod figures;
pub mod method;
pub mod render;
pub mod runs;
pub mod tables;

use std::path::{Path, PathBuf};

pub use error::ReportError;
pub use method::Method;
pub use runs::{RunRecord, Runs};
pub use tables::{ColumnSpec, ReportRow, ReportTable, TableCell};

use ftcal_eval::write_atomic;

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    /// Every file, in the order written.
    pub files: Vec<PathBuf>,
    /// The tables in Markdown, one after the other (what `ftcal report` prints).
    pub markdown: String,
    /// Figures that could not be drawn, and why (e.g. no completed fine-tuning run of a benchmark).
    pub skipped_figures: Vec<String>,
}

/// Writes every table that `runs` has rows for (`NAME.md`, `NAME.csv`, `NAME.tex`), `report.md` (all the
/// tables and figures), and the figures, into `out`.
pub fn write_report(runs: &Runs, out: &Path) -> Result<ReportOutput, ReportError> {
    std::fs::create_dir_all(out).map_err(|e| ReportError::io(out, &e))?;
    let mut files = Vec::new();
    let mut markdown = String::new();
    for table in tables::all_tables(runs) {
        let table_markdown = render::markdown(&table);
        for (extension, text) in [
            ("md", table_markdown.clone()),
            ("csv", render::csv(&table)),
            ("tex", render::latex(&table)),
        ] {
            let path = out.join(format!("{}.{extension}", table.name));
            write_atomic(&path, text.as_bytes())?;
            files.push(path);
        }
        markdown.push_str(&table_markdown);
        markdown.push('\n');
    }
    let figures = figures::write_figures(runs, out)?;
    let mut whole = markdown.clone();
    for figure in &figures.written {
        let name = figure
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        whole.push_str(&format!("![{name}]({name})\n\n"));
    }
    files.extend(figures.written);
    let path = out.join("report.md");
    write_atomic(&path, whole.as_bytes())?;
    files.push(path);
    Ok(ReportOutput {
        files,
        markdown,
        skipped_figures: figures.skipped,
    })
}
