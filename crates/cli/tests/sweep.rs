//! `ftcal sweep` end to end (CPU, flex, reduced Digits-2 cells): a grid whose cells share one source
//! model, a diverging cell recorded while the others finish, a cell identical to `ftcal run` with the same
//! overrides, a sweep stopped by a real signal and resumed to the same `sweep.csv`, two processes on one
//! cell, bad cells caught before anything runs, and (ignored; `.ci/run` runs it) a real one-node Slurm.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use common::{ftcal, text, tiny_run_config, workspace};

/// A base config with every stage, each as short as it can be (fine-tuning 2 × 4 iterations), with SGD
/// and momentum written out (a grid of weight decays sets a key of its table).
fn tiny_base(dir: &Path) -> PathBuf {
    let config = format!(
        "{}\n[fine_tuning.optimizer]\nname = \"sgd\"\nmomentum = 0.9\n",
        tiny_run_config(2)
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A 2 × 2 grid of the tiny base in `dir`: lr 0.05 (finishes) and 1e9 (diverges) × two weight decays.
fn tiny_sweep(dir: &Path) -> PathBuf {
    let base = tiny_base(dir);
    let sweep = format!(
        r#"base = "{}"
name = "grid"
output_dir = "{}"

[grid]
"fine_tuning.lr" = [0.05, 1e9]
"fine_tuning.optimizer.weight_decay" = [0.0, 5e-4]
"#,
        base.display(),
        dir.display()
    );
    let path = dir.join("sweep.toml");
    std::fs::write(&path, sweep).unwrap();
    path
}

const NAMES: [&str; 4] = ["lr=0.05,wd=0", "lr=0.05,wd=5e-4", "lr=1e9,wd=0", "lr=1e9,wd=5e-4"];

/// The uninterrupted sweep every other test compares with, run once per test binary (`--jobs 2`).
fn reference() -> &'static Path {
    static REFERENCE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = REFERENCE.get_or_init(|| {
        let temp = tempfile::tempdir().unwrap();
        let sweep = tiny_sweep(temp.path());
        // Two cells at a time: the first two both need the source model; one trains it, the other waits.
        let output = ftcal(&["sweep", sweep.to_str().unwrap(), "--jobs", "2"]);
        assert!(
            output.status.success(),
            "{}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        let dir = temp.path().join("grid");
        (temp, dir)
    });
    dir
}

/// `sweep.csv` as rows of (column → value).
fn csv_rows(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let csv = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    let mut lines = csv.lines().map(split_csv);
    let header = lines.next().unwrap();
    lines
        .map(|fields| header.iter().cloned().zip(fields).collect())
        .collect()
}

fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// Every file under `dir` but `log.txt` (it holds times), by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, folder: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path
                .file_name()
                .is_some_and(|name| name != "log.txt" && name != ".lock")
            {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn a_sweep_runs_every_cell_shares_its_source_model_and_records_divergence() {
    let dir = reference();
    let rows = csv_rows(dir);
    let cells: Vec<&str> = rows.iter().map(|row| row["cell"].as_str()).collect();
    assert_eq!(cells, NAMES);
    for row in &rows {
        let diverging = row["fine_tuning.lr"] == "1e9";
        if diverging {
            assert_eq!(row["status"], "diverged", "{row:?}");
            assert!(row["detail"].starts_with("fine_tuning, epoch 0"), "{row:?}");
            assert_eq!(
                row["fine-tuned Y/Y"], "",
                "a diverged cell has no figures, not zeros"
            );
        } else {
            assert_eq!(row["status"], "completed", "{row:?}");
            for figure in [
                "pretrained Y/Y",
                "fine-tuned Y/Y",
                "fine-tuned AUSUC",
                "ALG gamma",
                "PCV Y/Y",
                "oracle Y/Y",
            ] {
                let value: f64 = row[figure]
                    .parse()
                    .unwrap_or_else(|_| panic!("{figure} in {row:?}"));
                assert!(value.is_finite());
            }
        }
    }
    assert_ne!(
        rows[0]["fine-tuned AUSUC"], rows[1]["fine-tuned AUSUC"],
        "the weight decay reaches the runs"
    );
    for file in [
        "sweep.md",
        "heatmap-ausuc.png",
        "heatmap-alg.png",
        "cells.json",
        "sweep.toml",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }

    // The source model was trained once, in the shared folder, and every cell links to it.
    let shared: Vec<PathBuf> = std::fs::read_dir(dir.join("shared"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(shared.len(), 1, "one source-stage key: {shared:?}");
    let source = shared[0].join("models/source.safetensors");
    let trained_in: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|name| {
            std::fs::read_to_string(dir.join(name).join("log.txt"))
                .unwrap()
                .contains("source: training on")
        })
        .collect();
    assert_eq!(trained_in.len(), 1, "{trained_in:?}");
    let inode = std::fs::metadata(&source).unwrap().ino();
    for name in &NAMES[..2] {
        let own = dir.join(name).join("models/source.safetensors");
        assert_eq!(
            std::fs::metadata(&own).unwrap().ino(),
            inode,
            "{name} links the shared model"
        );
    }

    // A rerun finds every cell final and changes nothing.
    let before = std::fs::read(dir.join("sweep.csv")).unwrap();
    let sweep = dir.parent().unwrap().join("sweep.toml");
    let output = ftcal(&["sweep", sweep.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("0 cells to run, 4 already finished"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(std::fs::read(dir.join("sweep.csv")).unwrap(), before);
}

#[test]
fn a_cell_is_the_run_that_ftcal_run_makes_with_its_overrides() {
    let dir = reference();
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cells.json")).unwrap()).unwrap();
    let cell = &index[1];
    assert_eq!(cell["name"], NAMES[1]);
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("alone");
    let base = dir.parent().unwrap().join("tiny.toml");
    let mut args = vec!["run".to_string(), base.display().to_string()];
    for assignment in cell["set"].as_array().unwrap() {
        args.extend(["--set".to_string(), assignment.as_str().unwrap().to_string()]);
    }
    args.extend(["--out".to_string(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ftcal(&args);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let alone = files(&out);
    let in_sweep = files(&dir.join(NAMES[1]));
    let extra: Vec<&String> = alone
        .keys()
        .filter(|path| !in_sweep.contains_key(*path))
        .collect();
    assert!(
        extra.iter().all(|path| path.starts_with("checkpoints/source/")),
        "only the source stage's record lives elsewhere (shared/): {extra:?}"
    );
    for (path, bytes) in &in_sweep {
        assert!(alone.get(path) == Some(bytes), "{path} differs from ftcal run's");
    }
}

/// A running `ftcal` whose stderr lines arrive on a channel.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: String,
}

impl Watched {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ftcal"))
            .args(args)
            .current_dir(workspace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Self {
            child,
            lines,
            log: String::new(),
        }
    }

    /// Waits (at most 5 minutes) for a line that starts with `prefix`.
    fn wait_for(&mut self, prefix: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push_str(&line);
                    self.log.push('\n');
                    if line.starts_with(prefix) {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no line `{prefix}…`:\n{}", self.log);
                }
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push_str(&line);
            self.log.push('\n');
        }
        (status, self.log)
    }
}

#[test]
fn a_sweep_stopped_by_a_signal_resumes_without_redoing_finished_cells() {
    let reference = reference();
    let temp = tempfile::tempdir().unwrap();
    let sweep = tiny_sweep(temp.path());
    let dir = temp.path().join("grid");
    // Cell 0 finishes; cell 1 is held inside its fine-tuning, and then the sweep gets SIGTERM.
    let mut run = Watched::start(&[
        "sweep",
        sweep.to_str().unwrap(),
        "--pause-cell",
        "1",
        "--pause-at",
        "fine_tuning iteration#2",
    ]);
    run.wait_for("ftcal: paused at");
    run.signal(libc::SIGTERM);
    let (status, log) = run.finish();
    assert_eq!(status.code(), Some(143), "{log}");
    let state = |name: &str| {
        let cell = dir.join(name);
        (
            cell.join("summary.json").exists(),
            cell.join("config.toml").exists(),
        )
    };
    assert_eq!(state(NAMES[0]), (true, true), "{log}");
    assert_eq!(state(NAMES[1]), (false, true), "stopped inside: {log}");
    assert_eq!(state(NAMES[2]), (false, false), "never started: {log}");
    let first_log = std::fs::read_to_string(dir.join(NAMES[0]).join("log.txt")).unwrap();
    let first_summary = std::fs::metadata(dir.join(NAMES[0]).join("summary.json"))
        .unwrap()
        .modified()
        .unwrap();

    let output = ftcal(&["sweep", sweep.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("3 cells to run, 1 already finished"),
        "{}",
        text(&output.stderr)
    );
    let cell0 = dir.join(NAMES[0]);
    assert_eq!(std::fs::read_to_string(cell0.join("log.txt")).unwrap(), first_log);
    assert_eq!(
        std::fs::metadata(cell0.join("summary.json"))
            .unwrap()
            .modified()
            .unwrap(),
        first_summary
    );
    let resumed = std::fs::read_to_string(dir.join(NAMES[1]).join("log.txt")).unwrap();
    assert!(resumed.contains("resuming run"), "{resumed}");
    assert_eq!(
        std::fs::read_to_string(dir.join("sweep.csv")).unwrap(),
        std::fs::read_to_string(reference.join("sweep.csv")).unwrap(),
        "the resumed sweep's results are the uninterrupted sweep's"
    );
}

#[test]
fn a_second_process_on_a_cell_waits_for_the_first_and_finishes_what_it_left() {
    let reference = reference();
    let temp = tempfile::tempdir().unwrap();
    let sweep = tiny_sweep(temp.path());
    let sweep = sweep.to_str().unwrap();
    let mut first = Watched::start(&[
        "sweep",
        sweep,
        "--cell",
        "0",
        "--pause-at",
        "fine_tuning iteration#3",
    ]);
    first.wait_for("ftcal: paused at");
    let mut second = Watched::start(&["sweep", sweep, "--cell", "0"]);
    second.wait_for("ftcal sweep: cell 0 `lr=0.05,wd=0` is running in another process; waiting");
    first.signal(libc::SIGTERM);
    let (status, log) = first.finish();
    assert_eq!(status.code(), Some(143), "{log}");
    let (status, log) = second.finish();
    assert!(status.success(), "{log}");
    let cell = temp.path().join("grid").join(NAMES[0]);
    let run_log = std::fs::read_to_string(cell.join("log.txt")).unwrap();
    assert_eq!(run_log.matches("starting run").count(), 1, "{run_log}");
    assert_eq!(run_log.matches("resuming run").count(), 1, "{run_log}");
    assert_eq!(
        files(&cell),
        files(&reference.join(NAMES[0])),
        "nothing is corrupted"
    );
}

#[test]
fn a_bad_value_in_any_cell_fails_the_sweep_before_anything_runs() {
    let temp = tempfile::tempdir().unwrap();
    let base = tiny_base(temp.path());
    let write = |grid: &str| {
        let path = temp.path().join("bad.toml");
        let text = format!(
            "base = \"{}\"\noutput_dir = \"{}\"\n{grid}",
            base.display(),
            temp.path().display()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let sweep = write("[grid]\n\"fine_tuning.lr\" = [0.05, -1.0]\n\"fine_tuning.batch_size\" = [32]\n");
    let output = ftcal(&["sweep", sweep.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("1 of 2 cells are invalid; nothing was run"),
        "{stderr}"
    );
    assert!(stderr.contains("cell 1 `lr=-1,batch_size=32`"), "{stderr}");
    assert!(stderr.contains("fine_tuning.lr"), "{stderr}");
    assert!(!temp.path().join("bad").exists(), "nothing was written");

    let sweep = write("[grid]\n\"fine_tuning.lrr\" = [0.05]\n");
    let stderr = text(&ftcal(&["sweep", sweep.to_str().unwrap()]).stderr);
    assert!(
        stderr.contains("unknown field `lrr`") && stderr.contains("did you mean `lr`?"),
        "{stderr}"
    );

    let sweep = write("[grids]\n\"fine_tuning.lr\" = [0.05]\n");
    let stderr = text(&ftcal(&["sweep", sweep.to_str().unwrap()]).stderr);
    assert!(stderr.contains("did you mean `grid`?"), "{stderr}");
}

#[test]
fn a_failing_cell_is_recorded_with_its_error_and_the_sweep_goes_on() {
    let temp = tempfile::tempdir().unwrap();
    let base = tiny_base(temp.path());
    let sweep = temp.path().join("broken.toml");
    // Valid configs, but weights that are not there: each cell fails when its run opens the model.
    let text_of_sweep = format!(
        "base = \"{}\"\noutput_dir = \"{}\"\n[grid]\n\"model.weights\" = [\"{}/a.safetensors\", \"{}/b.safetensors\"]\n",
        base.display(),
        temp.path().display(),
        temp.path().display(),
        temp.path().display()
    );
    std::fs::write(&sweep, text_of_sweep).unwrap();
    let output = ftcal(&["sweep", sweep.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("error: 2 of 2 cells failed"), "{stderr}");
    let dir = temp.path().join("broken");
    let rows = csv_rows(&dir);
    assert_eq!(rows.len(), 2);
    for (row, file) in rows.iter().zip(["a.safetensors", "b.safetensors"]) {
        assert_eq!(row["status"], "failed", "{row:?}");
        assert!(row["detail"].contains(file), "the error names the file: {row:?}");
        let record =
            std::fs::read_to_string(dir.join("failed").join(format!("{}.txt", row["cell"]))).unwrap();
        assert!(record.contains(file), "{record}");
    }
}

#[test]
fn the_shipped_sweeps_expand_and_validate() {
    for (file, cells) in [
        ("configs/sweeps/digits2-optimizers.toml", 12),
        ("configs/sweeps/office-home-optimizers.toml", 96),
        ("experiments/digits2-table1.toml", 16),
        ("experiments/table1.toml", 48),
        ("experiments/table2.toml", 32),
        ("experiments/appendix-methods.toml", 48),
        ("experiments/appendix-head.toml", 32),
    ] {
        let output = ftcal(&["sweep", file, "--dry-run"]);
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{file}: {}", text(&output.stderr));
        assert!(stdout.contains(&format!(": {cells} cells")), "{stdout}");
        assert_eq!(stdout.lines().count(), cells + 1, "{stdout}");
    }
    let temp = tempfile::tempdir().unwrap();
    // The paper's plan reads before anything ran: every benchmark a column, every cell pending.
    let report = temp.path().join("report");
    let output = ftcal(&[
        "report",
        "experiments/table1.toml",
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table1 = std::fs::read_to_string(report.join("table1.csv")).unwrap();
    assert_eq!(table1.lines().count(), 1 + 6 * 16 * 3, "{table1}");
    assert!(
        table1.lines().skip(1).all(|line| line.ends_with(",pending")),
        "{table1}"
    );
    let script = temp.path().join("sweep.sbatch");
    let output = ftcal(&[
        "sweep",
        "configs/sweeps/office-home-optimizers.toml",
        "--set",
        &format!("output_dir={}", temp.path().display()),
        "--only",
        "optimizer=adam",
        "--slurm",
        script.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let script = std::fs::read_to_string(&script).unwrap();
    for line in [
        "#SBATCH --array=16-31%16",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32G",
        "#SBATCH --time=06:00:00",
    ] {
        assert!(script.lines().any(|l| l == line), "{line} in\n{script}");
    }
    assert!(script.contains("--cell \"$SLURM_ARRAY_TASK_ID\""), "{script}");

    // The sweep.toml it wrote makes the same cells.
    let cells = |output: &std::process::Output| -> Vec<String> {
        text(&output.stdout).lines().skip(1).map(str::to_string).collect()
    };
    let original = ftcal(&["sweep", "configs/sweeps/office-home-optimizers.toml", "--dry-run"]);
    let written = temp.path().join("office-home-optimizers/sweep.toml");
    let again = ftcal(&["sweep", written.to_str().unwrap(), "--dry-run"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(cells(&again), cells(&original));
}

/// The Slurm job array on a real one-node Slurm (`scripts/local_slurm.sh`; needs root): the script that
/// `--slurm` writes is submitted with `sbatch --wait`, and its cells give the local sweep's `sweep.csv`.
#[test]
#[ignore = "needs a one-node Slurm (scripts/local_slurm.sh up, as root); .ci/run runs it"]
fn a_slurm_job_array_runs_the_unfinished_cells() {
    let reference = reference();
    let temp = tempfile::tempdir().unwrap();
    let sweep = tiny_sweep(temp.path());
    let script = temp.path().join("sweep.sbatch");
    // One cell first, locally: the array holds the three others only.
    let output = ftcal(&["sweep", sweep.to_str().unwrap(), "--cell", "2"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "cell 2 diverges: {}",
        text(&output.stderr)
    );
    let output = ftcal(&[
        "sweep",
        sweep.to_str().unwrap(),
        "--slurm",
        script.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let text_of_script = std::fs::read_to_string(&script).unwrap();
    assert!(
        text_of_script.contains("#SBATCH --array=0-1,3\n"),
        "{text_of_script}"
    );
    let slurm = workspace().join("scripts/local_slurm.sh");
    let up = Command::new(&slurm).arg("up").output().unwrap();
    assert!(up.status.success(), "{}\n{}", text(&up.stdout), text(&up.stderr));
    let conf = text(&Command::new(&slurm).arg("env").output().unwrap().stdout);
    let mut submit = Command::new("sbatch");
    if let Some(path) = conf.trim().strip_prefix("export SLURM_CONF=") {
        submit.env("SLURM_CONF", path);
    }
    let submitted = submit
        .args(["--wait", script.to_str().unwrap()])
        .current_dir(workspace())
        .output()
        .unwrap();
    // `sbatch --wait` exits with the highest exit status of the tasks: cell 3 diverges (ftcal's 3).
    assert_eq!(
        submitted.status.code(),
        Some(3),
        "{}\n{}",
        text(&submitted.stdout),
        text(&submitted.stderr)
    );
    let output = ftcal(&["sweep", sweep.to_str().unwrap(), "--report"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let dir = temp.path().join("grid");
    let logs: Vec<String> = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("slurm-"))
        .collect();
    assert_eq!(logs.len(), 3, "one Slurm log per array task: {logs:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("sweep.csv")).unwrap(),
        std::fs::read_to_string(reference.join("sweep.csv")).unwrap()
    );
    let _ = Command::new(&slurm).arg("down").status();
}

/// One figure of a cell's `summary.json`, as the JSON holds it (the report must carry it unchanged).
fn summary_figure(cell: &Path, pointer: &str) -> serde_json::Value {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cell.join("summary.json")).unwrap()).unwrap();
    summary
        .pointer(pointer)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// The `mean` of a cell of a report's CSV.
fn report_mean(csv: &str, row: &str, benchmark: &str, column: &str) -> String {
    let line = (csv.lines())
        .map(split_csv)
        .find(|fields| fields[0] == row && fields[1] == benchmark && fields[2] == column)
        .unwrap_or_else(|| panic!("no {row} / {benchmark} / {column} in\n{csv}"));
    assert_eq!(line[6], "completed", "{line:?}");
    line[3].clone()
}

#[test]
fn an_experiment_plan_runs_and_its_report_carries_every_runs_figures() {
    let temp = tempfile::tempdir().unwrap();
    let base = tiny_base(temp.path());
    let plan = temp.path().join("table.toml");
    std::fs::write(
        &plan,
        format!(
            r#"base = "{}"
output_dir = "{}"
[[cells]]
tags = {{ benchmark = "S0-4" }}
grid = {{ "tags.method" = ["fine-tuning", "holistic-transfer", "all-classes", "cosine-classifier"] }}
[[cells]]
tags = {{ benchmark = "S5-9" }}
grid = {{ "tags.method" = ["fine-tuning", "all-classes"] }}
[bundles."tags.benchmark"]
"S5-9" = {{ "data.classes.fine_tuning" = [5, 6, 7, 8, 9] }}
[bundles."tags.method"]
holistic-transfer = {{ "fine_tuning.method" = "holistic_transfer", "eval.calibration" = ["alg", "oracle"] }}
all-classes = {{ "data.classes.fine_tuning" = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "eval.calibration" = [] }}
cosine-classifier = {{ "model.head" = "cosine", "eval.calibration" = ["alg", "oracle"] }}
"#,
            base.display(),
            temp.path().display()
        ),
    )
    .unwrap();
    let output = ftcal(&["sweep", plan.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = ftcal(&["report", plan.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert!(printed.contains("## Table 1: top-1 accuracy (%)"), "{printed}");
    let folder = temp.path().join("table");
    let report = folder.join("report");
    let table1 = std::fs::read_to_string(report.join("table1.csv")).unwrap();
    let cell = |benchmark: &str, method: &str| folder.join(format!("benchmark={benchmark},method={method}"));
    let figure = |value: serde_json::Value| value.as_f64().unwrap().to_string();
    for benchmark in ["S0-4", "S5-9"] {
        let fine_tuning = cell(benchmark, "fine-tuning");
        for (row, pointer) in [
            ("Pre-trained", "/pretrained/acc/U~1Y"),
            ("Fine-tuning", "/finetuned/acc/U~1Y"),
            ("Fine-tuning + γ (ALG)", "/calibrated/alg/acc/U~1Y"),
            ("Fine-tuning + γ (PCV)", "/calibrated/pcv/acc/U~1Y"),
        ] {
            let expected = figure(summary_figure(&fine_tuning, pointer));
            assert_eq!(
                report_mean(&table1, row, benchmark, "U/Y"),
                expected,
                "{row} {benchmark}"
            );
        }
        if benchmark == "S0-4" {
            let holistic = figure(summary_figure(
                &cell(benchmark, "holistic-transfer"),
                "/finetuned/acc/Y~1Y",
            ));
            assert_eq!(
                report_mean(&table1, "Holistic Transfer (HT-style, ftcal)", benchmark, "Y/Y"),
                holistic
            );
        }
        // The oracle: its own Y/Y, and S/Y and U/Y measured from its saved outputs under the benchmark's S and U.
        let oracle = cell(benchmark, "all-classes");
        assert_eq!(
            report_mean(&table1, "Oracle (all classes)", benchmark, "Y/Y"),
            figure(summary_figure(&oracle, "/finetuned/acc/Y~1Y"))
        );
        assert!(
            summary_figure(&oracle, "/finetuned/acc/U~1Y").is_null(),
            "U is empty in the run itself"
        );
        let u_y: f64 = report_mean(&table1, "Oracle (all classes)", benchmark, "U/Y")
            .parse()
            .unwrap();
        assert!((0.0..=100.0).contains(&u_y));
        assert!(report.join(format!("figure1-{benchmark}.png")).exists());
    }
    // The two benchmarks' oracles are the same all-classes model, measured under different S and U.
    let s_y = |benchmark| report_mean(&table1, "Oracle (all classes)", benchmark, "S/Y");
    let u_y = |benchmark| report_mean(&table1, "Oracle (all classes)", benchmark, "U/Y");
    assert_eq!((s_y("S0-4"), u_y("S0-4")), (u_y("S5-9"), s_y("S5-9")));
    // The cosine classifier is a run of its own (its own figures), in the FC-vs-cosine table.
    let head = std::fs::read_to_string(report.join("appendix-head.csv")).unwrap();
    let cosine = figure(summary_figure(
        &cell("S0-4", "cosine-classifier"),
        "/finetuned/ausuc",
    ));
    assert_eq!(
        report_mean(&head, "Fine-tuning, cosine classifier", "S0-4", "AUSUC"),
        cosine
    );
    assert!(
        !head.contains("S5-9"),
        "only the benchmarks that ran the cosine classifier:\n{head}"
    );
    assert_ne!(
        cosine,
        figure(summary_figure(&cell("S0-4", "fine-tuning"), "/finetuned/ausuc"))
    );
    for file in [
        "table1.md",
        "table1.tex",
        "table1-top5.csv",
        "table2.md",
        "appendix-calibration.tex",
        "ncm.png",
        "report.md",
    ] {
        assert!(report.join(file).exists(), "{file}");
    }

    // The same runs named as directories: grouped by their domains, typed by their configs.
    let dirs = [
        cell("S0-4", "fine-tuning"),
        cell("S0-4", "holistic-transfer"),
        cell("S0-4", "cosine-classifier"),
    ];
    let out = temp.path().join("from-dirs");
    let mut arguments = vec!["report".to_string(), "--out".into(), out.display().to_string()];
    arguments.extend(dirs.iter().map(|dir| dir.display().to_string()));
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let output = ftcal(&arguments);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let from_dirs = std::fs::read_to_string(out.join("table1.csv")).unwrap();
    assert_eq!(
        report_mean(&from_dirs, "Fine-tuning", "mnist→optdigits", "Y/Y"),
        report_mean(&table1, "Fine-tuning", "S0-4", "Y/Y")
    );
    assert!(out.join("appendix-head.md").exists());
}
