//! `ftcal run CONFIG [--set key=value]... [--out DIR] [--force]`: the whole pipeline of one config, and
//! `ftcal eval RUN_DIR`, its eval stage again from the saved outputs.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use ftcal_train::interrupt::{self, PausePoint};
use ftcal_train::pipeline::RunOutcome;
use ftcal_train::report::EpochRows;
use ftcal_train::{Event, Observer, RunConfig, RunOptions};
use indicatif::{ProgressBar, ProgressStyle};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::backend;
use crate::config::nearest_hint;

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
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    // Parsing the text itself first gives errors with the file's line and column.
    let parsed: RunConfig = toml::from_str(&text).map_err(|error| {
        let message = error.to_string();
        anyhow!(
            "{}: {}{}",
            path.display(),
            message.trim_end(),
            nearest_hint(&message)
        )
    })?;
    let config = if overrides.is_empty() {
        parsed
    } else {
        let mut table: toml::Table = toml::from_str(&text).expect("parsed above");
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
        }
        table.try_into().map_err(|error: toml::de::Error| {
            let message = error.to_string();
            anyhow!(
                "{} with --set {}: {}{}",
                path.display(),
                overrides.join(" --set "),
                message.trim_end(),
                nearest_hint(&message)
            )
        })?
    };
    config
        .resolve()
        .map_err(|error| anyhow!("{}: {error}", path.display()))
}

/// Applies one `a.b.c=value` to the config table. The value is read as TOML when it parses as a TOML
/// value, else taken as a string (so `model.arch=resnet50` needs no quotes).
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let Some((key, raw)) = assignment.split_once('=') else {
        bail!("--set {assignment}: expected KEY=VALUE, e.g. fine_tuning.lr=0.01");
    };
    let key = key.trim();
    let path: Vec<&str> = key.split('.').collect();
    if path.iter().any(|part| part.is_empty()) {
        bail!("--set {assignment}: `{key}` is not a dotted key like fine_tuning.lr");
    }
    let value = parse_value(raw.trim());
    let (last, parents) = path.split_last().expect("split yields at least one part");
    let mut current = table;
    for (depth, part) in parents.iter().enumerate() {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            other => bail!(
                "--set {assignment}: `{}` is a {}, not a table",
                path[..=depth].join("."),
                other.type_str()
            ),
        };
    }
    current.insert(last.to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("value = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
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
    };
    interrupt::pause_at(args.pause_at.clone());
    ftcal_eval::io::inject_write_fault(args.fail_writes.clone());
    let signal = stop_on_signals()?;
    let mut observer = TerminalObserver::new();
    let outcome = ftcal_train::run(&config, &dir, &device, &options, &mut observer)
        .map_err(|error| anyhow!("{error}"))
        .with_context(|| format!("run `{}` in {}", config.name, dir.display()))?;
    observer.finish();
    match outcome {
        RunOutcome::Completed(report) | RunOutcome::AlreadyDone(report) => {
            println!("{}", report.table);
            println!("report: {}", ftcal_train::RunDir::new(&dir).report().display());
            Ok(ExitCode::SUCCESS)
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
                ftcal_train::RunDir::new(&dir).summary().display()
            );
            Ok(ExitCode::from(EXIT_DIVERGED))
        }
        RunOutcome::Stopped { at } => {
            eprintln!("stopped ({at}); the same command resumes");
            Ok(match signal.load(Ordering::SeqCst) {
                0 => ExitCode::SUCCESS,
                // As a shell reports a process ended by the signal: 130 for Ctrl-C, 143 for SIGTERM.
                signal => ExitCode::from(128 + signal as u8),
            })
        }
    }
}

/// SIGTERM (Slurm's time limit or preemption, `kill`) and SIGINT (Ctrl-C) ask the run to stop at its next
/// safe point; a second one ends the process at once. Returns the first signal received (0: none).
fn stop_on_signals() -> Result<Arc<AtomicI32>> {
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
struct TerminalObserver {
    terminal: bool,
    bar: Option<ProgressBar>,
    stage: String,
    epoch: usize,
    iterations: usize,
    loss: Option<f64>,
}

impl TerminalObserver {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            stage: String::new(),
            epoch: 0,
            iterations: 0,
            loss: None,
        }
    }

    fn finish(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn overrides_are_typed_as_toml_and_bare_words_are_strings() {
        let mut config = table("[fine_tuning]\nlr = 0.001\n[model]\narch = \"resnet18\"\n");
        apply_override(&mut config, "fine_tuning.lr=0.05").unwrap();
        apply_override(&mut config, "fine_tuning.epochs = 3").unwrap();
        apply_override(&mut config, "fine_tuning.freeze_batch_norm=true").unwrap();
        apply_override(&mut config, "model.arch=resnet50").unwrap();
        apply_override(&mut config, "eval.calibration=[\"alg\", \"oracle\"]").unwrap();
        apply_override(&mut config, "name=a=b").unwrap();
        assert_eq!(config["fine_tuning"]["lr"], toml::Value::Float(0.05));
        assert_eq!(config["fine_tuning"]["epochs"], toml::Value::Integer(3));
        assert_eq!(
            config["fine_tuning"]["freeze_batch_norm"],
            toml::Value::Boolean(true)
        );
        assert_eq!(config["model"]["arch"], toml::Value::String("resnet50".into()));
        assert_eq!(
            config["eval"]["calibration"].as_array().unwrap().len(),
            2,
            "a new table is made"
        );
        assert_eq!(
            config["name"],
            toml::Value::String("a=b".into()),
            "only the first = splits"
        );
    }

    #[test]
    fn malformed_overrides_say_what_is_expected() {
        let mut config = table("seed = 0\n");
        let error = apply_override(&mut config, "seed").unwrap_err().to_string();
        assert!(error.contains("expected KEY=VALUE"), "{error}");
        let error = apply_override(&mut config, "fine_tuning..lr=1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a dotted key"), "{error}");
        let error = apply_override(&mut config, "seed.value=1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("`seed` is a integer, not a table"), "{error}");
    }
}
