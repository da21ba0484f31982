//! `ftcal run CONFIG [--set key=value]... [--out DIR] [--force]`: the whole pipeline of one config, and
//! `ftcal eval RUN_DIR`, its eval stage again from the saved outputs.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use ftcal_train::config_file::{Override, read_run_config};
use ftcal_train::interrupt::{self, PausePoint};
use ftcal_train::pipeline::RunOutcome;
use ftcal_train::report::EpochRows;
use ftcal_train::{Event, Observer, RunConfig, RunOptions};
use indicatif::{ProgressBar, ProgressStyle};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::backend;

/// The exit status of a run whose loss became NaN or infinite (`summary.json` says where).
pub const EXIT_DIVERGED: u8 = 3;

/// Arguments of `ftcal run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The run config (TOML), e.g. configs/quickstart.toml.
    config: PathBuf,

    /// Override a config value, e.g. `--set fine_tuning.lr=0.01` or `--set model.arch=resnet50`; values
    /// are TOML (numbers, booleans, strings, arrays), anything else a string. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,

    /// The run directory (default: `output_dir/name` from the config).
    #[arg(long)]
    out: Option<PathBuf>,

    /// Start over in a run directory that holds an earlier or a finished run (deletes it first).
    #[arg(long)]
    force: bool,

    /// Stop after this fine-tuning epoch once its checkpoint is written (for testing resume).
    #[arg(long, hide = true)]
    stop_after_epoch: Option<usize>,

    /// Hold the run at a named point (`NAME` or `NAME#N`, the Nth time it is reached) until a signal or a
    /// kill, saying so on stderr (for testing kills at exact points).
    #[arg(long, hide = true, value_name = "POINT")]
    pause_at: Option<PausePoint>,

    /// Make every write of a path containing PART fail as on a full disk, from the Nth on (`PART` or
    /// `PART#N`; for testing).
    #[arg(long, hide = true, value_name = "PART", value_parser = parse_write_fault)]
    fail_writes: Option<ftcal_eval::io::WriteFault>,
}

/// `PART` or `PART#N`: writes of paths containing PART fail as on a full disk from the Nth on.
fn parse_write_fault(text: &str) -> Result<ftcal_eval::io::WriteFault, String> {
    let (part, nth) = match text.rsplit_once('#') {
        Some((part, nth)) => (part, nth.parse().map_err(|_| format!("`{nth}` is not a count"))?),
        None => (text, 1),
    };
    if part.is_empty() || nth == 0 {
        return Err("expected PART or PART#N with N ≥ 1".into());
    }
    Ok(ftcal_eval::io::WriteFault {
        path_contains: part.to_string(),
        nth,
        kind: std::io::ErrorKind::StorageFull,
    })
}

/// Arguments of `ftcal eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run directory written by `ftcal run`.
    run_dir: PathBuf,
}

/// Reads a run config, applies `--set` overrides and resolves defaults; every error names the file line or
/// the key.
pub fn load_config(path: &Path, overrides: &[String]) -> Result<RunConfig> {
    let overrides = overrides
        .iter()
        .map(|assignment| Override::parse(assignment).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    read_run_config(path, &overrides).map_err(|error| anyhow!("{error}"))
}

/// Runs `ftcal run`.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let config = load_config(&args.config, &args.set)?;
    let dir = ftcal_train::run_dir(&config, args.out.as_deref());
    let device =
        backend::device(config.backend).with_context(|| format!("{}: backend", args.config.display()))?;
    let options = RunOptions {
        force: args.force,
        stop_after_epoch: args.stop_after_epoch,
        ..RunOptions::default()
    };
    interrupt::pause_at(args.pause_at.clone());
    ftcal_eval::io::inject_write_fault(args.fail_writes.clone());
    let signal = stop_on_signals()?;
    let mut observer = TerminalObserver::new();
    let outcome = ftcal_train::run(&config, &dir, &device, &options, &mut observer)
        .map_err(|error| anyhow!("{error}"))
        .with_context(|| format!("run `{}` in {}", config.name, dir.display()))?;
    observer.finish();
    Ok(report_outcome(outcome, &dir, &signal))
}

/// Prints how a run ended (its table, or where it diverged or stopped) and gives `ftcal run`'s exit status.
pub fn report_outcome(outcome: RunOutcome, dir: &Path, signal: &AtomicI32) -> ExitCode {
    match outcome {
        RunOutcome::Completed(report) | RunOutcome::AlreadyDone(report) => {
            println!("{}", report.table);
            println!("report: {}", ftcal_train::RunDir::new(dir).report().display());
            ExitCode::SUCCESS
        }
        RunOutcome::Diverged(report) => {
            let at = report
                .summary
                .diverged
                .clone()
                .expect("a diverged summary says where");
            eprintln!(
                "error: the run diverged (NaN or infinite loss) in stage {} at epoch {}, iteration {}; see {}",
                at.stage,
                at.epoch,
                at.iteration,
                ftcal_train::RunDir::new(dir).summary().display()
            );
            ExitCode::from(EXIT_DIVERGED)
        }
        RunOutcome::Stopped { at } => {
            eprintln!("stopped ({at}); the same command resumes");
            match signal.load(Ordering::SeqCst) {
                0 => ExitCode::SUCCESS,
                // As a shell reports a process ended by the signal: 130 for Ctrl-C, 143 for SIGTERM.
                signal => ExitCode::from(128 + signal as u8),
            }
        }
    }
}

/// SIGTERM (Slurm's time limit or preemption, `kill`) and SIGINT (Ctrl-C) ask the run to stop at its next
/// safe point; a second one ends the process at once. Returns the first signal received (0: none).
pub fn stop_on_signals() -> Result<Arc<AtomicI32>> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the SIGINT/SIGTERM handlers")?;
    let received = Arc::new(AtomicI32::new(0));
    let first = received.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
            if first.swap(signal, Ordering::SeqCst) != 0 {
                eprintln!(
                    "ftcal: {name} again: stopping now; the run directory holds the last checkpoint and the same command resumes from it"
                );
                std::process::exit(128 + signal);
            }
            eprintln!(
                "ftcal: {name}: stopping at the next safe point (a checkpoint); send it again to stop at once"
            );
            interrupt::request_stop();
        }
    });
    Ok(received)
}

/// Runs `ftcal eval`.
pub fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let _lock = ftcal_train::RunDir::new(&args.run_dir)
        .lock_existing()
        .map_err(|error| anyhow!("{error}"))?;
    let report = ftcal_train::evaluate_run(&args.run_dir, EpochRows::Recomputed)
        .map_err(|error| anyhow!("{error}"))?;
    println!("{}", report.table);
    println!(
        "report: {}",
        ftcal_train::RunDir::new(&args.run_dir).report().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Progress on a terminal: a bar per epoch (iteration, loss, lr, images/s). Elsewhere: the messages and a
/// line per tenth of each epoch, as in `log.txt`.
pub struct TerminalObserver {
    terminal: bool,
    bar: Option<ProgressBar>,
    stage: String,
    epoch: usize,
    iterations: usize,
    loss: Option<f64>,
}

impl TerminalObserver {
    /// Bars on a terminal, plain lines elsewhere.
    pub fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            stage: String::new(),
            epoch: 0,
            iterations: 0,
            loss: None,
        }
    }

    /// Clears the last bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for TerminalObserver {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Message(text) => match &self.bar {
                Some(bar) => bar.println(*text),
                None => eprintln!("{text}"),
            },
            Event::EpochStarted {
                stage,
                epoch,
                epochs,
                iterations,
            } => {
                self.stage = stage.to_string();
                self.epoch = *epoch;
                self.iterations = *iterations;
                if self.terminal {
                    let bar = ProgressBar::new(*iterations as u64);
                    bar.set_style(
                        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
                            .expect("a valid template")
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("{stage} epoch {}/{epochs}", epoch + 1));
                    self.bar = Some(bar);
                }
            }
            Event::Iteration {
                iteration,
                loss,
                lr,
                images_per_second,
            } => {
                // The loss comes back from the device every tenth of an epoch; the bar shows the last one.
                if loss.is_some() {
                    self.loss = *loss;
                }
                let loss = self.loss.map_or("loss …".to_string(), |l| format!("loss {l:.4}"));
                let text = format!("{loss}, lr {lr:.2e}, {images_per_second:.0} images/s");
                match &self.bar {
                    Some(bar) => {
                        bar.set_position(*iteration as u64);
                        bar.set_message(text);
                    }
                    None if iteration % self.iterations.div_ceil(10).max(1) == 0 => {
                        eprintln!(
                            "{} epoch {} iteration {iteration}/{}: {text}",
                            self.stage, self.epoch, self.iterations
                        );
                    }
                    None => {}
                }
            }
            Event::EpochFinished => self.finish(),
            Event::Evaluating { what, images } => {
                if !self.terminal {
                    eprintln!("evaluating {what} ({images} images)");
                }
            }
        }
    }
}
