//! `ftcal data check`: list and decode every image of a config's datasets and report what is wrong.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use ftcal_data::DataConfig;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::config::read_toml;

/// Arguments of `ftcal data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Load every image of the configured datasets once; print counts per split and class, S and U, and
    /// every problem (missing or corrupt image, bad list line, label out of range, empty class, duplicate).
    /// Exits with status 1 if any problem is found.
    Check(CheckArgs),
}

/// Arguments of `ftcal data check`.
#[derive(Args, Debug)]
struct CheckArgs {
    /// A run config; its `[data]` table is checked.
    config: PathBuf,

    /// Decoding threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// The part of a run config this command reads; other tables are left to `ftcal run`.
#[derive(Deserialize)]
struct DataSection {
    data: DataConfig,
}

/// Runs `ftcal data …`.
pub fn run(args: &DataArgs) -> Result<()> {
    match &args.command {
        DataCommand::Check(check) => run_check(check),
    }
}

fn run_check(args: &CheckArgs) -> Result<()> {
    let section: DataSection = read_toml(&args.config)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("decoding {bar:40} {pos}/{len} images, {per_sec}, eta {eta}")
                .expect("a valid template"),
        );
        bar
    });
    let progress = |done: usize, total: usize| match &bar {
        Some(bar) => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        None if done == total || done.is_multiple_of(4096) => eprintln!("decoded {done}/{total} images"),
        None => {}
    };
    let report = ftcal_data::check::check(&section.data, "data", threads, &progress)
        .map_err(|error| anyhow::anyhow!("{}: {error}", args.config.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print!("{}", report.to_text());
    if !report.is_clean() {
        bail!(
            "{} problem(s) found in the data of {}",
            report.problems.len(),
            args.config.display()
        );
    }
    Ok(())
}
