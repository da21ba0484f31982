//! `ftcal sweep SWEEP.toml`: the cells of a sweep file run locally (N at a time), one cell run in this
//! process (`--cell N`, what each Slurm array task runs), the Slurm script (`--slurm FILE`), the list
//! (`--dry-run`) or the report (`--report`). The work is ftcal-sweep's.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use ftcal_sweep::{CellState, LocalOptions, Sweep, SweepEvent};
use ftcal_train::interrupt::{self, PausePoint};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend;
use crate::run::{TerminalObserver, report_outcome, stop_on_signals};

/// The exit status of a sweep in which some cells failed (each one's error is in `sweep.csv`).
pub const EXIT_CELLS_FAILED: u8 = 4;

/// Arguments of `ftcal sweep`.
#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The sweep file (TOML), e.g. configs/sweeps/digits2-optimizers.toml.
    sweep: PathBuf,

    /// Override a config value of every cell (after the sweep's own values), e.g.
    /// `--set fine_tuning.epochs=2`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,

    /// Cells run at once (each is its own process; one run already uses every core of a CPU).
    #[arg(long, default_value_t = 1)]
    jobs: usize,

    /// GPUs to spread the cells over, one cell per GPU at a time (`--devices 0,1,2,3`; each cell's
    /// process sees its GPU alone through CUDA_VISIBLE_DEVICES). Replaces --jobs.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    devices: Vec<String>,

    /// Only the cells whose values match, e.g. `--only optimizer=adam,lr=1e-3`.
    #[arg(long, value_name = "FILTER")]
    only: Option<String>,

    /// List the cells and their states; run nothing.
    #[arg(long, conflicts_with_all = ["slurm", "cell", "report"])]
    dry_run: bool,

    /// Write an sbatch job-array script of the unfinished cells to FILE instead of running them.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["cell", "report"])]
    slurm: Option<PathBuf>,

    /// Run the cell of this index in this process (what a Slurm array task runs).
    #[arg(long, value_name = "N", conflicts_with = "report")]
    cell: Option<usize>,

    /// Write the sweep's report (sweep.csv, sweep.md, heatmaps) from what its cells hold now.
    #[arg(long)]
    report: bool,

    /// Hold a cell at a named point (tests): with --cell, this process; else the child of --pause-cell.
    #[arg(long, hide = true, value_name = "POINT")]
    pause_at: Option<PausePoint>,

    /// The cell whose process gets --pause-at (tests of the local executor).
    #[arg(long, hide = true, value_name = "N")]
    pause_cell: Option<usize>,
}

/// Runs `ftcal sweep`.
pub fn run(args: &SweepArgs) -> Result<ExitCode> {
    let sweep = Sweep::load(&args.sweep, &args.set).map_err(|error| anyhow!("{error}"))?;
    if let Some(index) = args.cell {
        return run_one(&sweep, index, args);
    }
    if args.report {
        return report(&sweep).map(|()| ExitCode::SUCCESS);
    }
    let cells = sweep
        .select(args.only.as_deref())
        .map_err(|error| anyhow!("{error}"))?;
    if cells.is_empty() {
        bail!(
            "--only {}: no cell of the sweep matches",
            args.only.as_deref().unwrap_or("")
        );
    }
    if args.dry_run {
        println!(
            "sweep `{}` in {}: {} cells",
            sweep.name,
            sweep.dir.display(),
            sweep.cells.len()
        );
        for cell in &cells {
            let state = sweep.state(cell).map_err(|error| anyhow!("{error}"))?;
            println!("{:>4}  {:<12} {}", cell.index, state.word(), cell.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    sweep.write_index().map_err(|error| anyhow!("{error}"))?;
    if let Some(path) = &args.slurm {
        return slurm(&sweep, &cells, path, args).map(|()| ExitCode::SUCCESS);
    }
    let signal = stop_on_signals()?;
    let mut arguments = vec!["sweep".to_string(), args.sweep.display().to_string()];
    for assignment in &args.set {
        arguments.extend(["--set".to_string(), assignment.clone()]);
    }
    let options = LocalOptions {
        program: std::env::current_exe().context("cannot find the ftcal executable to run cells with")?,
        arguments,
        jobs: args.jobs,
        devices: args.devices.clone(),
        test_hook: match (args.pause_cell, &args.pause_at) {
            (Some(cell), Some(point)) => {
                Some((cell, vec![format!("--pause-at={}#{}", point.name, point.nth)]))
            }
            _ => None,
        },
    };
    let mut progress = SweepProgress::new();
    let outcome = ftcal_sweep::run_local(&sweep, &cells, &options, &mut |event| progress.event(event))
        .map_err(|error| anyhow!("{error}"))?;
    progress.finish();
    if outcome.stopped {
        eprintln!("sweep stopped; the running cells stopped at a safe point; the same command resumes");
        let signal = signal.load(std::sync::atomic::Ordering::SeqCst);
        return Ok(ExitCode::from(128 + signal.max(0) as u8));
    }
    report(&sweep)?;
    let failed = outcome.failed();
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} cells failed; their errors are in {} and their logs in {}",
            outcome.states.len(),
            sweep.dir.join("sweep.csv").display(),
            sweep.dir.join("logs").display()
        );
        return Ok(ExitCode::from(EXIT_CELLS_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--cell N`: one cell in this process.
fn run_one(sweep: &Sweep, index: usize, args: &SweepArgs) -> Result<ExitCode> {
    let Some(cell) = sweep.cells.get(index) else {
        bail!(
            "--cell {index}: the sweep has {} cells (0 to {})",
            sweep.cells.len(),
            sweep.cells.len().saturating_sub(1)
        );
    };
    let device = backend::device(cell.config.backend)
        .with_context(|| format!("cell {index} `{}`: backend", cell.name))?;
    interrupt::pause_at(args.pause_at.clone());
    let signal = stop_on_signals()?;
    eprintln!(
        "ftcal sweep: cell {index} `{}` in {}",
        cell.name,
        cell.dir.display()
    );
    let mut observer = TerminalObserver::new();
    let outcome = ftcal_sweep::run_cell(sweep, cell, &device, &mut observer)
        .map_err(|error| anyhow!("{error}"))
        .with_context(|| format!("cell {index} `{}` in {}", cell.name, cell.dir.display()))?;
    observer.finish();
    Ok(report_outcome(outcome, &cell.dir, &signal))
}

fn report(sweep: &Sweep) -> Result<()> {
    let written = ftcal_sweep::write_report(sweep).map_err(|error| anyhow!("{error}"))?;
    println!("{}", written.markdown);
    if let Some(reason) = written.no_heatmap {
        eprintln!("{reason}");
    }
    println!("report: {}", sweep.dir.join("sweep.md").display());
    Ok(())
}

fn slurm(sweep: &Sweep, cells: &[&ftcal_sweep::Cell], path: &Path, args: &SweepArgs) -> Result<()> {
    let mut unfinished = Vec::new();
    for cell in cells {
        if !sweep.state(cell).map_err(|error| anyhow!("{error}"))?.is_final() {
            unfinished.push(cell.index);
        }
    }
    if unfinished.is_empty() {
        println!(
            "every selected cell is finished; nothing to submit (ftcal sweep --report writes the report)"
        );
        return Ok(());
    }
    let program = std::env::current_exe().context("cannot find the ftcal executable")?;
    let workdir = std::env::current_dir().context("cannot read the working directory")?;
    std::fs::create_dir_all(sweep.dir.join("logs"))
        .with_context(|| format!("cannot create {}", sweep.dir.join("logs").display()))?;
    let script = ftcal_sweep::slurm::script(sweep, &unfinished, &program, &workdir, &args.set);
    ftcal_eval::write_atomic(path, script.as_bytes()).map_err(|error| anyhow!("{error}"))?;
    println!(
        "{}: a job array of {} cells ({} already finished); submit it with: sbatch {}",
        path.display(),
        unfinished.len(),
        cells.len() - unfinished.len(),
        path.display()
    );
    Ok(())
}

/// One bar for the sweep on a terminal (cells done, running, failed, ETA); plain lines elsewhere.
struct SweepProgress {
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl SweepProgress {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn event(&mut self, event: SweepEvent<'_>) {
        match event {
            SweepEvent::Started {
                to_run,
                already_final,
            } => {
                self.line(&format!(
                    "sweep: {to_run} cells to run, {already_final} already finished"
                ));
                if self.terminal {
                    let bar = ProgressBar::new(to_run as u64);
                    bar.set_style(
                        ProgressStyle::with_template("sweep [{bar:30}] {pos}/{len} cells {msg}")
                            .expect("a valid template")
                            .progress_chars("=> "),
                    );
                    bar.enable_steady_tick(Duration::from_secs(1));
                    self.bar = Some(bar);
                }
            }
            SweepEvent::CellStarted { cell, log } => {
                self.line(&format!(
                    "cell {} `{}`: started (log {})",
                    cell.index,
                    cell.name,
                    log.display()
                ));
            }
            SweepEvent::CellEnded { cell, state, seconds } => {
                self.line(&format!(
                    "cell {} `{}`: {state} after {seconds:.0} s",
                    cell.index, cell.name
                ));
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                if matches!(state, CellState::Failed { .. }) && self.bar.is_none() {
                    eprintln!("  (the cell's error is in its failure record and in sweep.csv)");
                }
            }
            SweepEvent::Tick(progress) => {
                if let Some(bar) = &self.bar {
                    let eta = progress
                        .eta_seconds
                        .map_or("eta …".to_string(), |s| format!("eta {}", format_duration(s)));
                    bar.set_message(format!(
                        "· {} running · {} failed · {} diverged · {eta}",
                        progress.running, progress.failed, progress.diverged
                    ));
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn format_duration(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}
