//! `ftcal report PLAN.toml` or `ftcal report RUN_DIR…`: the paper's tables and figures from many runs.
//! The work is ftcal-report's.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use ftcal_report::{Runs, write_report};

/// Arguments of `ftcal report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// An experiment plan (a sweep file whose cells carry `benchmark` and `method` tags, e.g.
    /// experiments/digits2-table1.toml), or run directories.
    #[arg(required = true, value_name = "PLAN.toml | RUN_DIR…")]
    inputs: Vec<PathBuf>,

    /// Where the tables and figures go (default: the plan's sweep folder's `report/`, or `report-PLAN/`
    /// when plans share the folder; `./report` for run directories).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Override a config value of every cell of the plan, as the `ftcal sweep --set` that ran it did.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Reads the runs, writes the report, prints its tables.
pub fn run(args: &ReportArgs) -> Result<()> {
    let plan = match args.inputs.as_slice() {
        [single] if single.is_file() => Some(single),
        _ => None,
    };
    let (runs, default_out) = match plan {
        Some(plan) => {
            let sweep = ftcal_sweep::Sweep::load(plan, &args.set)?;
            // Plans that share their runs share a folder (experiments/): each keeps its own report.
            let stem = plan.file_stem().map(|stem| stem.to_string_lossy().into_owned());
            let folder = match stem {
                Some(stem) if stem != sweep.name => format!("report-{stem}"),
                _ => "report".to_string(),
            };
            (Runs::from_sweep(&sweep)?, sweep.dir.join(folder))
        }
        None => {
            if !args.set.is_empty() {
                bail!("--set applies to a plan's cells; run directories are read as they are");
            }
            if let Some(file) = args.inputs.iter().find(|path| path.is_file()) {
                bail!(
                    "{}: a plan is read alone; give either one plan or run directories",
                    file.display()
                );
            }
            (Runs::from_run_dirs(&args.inputs)?, PathBuf::from("report"))
        }
    };
    let out = args.out.clone().unwrap_or(default_out);
    let report = write_report(&runs, &out)?;
    if report.markdown.is_empty() {
        bail!(
            "no table to make: none of the {} runs is a fine-tuning, Holistic Transfer, frozen-classifier, linear-probe or cosine-classifier run",
            runs.records.len()
        );
    }
    print!("{}", report.markdown);
    for skipped in &report.skipped_figures {
        eprintln!("note: {skipped}");
    }
    eprintln!("report: {} files in {}", report.files.len(), out.display());
    Ok(())
}
