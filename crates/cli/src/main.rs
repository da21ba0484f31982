//! `ftcal`: the command line of ftcal. Each subcommand parses its arguments and calls the library crate
//! that owns the work.

mod backend;
mod calibrate;
mod config;
mod data;
mod models;
mod report;
mod run;
mod sweep;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Full fine-tuning of pre-trained classifiers on partial-class data, and the calibration that gives the
/// absent classes back.
#[derive(Parser)]
#[command(name = "ftcal", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline of a run config: source model, pre-trained evaluation, fine-tuning on S,
    /// calibration and report. The same command resumes an interrupted run.
    Run(run::RunArgs),
    /// A sweep: the cells of a sweep file (grids of config values) run locally N at a time, or one cell
    /// (`--cell N`, a Slurm array task), or written as a Slurm job array (`--slurm FILE`); then
    /// `sweep.csv`, `sweep.md` and heatmaps. The same command resumes an interrupted sweep.
    Sweep(sweep::SweepArgs),
    /// The paper's tables (Table 1, top-1 and top-5; Table 2; the appendix's comparisons) as Markdown,
    /// CSV and LaTeX, and Figure 1 and the NCM bar chart, from an experiment plan's runs or run
    /// directories; mean ± std over seeds; missing or failed runs shown as such.
    Report(report::ReportArgs),
    /// Recompute every metric and calibration of a run directory from its saved outputs.
    Eval(run::EvalArgs),
    /// Metrics and post-hoc calibration (ALG, oracle γ*, and PCV from saved fold outputs) of saved logits,
    /// from ftcal or any framework.
    Calibrate(calibrate::CalibrateArgs),
    /// Datasets: `ftcal data check CONFIG` loads every image once and reports counts and problems.
    Data(data::DataArgs),
    /// The registered models (names, parameters, input sizes); `ftcal models run` runs one on a tensor
    /// file, to check converted weights against PyTorch.
    Models(models::ModelsArgs),
}

fn main() -> ExitCode {
    ftcal_kernels::allocator::retain_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Report(args) => report::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Eval(args) => run::eval(&args),
        Command::Calibrate(args) => calibrate::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Data(args) => data::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Models(args) => models::run(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
