//! The Slurm job array of a sweep: one array task per unfinished cell, each running
//! `ftcal sweep SWEEP --cell $SLURM_ARRAY_TASK_ID`. The array's indices are the cells' own indices, so a
//! task runs the same cell whatever else has finished since the script was written.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::plan::Sweep;
use crate::status::shell_quote;

/// `[slurm]` of a sweep file: the resources of each array task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// GPUs per task (`--gpus-per-task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// CPUs per task (`--cpus-per-task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory per task, as Slurm writes it (`--mem`, e.g. `"32G"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Time limit per task, as Slurm writes it (`--time`, e.g. `"04:00:00"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Tasks running at once (`%N` of `--array`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
    /// Lines added to the script after the `#SBATCH` lines ran from the file: further `#SBATCH`
    /// options (`#SBATCH --requeue`), `module load …`, environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

/// `--array`'s list: runs of consecutive indices as `a-b`, the rest one by one, then `%max`.
pub fn array_spec(indices: &[usize], max_parallel: Option<usize>) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut position = 0;
    while position < sorted.len() {
        let start = sorted[position];
        let mut end = start;
        while position + 1 < sorted.len() && sorted[position + 1] == end + 1 {
            position += 1;
            end = sorted[position];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        position += 1;
    }
    let mut spec = parts.join(",");
    if let Some(max) = max_parallel {
        spec.push_str(&format!("%{max}"));
    }
    spec
}

/// The `sbatch` script for the cells `indices` of `sweep`: `program` is the `ftcal` executable, `workdir`
/// the folder the sweep's relative paths start from, `set` the command line's `--set` list.
pub fn script(sweep: &Sweep, indices: &[usize], program: &Path, workdir: &Path, set: &[String]) -> String {
    let settings = &sweep.file.slurm;
    let logs = absolute(workdir, &sweep.dir.join("logs"));
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!(
            "# Written by ftcal sweep --slurm: {} of the {} cells of sweep `{}`.",
            indices.len(),
            sweep.cells.len(),
            sweep.name
        ),
        "# Each array task runs one cell (its index is the cell's), resuming it if an earlier task was"
            .to_string(),
        "# stopped; SIGTERM (time limit, preemption) stops a cell at a safe point. Submit: sbatch FILE"
            .to_string(),
        format!("#SBATCH --job-name={}", sweep.name),
        format!("#SBATCH --array={}", array_spec(indices, settings.max_parallel)),
        format!("#SBATCH --output={}/slurm-%A_%a.out", logs.display()),
    ];
    let option =
        |name: &str, value: &Option<String>| value.as_ref().map(|value| format!("#SBATCH --{name}={value}"));
    lines.extend(option("partition", &settings.partition));
    lines.extend(option("account", &settings.account));
    lines.extend(option("qos", &settings.qos));
    lines.extend(
        settings
            .gpus
            .map(|gpus| format!("#SBATCH --gpus-per-task={gpus}")),
    );
    lines.extend(
        settings
            .cpus
            .map(|cpus| format!("#SBATCH --cpus-per-task={cpus}")),
    );
    lines.extend(option("mem", &settings.memory));
    lines.extend(option("time", &settings.time));
    lines.extend(settings.extra.iter().cloned());
    lines.push(String::new());
    lines.push(format!("cd {}", shell_quote(&workdir.display().to_string())));
    let mut command = vec![
        "exec".to_string(),
        shell_quote(&program.display().to_string()),
        "sweep".to_string(),
        shell_quote(&absolute(workdir, &sweep.path).display().to_string()),
    ];
    for assignment in set {
        command.push("--set".into());
        command.push(shell_quote(assignment));
    }
    command.push("--cell".into());
    command.push("\"$SLURM_ARRAY_TASK_ID\"".into());
    // exec: the task's signals (time limit, scancel) reach ftcal itself, not a shell waiting on it.
    lines.push(command.join(" "));
    lines.push(String::new());
    lines.join("\n")
}

fn absolute(workdir: &Path, path: &Path) -> std::path::PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        workdir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_compress_runs_and_cap_the_tasks_at_once() {
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[5, 0, 2, 3, 4, 9], Some(4)), "0,2-5,9%4");
        assert_eq!(array_spec(&[7], Some(1)), "7%1");
        assert_eq!(array_spec(&[1, 1, 2], None), "1-2");
    }
}
