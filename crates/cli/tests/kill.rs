//! A run killed at any moment, or stopped by a signal, resumes to exactly the files of an uninterrupted run
//! (CPU, flex, a reduced Digits-2 run with every stage). The kills are real signals sent to the `ftcal`
//! process while it is held at a named point by the hidden `--pause-at` hook, so each lands exactly where
//! the test says, not where a guessed sleep happens to fall.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use common::{digits_target_tables, ftcal, text, tiny_run_config, workspace};

/// Every stage, each as short as it can be (fine-tuning 3 × 4 iterations).
fn tiny_config(dir: &Path) -> PathBuf {
    let config = tiny_run_config(3);
    let path = dir.join("tiny.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// How a step ends the process once it is held at its point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Kill,
    Terminate,
    Interrupt,
}

struct Finished {
    status: ExitStatus,
    stderr: String,
}

impl Finished {
    fn describe(&self) -> String {
        format!("status {:?}\nstderr:\n{}", self.status, self.stderr)
    }
}

/// Runs `ftcal run CONFIG --out DIR EXTRA...`; when it says it is held at `pause`, ends it as `ending`
/// says. Gives up after 5 minutes.
fn run(config: &Path, dir: &Path, extra: &[&str], pause: Option<(&str, Ending)>) -> Finished {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ftcal"));
    command
        .args(["run", config.to_str().unwrap(), "--out", dir.to_str().unwrap()])
        .args(extra)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((point, _)) = pause {
        command.args(["--pause-at", point]);
    }
    let mut child = command.spawn().expect("ftcal starts");
    let mut stdout = child.stdout.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = stdout.read_to_string(&mut sink);
    });
    let (lines, received) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let stderr_reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut log = String::new();
    let mut signalled = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                let held = line.starts_with("ftcal: paused at");
                log.push_str(&line);
                log.push('\n');
                if let (true, Some((_, ending)), false) = (held, pause, signalled) {
                    signalled = true;
                    let signal = match ending {
                        Ending::Kill => libc::SIGKILL,
                        Ending::Terminate => libc::SIGTERM,
                        Ending::Interrupt => libc::SIGINT,
                    };
                    // SAFETY: kill(2) on our own child's pid; no memory is involved.
                    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("ftcal did not finish within 5 minutes:\n{log}");
            }
        }
    }
    let status = child.wait().unwrap();
    stdout_reader.join().unwrap();
    stderr_reader.join().unwrap();
    if let Some((point, _)) = pause {
        assert!(signalled, "the run never reached `{point}`:\n{log}");
    }
    Finished { status, stderr: log }
}

/// Every file under `dir` but `log.txt` (it holds times), by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, folder: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if name != "log.txt" {
                    out.insert(name, std::fs::read(&path).unwrap());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The run directories hold the same files with the same bytes.
fn assert_same_run(expected: &Path, actual: &Path) {
    let (expected, actual) = (files(expected), files(actual));
    let names = |files: &BTreeMap<String, Vec<u8>>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&actual), names(&expected), "the same files");
    let differing: Vec<&String> = expected
        .iter()
        .filter(|(name, bytes)| actual[*name] != **bytes)
        .map(|(name, _)| name)
        .collect();
    assert!(differing.is_empty(), "files that differ: {differing:?}");
    assert_eq!(
        text(&actual["summary.json"]),
        text(&expected["summary.json"]),
        "summary.json in full"
    );
}

/// The same command, run once more, finishes the run in `dir`, which is then the uninterrupted run's.
fn finishes_as_uninterrupted(config: &Path, dir: &Path) {
    let finished = run(config, dir, &[], None);
    assert!(finished.status.success(), "{}", finished.describe());
    assert_same_run(uninterrupted(), dir);
}

fn killed_by(finished: &Finished, signal: i32) {
    assert_eq!(finished.status.signal(), Some(signal), "{}", finished.describe());
}

/// The uninterrupted run of [`tiny_config`] the tests compare with, made once per test process (in
/// cargo's scratch folder for integration tests).
fn uninterrupted() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let folder = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kill-uninterrupted");
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        let dir = folder.join("run");
        let finished = run(&tiny_config(&folder), &dir, &[], None);
        assert!(finished.status.success(), "{}", finished.describe());
        dir
    })
}

/// Kills and stops at every kind of point, one after the other in the same run directory, then compares
/// the resumed run with an uninterrupted one, file by file. Twelve processes wrote the resumed run's files
/// and another the uninterrupted run's, so this also shows that every file ftcal writes has the same bytes
/// for the same content, whichever process writes it.
#[test]
fn a_run_killed_or_stopped_anywhere_resumes_to_the_uninterrupted_runs_files() {
    let temp = tempfile::tempdir().unwrap();
    let config = tiny_config(temp.path());
    let dir = temp.path().join("interrupted");
    let kill = |point: &str| {
        let finished = run(&config, &dir, &[], Some((point, Ending::Kill)));
        killed_by(&finished, libc::SIGKILL);
        finished
    };
    // The source stage: in its first epoch (no checkpoint yet), then in its second.
    kill("source iteration#3");
    let finished = kill("source iteration#6");
    assert!(
        !dir.join("models/source.safetensors").exists(),
        "{}",
        finished.describe()
    );
    // While the trained source model is evaluated, and while the pre-trained model is.
    kill("evaluating source test#2");
    kill("evaluating test, pre-trained#2");
    // In the middle of the second fine-tuning epoch.
    let finished = kill("fine_tuning iteration#6");
    assert!(
        finished.stderr.contains("fine_tuning epoch 1/3"),
        "epoch 0 was done: {}",
        finished.describe()
    );
    // After epoch 1's checkpoint, while epoch 1 is evaluated: the resumed run evaluates it first.
    kill("evaluating train, epoch 1#2");
    // SIGTERM in the middle of epoch 2: a clean stop with a checkpoint inside the epoch.
    let finished = run(
        &config,
        &dir,
        &[],
        Some(("fine_tuning iteration#2", Ending::Terminate)),
    );
    assert_eq!(finished.status.code(), Some(143), "{}", finished.describe());
    assert!(
        finished
            .stderr
            .contains("stopped at a safe point: fine_tuning in epoch 2 after iteration 2/4"),
        "{}",
        finished.describe()
    );
    // In each PCV fold.
    let finished = kill("pcv-0 iteration#3");
    assert!(
        finished
            .stderr
            .contains("fine_tuning: resuming at epoch 2, iteration 2/4"),
        "{}",
        finished.describe()
    );
    kill("pcv-1 iteration#1");
    // Ctrl-C while the last fold's model is evaluated: a clean stop between evaluation batches.
    let finished = run(
        &config,
        &dir,
        &[],
        Some(("evaluating PCV fold 1, S train#1", Ending::Interrupt)),
    );
    assert_eq!(finished.status.code(), Some(130), "{}", finished.describe());
    assert!(
        finished.stderr.contains("stopped at a safe point"),
        "{}",
        finished.describe()
    );
    // While the report is written.
    kill("report report.md");
    assert!(!dir.join("summary.json").exists());

    finishes_as_uninterrupted(&config, &dir);

    // `ftcal eval` computes every row again from the saved outputs (the features of the middle epochs
    // were not kept: their NCM metrics come from metrics.csv) and writes the same files.
    let output = ftcal(&["eval", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_same_run(uninterrupted(), &dir);
}

/// Holistic Transfer with every part on, no source stage: 2 epochs of 6 iterations, each epoch one LOLSGD
/// round of 2 copies × 3 steps.
fn tiny_holistic_transfer_config(dir: &Path) -> PathBuf {
    let config = format!(
        r#"name = "tiny-ht"
seed = 5

{}
[fine_tuning]
method = "holistic_transfer"
epochs = 2
iterations_per_epoch = 6
batch_size = 32
lr = 0.05

[fine_tuning.lolsgd]
copies = 2
local_steps = 3

[fine_tuning.rank_regularization]

[fine_tuning.ensemble]
kind = "weights"

[eval]
batch_size = 500
calibration = ["alg", "oracle"]
"#,
        digits_target_tables()
    );
    let path = dir.join("tiny-ht.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A stop inside a LOLSGD round saves the round (the weights its copies start from, the sum of those
/// finished) with the checkpoint; the resumed run, killed again in the next round, ends with exactly the
/// files of an uninterrupted run.
#[test]
fn a_run_stopped_inside_a_lolsgd_round_resumes_to_the_uninterrupted_runs_files() {
    let temp = tempfile::tempdir().unwrap();
    let config = tiny_holistic_transfer_config(temp.path());
    let expected = temp.path().join("uninterrupted");
    let finished = run(&config, &expected, &[], None);
    assert!(finished.status.success(), "{}", finished.describe());

    let dir = temp.path().join("interrupted");
    // Held before iteration 5 of epoch 0: the run takes it, then stops with copy 1 two steps in.
    let finished = run(
        &config,
        &dir,
        &[],
        Some(("fine_tuning iteration#5", Ending::Terminate)),
    );
    assert_eq!(finished.status.code(), Some(143), "{}", finished.describe());
    assert!(
        finished
            .stderr
            .contains("fine_tuning in epoch 0 after iteration 5/6"),
        "{}",
        finished.describe()
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("checkpoints/fine_tuning/state.json")).unwrap())
            .unwrap();
    let round = &state["lolsgd_round"];
    assert_eq!(round["copies_summed"], 1, "{state:#}");
    for file in [&round["start_file"], &round["sum_file"]] {
        let file = file.as_str().unwrap();
        assert!(dir.join("checkpoints/fine_tuning").join(file).exists(), "{file}");
    }
    // Resumed inside the round, then killed inside epoch 1's round (before its second iteration).
    let finished = run(
        &config,
        &dir,
        &[],
        Some(("fine_tuning iteration#3", Ending::Kill)),
    );
    killed_by(&finished, libc::SIGKILL);
    assert!(
        finished.stderr.contains("resuming at epoch 0, iteration 5/6"),
        "{}",
        finished.describe()
    );
    let finished = run(&config, &dir, &[], None);
    assert!(finished.status.success(), "{}", finished.describe());
    assert_same_run(&expected, &dir);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["method"]["holistic_transfer_parts"],
        serde_json::json!([
            "frozen_classifier",
            "lolsgd",
            "distillation",
            "rank_regularization",
            "ensemble_weights"
        ]),
        "{summary:#}"
    );
}

/// A full disk stops the run with an error naming the file; every earlier checkpoint stays, and once
/// there is space the same command finishes the run as if nothing had happened.
#[test]
fn a_full_disk_stops_the_run_and_the_same_command_resumes_it() {
    let temp = tempfile::tempdir().unwrap();
    let config = tiny_config(temp.path());
    let dir = temp.path().join("full");
    // The second checkpoint of fine-tuning (after its epoch 1) fails at its last write, `state.json`,
    // after its model and optimizer files: a crash between the writes of one checkpoint.
    let finished = run(
        &config,
        &dir,
        &["--fail-writes", "checkpoints/fine_tuning/state.json#2"],
        None,
    );
    assert_eq!(finished.status.code(), Some(1), "{}", finished.describe());
    assert!(
        finished.stderr.contains("checkpoints/fine_tuning/state.json")
            && finished.stderr.contains("the disk is full"),
        "{}",
        finished.describe()
    );
    let checkpoint = dir.join("checkpoints/fine_tuning");
    let state = std::fs::read_to_string(checkpoint.join("state.json")).unwrap();
    assert!(
        state.contains("\"epochs_done\": 1") && state.contains("model-4.safetensors"),
        "epoch 0's checkpoint stays the current one: {state}"
    );
    let mut files: Vec<String> = std::fs::read_dir(&checkpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "model-4.safetensors",
            "model-8.safetensors",
            "optimizer-4.safetensors",
            "optimizer-8.safetensors",
            "state.json"
        ],
        "no half-written file; epoch 1's files wait, named by no state, for the next checkpoint to remove them"
    );

    // The report's plot: a failed write is an error, not a report without its plot.
    let finished = run(&config, &dir, &["--fail-writes", "curve.png"], None);
    assert_eq!(finished.status.code(), Some(1), "{}", finished.describe());
    assert!(
        finished.stderr.contains("curve.png") && finished.stderr.contains("the disk is full"),
        "{}",
        finished.describe()
    );
    assert!(!dir.join("summary.json").exists());

    finishes_as_uninterrupted(&config, &dir);
}

/// A config error that only a later stage would meet costs no training: the batch size is checked against
/// every stage's data before the source stage starts.
#[test]
fn config_errors_of_later_stages_are_found_before_the_first_stage() {
    let temp = tempfile::tempdir().unwrap();
    let config = tiny_config(temp.path());
    let dir = temp.path().join("run");
    let output = ftcal(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--set",
        "fine_tuning.batch_size=100000",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("fine_tuning.batch_size") && stderr.contains("fewer than one batch of 100000"),
        "{stderr}"
    );
    assert!(!dir.join("checkpoints").exists() && !dir.join("models").exists());
    // Half of S is what a PCV fold trains on: a batch that fits S but not a half is found too.
    let output = ftcal(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--set",
        "fine_tuning.batch_size=500",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("PCV fold 0 fine-tunes on half of S"), "{stderr}");
    assert!(!dir.join("checkpoints").exists() && !dir.join("models").exists());
}

/// A child process that is killed when the test ends, even by a failed assertion (a held run would
/// otherwise wait forever).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two processes never write one run directory: a second run, or `ftcal eval`, is refused while a run
/// holds it.
#[test]
fn a_second_process_is_refused_while_a_run_holds_the_directory() {
    let temp = tempfile::tempdir().unwrap();
    let config = tiny_config(temp.path());
    let dir = temp.path().join("run");
    let mut first = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_ftcal"))
            .args(["run", config.to_str().unwrap(), "--out", dir.to_str().unwrap()])
            .args(["--pause-at", "source iteration#1"])
            .current_dir(workspace())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(first.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("ftcal: paused at") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the first run ended early"
        );
    }
    let second = ftcal(&["run", config.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let eval = ftcal(&["eval", dir.to_str().unwrap()]);
    drop(first);
    for output in [second, eval] {
        let message = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(message.contains("another ftcal process is running"), "{message}");
    }
}

/// `mount ARGS...`, which must succeed.
fn mount(args: &[&str]) {
    let output = Command::new("mount").args(args).output().expect("mount runs");
    assert!(
        output.status.success(),
        "mount {}: {}",
        args.join(" "),
        text(&output.stderr)
    );
}

/// Unmounts the file system at its path when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The same on a real file system: a tmpfs too small for the run, then large enough but read-only, then
/// writable. Mounting needs root (and CAP_SYS_ADMIN), so the test is ignored by default and `.ci/run` runs
/// it where a mount works.
#[test]
#[ignore = "mounts a tmpfs: needs root; .ci/run runs it where it can"]
fn a_real_full_or_read_only_disk_stops_the_run_and_the_same_command_resumes_it() {
    let temp = tempfile::tempdir().unwrap();
    let config = tiny_config(temp.path());
    let size: usize = files(uninterrupted()).values().map(Vec::len).sum();

    let disk = temp.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let disk_arg = disk.to_str().unwrap();
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        &format!("size={}", size / 2),
        "tmpfs",
        disk_arg,
    ]);
    let _mounted = Mounted(disk.clone());
    let dir = disk.join("run");

    let finished = run(&config, &dir, &[], None);
    assert_eq!(finished.status.code(), Some(1), "{}", finished.describe());
    assert!(
        finished.stderr.contains("No space left on device")
            && finished.stderr.contains("the disk is full")
            && finished.stderr.contains(dir.to_str().unwrap()),
        "the error names the file: {}",
        finished.describe()
    );
    // More space, but read-only (Linux refuses to make a file system read-only while a process writes
    // to it, so it turns read-only between runs here).
    mount(&["-o", &format!("remount,ro,size={}", 3 * size), disk_arg]);
    let finished = run(&config, &dir, &[], None);
    assert_eq!(finished.status.code(), Some(1), "{}", finished.describe());
    assert!(
        finished.stderr.contains("Read-only file system")
            && finished.stderr.contains("the file system is read-only")
            && finished.stderr.contains(dir.to_str().unwrap()),
        "{}",
        finished.describe()
    );
    mount(&["-o", "remount,rw", disk_arg]);

    finishes_as_uninterrupted(&config, &dir);
}
