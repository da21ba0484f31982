//! Running cells: one in this process (`ftcal sweep SWEEP --cell N`, what a Slurm task runs), or every
//! unfinished one as child processes of that command, N at a time (the local executor). A child per cell
//! keeps a crash, a panic or an out-of-memory kill of one cell from taking the sweep down with it, and
//! makes a local cell the same process a Slurm task is.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use ftcal_train::interrupt;
use ftcal_train::pipeline::RunOutcome;
use ftcal_train::shared::SharedStages;
use ftcal_train::{Observer, RunOptions, TrainError};

use crate::SweepError;
use crate::plan::{Cell, Sweep};
use crate::status::{CellState, create_parent};

/// The exit status of `ftcal run` (and of a cell) whose loss diverged.
pub const EXIT_DIVERGED: i32 = 3;

/// Runs (or resumes) one cell in this process, sharing the sweep's source stage and pre-trained
/// evaluation. When another process runs the same cell, waits for it to end, then finds it done (or
/// resumes what it left). An error is recorded for the sweep before it is returned.
pub fn run_cell(
    sweep: &Sweep,
    cell: &Cell,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<RunOutcome, SweepError> {
    sweep.clear_failure(cell)?;
    if ftcal_train::RunDir::new(&cell.dir).is_locked() {
        eprintln!(
            "ftcal sweep: cell {} `{}` is running in another process; waiting for it to end",
            cell.index, cell.name
        );
    }
    let options = RunOptions {
        shared_stages: Some(SharedStages::new(sweep.shared_dir())),
        wait_for_lock: true,
        ..RunOptions::default()
    };
    match ftcal_train::run(&cell.config, &cell.dir, device, &options, observer) {
        Ok(outcome) => Ok(outcome),
        Err(TrainError::Interrupted { at }) => Ok(RunOutcome::Stopped { at }),
        Err(error) => {
            sweep.record_failure(cell, &format!("{error}"))?;
            Err(error.into())
        }
    }
}

/// How the local executor runs cells.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The `ftcal` executable.
    pub program: PathBuf,
    /// Arguments after `ftcal` that make a child run one cell, before `--cell N`: `sweep SWEEP [--set …]`.
    pub arguments: Vec<String>,
    /// Cells run at once.
    pub jobs: usize,
    /// GPUs to spread cells over, one cell each (`CUDA_VISIBLE_DEVICES` of its process); empty: none.
    pub devices: Vec<String>,
    /// A cell index and arguments that only its child gets (the tests' `--pause-at`).
    pub test_hook: Option<(usize, Vec<String>)>,
}

/// What the local executor reports as it goes.
#[derive(Debug)]
pub enum SweepEvent<'a> {
    /// The cells to run, of how many, and how many were already final.
    Started {
        /// Cells this run will start.
        to_run: usize,
        /// Cells already completed or diverged.
        already_final: usize,
    },
    /// A cell's process started.
    CellStarted {
        /// The cell.
        cell: &'a Cell,
        /// Its log file.
        log: &'a Path,
    },
    /// A cell's process ended.
    CellEnded {
        /// The cell.
        cell: &'a Cell,
        /// Its state after the process.
        state: &'a CellState,
        /// How long it ran.
        seconds: f64,
    },
    /// A second has passed (for a progress bar's clock).
    Tick(&'a Progress),
}

/// Counts of the local executor's cells, and its estimate of the time left.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Cells this run started with.
    pub total: usize,
    /// Finished (any state) in this run.
    pub done: usize,
    /// Running now.
    pub running: usize,
    /// Ended with an error.
    pub failed: usize,
    /// Diverged.
    pub diverged: usize,
    /// Estimated seconds left: the mean time of a finished cell × the cells left ÷ jobs.
    pub eta_seconds: Option<f64>,
}

/// How a local sweep ended.
#[derive(Debug, Clone, Default)]
pub struct LocalOutcome {
    /// Each cell that ran (or was found final), with its state at the end.
    pub states: Vec<(usize, CellState)>,
    /// Whether a stop request (a signal) ended the sweep before every cell ran.
    pub stopped: bool,
}

impl LocalOutcome {
    /// The cells whose last attempt failed.
    pub fn failed(&self) -> usize {
        (self.states.iter())
            .filter(|(_, state)| matches!(state, CellState::Failed { .. }))
            .count()
    }
}

struct Running {
    child: Child,
    started: Instant,
    device: Option<String>,
}

/// Runs every cell of `cells` that is not final, `options.jobs` at a time, each as a child process
/// (`ftcal sweep SWEEP --cell N`) writing to `<sweep>/logs/<cell>.log`. A stop request (the cli's
/// SIGTERM/SIGINT handler) is passed on to the running cells, which stop at a safe point; no new cell
/// starts, and the same command resumes.
pub fn run_local(
    sweep: &Sweep,
    cells: &[&Cell],
    options: &LocalOptions,
    on_event: &mut dyn FnMut(SweepEvent<'_>),
) -> Result<LocalOutcome, SweepError> {
    let mut outcome = LocalOutcome::default();
    let mut queue = Vec::new();
    for cell in cells {
        let state = sweep.state(cell)?;
        if state.is_final() {
            outcome.states.push((cell.index, state));
        } else {
            queue.push(*cell);
        }
    }
    on_event(SweepEvent::Started {
        to_run: queue.len(),
        already_final: outcome.states.len(),
    });
    let jobs = if options.devices.is_empty() {
        options.jobs.max(1)
    } else {
        options.devices.len()
    };
    let mut free_devices: Vec<String> = options.devices.iter().rev().cloned().collect();
    let mut progress = Progress {
        total: queue.len(),
        ..Progress::default()
    };
    let mut queue = queue.into_iter();
    let mut running: Vec<(&Cell, Running)> = Vec::new();
    let mut durations = Vec::new();
    let (ended_sender, ended) = mpsc::channel::<()>();
    let mut last_tick = Instant::now();
    let mut signalled = false;
    loop {
        let stop = interrupt::stop_requested();
        if stop && !signalled {
            signalled = true;
            outcome.stopped = true;
            for (_, process) in &running {
                // SAFETY: kill(2) on our own child's pid; no memory is involved.
                unsafe { libc::kill(process.child.id() as i32, libc::SIGTERM) };
            }
        }
        while !stop && running.len() < jobs {
            let Some(cell) = queue.next() else { break };
            let device = free_devices.pop();
            let child = spawn(sweep, cell, options, device.as_deref(), ended_sender.clone())?;
            on_event(SweepEvent::CellStarted {
                cell,
                log: &sweep.log(cell),
            });
            running.push((
                cell,
                Running {
                    child,
                    started: Instant::now(),
                    device,
                },
            ));
        }
        if running.is_empty() {
            break;
        }
        let _ = ended.recv_timeout(Duration::from_millis(200));
        let mut position = 0;
        while position < running.len() {
            let status = running[position]
                .1
                .child
                .try_wait()
                .map_err(|e| SweepError::io(sweep.log(running[position].0), &e))?;
            let Some(status) = status else {
                position += 1;
                continue;
            };
            let (cell, process) = running.swap_remove(position);
            if let Some(device) = process.device {
                free_devices.push(device);
            }
            let seconds = process.started.elapsed().as_secs_f64();
            let state = ended_state(sweep, cell, status)?;
            progress.done += 1;
            match state {
                CellState::Failed { .. } => progress.failed += 1,
                CellState::Diverged { .. } => progress.diverged += 1,
                CellState::Completed => durations.push(seconds),
                _ => {}
            }
            on_event(SweepEvent::CellEnded {
                cell,
                state: &state,
                seconds,
            });
            outcome.states.push((cell.index, state));
        }
        progress.running = running.len();
        if !durations.is_empty() {
            let mean = durations.iter().sum::<f64>() / durations.len() as f64;
            let left = (progress.total - progress.done) as f64;
            progress.eta_seconds = Some(mean * left / jobs as f64);
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            on_event(SweepEvent::Tick(&progress));
        }
    }
    outcome.states.sort_by_key(|(index, _)| *index);
    Ok(outcome)
}

/// Starts `ftcal sweep SWEEP --cell N` for `cell`, its output appended to the cell's log. Its stderr
/// passes through a thread that also echoes the run's test-hook line (`ftcal: paused at …`), so that a
/// test of the sweep sees where the cell is held.
fn spawn(
    sweep: &Sweep,
    cell: &Cell,
    options: &LocalOptions,
    device: Option<&str>,
    ended: mpsc::Sender<()>,
) -> Result<Child, SweepError> {
    let log_path = sweep.log(cell);
    create_parent(&log_path)?;
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| SweepError::io(&log_path, &e))
    };
    let mut log = open()?;
    let _ = writeln!(log, "== ftcal sweep: cell {} `{}`", cell.index, cell.name);
    let mut command = Command::new(&options.program);
    command
        .args(&options.arguments)
        .args(["--cell", &cell.index.to_string()])
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(Stdio::piped());
    if let Some((hooked, arguments)) = &options.test_hook
        && *hooked == cell.index
    {
        command.args(arguments);
    }
    if let Some(device) = device {
        command.env("CUDA_VISIBLE_DEVICES", device);
    }
    // Its own process group: Ctrl-C at the terminal reaches the sweep alone, which passes one SIGTERM
    // on; two signals would end the cell at once instead of at a safe point.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|e| SweepError::io(&options.program, &e))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("ftcal: paused at") {
                eprintln!("{line}");
            }
            let _ = writeln!(log, "{line}");
        }
        let _ = ended.send(());
    });
    Ok(child)
}

/// A cell's state once its process ended; a process that died without saying why (a crash, a kill by
/// the out-of-memory killer) gets a failure record naming its exit status and log.
fn ended_state(sweep: &Sweep, cell: &Cell, status: ExitStatus) -> Result<CellState, SweepError> {
    let state = sweep.state(cell)?;
    let unexplained = !status.success()
        && !matches!(state, CellState::Failed { .. } | CellState::Diverged { .. })
        && !matches!(status.code(), Some(130 | 143));
    if unexplained {
        let how = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "ended".to_string(),
        };
        sweep.record_failure(
            cell,
            &format!(
                "the cell's process ended with {how}; see {}",
                sweep.log(cell).display()
            ),
        )?;
        return sweep.state(cell);
    }
    Ok(state)
}
