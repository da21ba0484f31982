//! The run directory: every path in it, the records saved there for later stages and for `ftcal eval`,
//! and who may write it. One module owns the layout, so no other file spells a path of it.
//!
//! ```text
//! config.toml            the resolved config           log.txt       messages, with times
//! .lock                  held by the running process   classes.json  S and U (SavedSplit)
//! models/source.safetensors, models/fine_tuned.safetensors
//! checkpoints/<stage>/   state.json → model-<iteration>.safetensors, optimizer-<iteration>.safetensors
//! outputs/<split>/<epoch>.safetensors                  epoch −1: the pre-trained model
//! outputs/pcv/<fold>/split.json, outputs/pcv/<fold>/train.safetensors
//! summary.json  metrics.csv  report.md  curve.png  curve.csv  epochs.png  head-norms.png
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};

use ftcal_data::ClassSplit;
use ftcal_eval::io::PARTIAL_SUFFIX;
use ftcal_eval::write_atomic;
use serde::{Deserialize, Serialize};

/// A PCV fold's split of S, saved beside its outputs (`split.json`); the protocol is ftcal-eval's.
pub use ftcal_eval::PcvFoldSplit;

use crate::TrainError;
use crate::config::RunConfig;

/// The epoch number of the pre-trained model's outputs.
pub const PRETRAINED_EPOCH: i64 = -1;

/// The paths of one run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`: the resolved config the run was started with.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `log.txt`.
    pub fn log(&self) -> PathBuf {
        self.root.join("log.txt")
    }

    /// `.lock`: locked by the process that runs in the directory.
    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// `classes.json`: the [`SavedSplit`].
    pub fn classes(&self) -> PathBuf {
        self.root.join("classes.json")
    }

    /// The source stage's trained model.
    pub fn source_model(&self) -> PathBuf {
        self.root.join("models").join("source.safetensors")
    }

    /// The fine-tuned model; it exists once fine-tuning has finished.
    pub fn fine_tuned_model(&self) -> PathBuf {
        self.root.join("models").join("fine_tuned.safetensors")
    }

    /// A training stage's checkpoint folder (`source`, `fine_tuning`, `pcv-<k>`).
    pub fn checkpoint(&self, stage: &str) -> PathBuf {
        self.root.join("checkpoints").join(stage)
    }

    /// The saved outputs (logits, labels, features) of `split` at `epoch`.
    pub fn output(&self, split: &str, epoch: i64) -> PathBuf {
        self.root
            .join("outputs")
            .join(split)
            .join(format!("{epoch}.safetensors"))
    }

    /// The epochs with saved outputs of `split`, in increasing order.
    pub fn saved_epochs(&self, split: &str) -> Vec<i64> {
        let Ok(entries) = std::fs::read_dir(self.root.join("outputs").join(split)) else {
            return Vec::new();
        };
        let mut epochs: Vec<i64> = entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".safetensors")?.parse().ok()
            })
            .collect();
        epochs.sort_unstable();
        epochs
    }

    fn pcv_fold(&self, fold: usize) -> PathBuf {
        self.root.join("outputs").join("pcv").join(fold.to_string())
    }

    /// A PCV fold's [`PcvFoldSplit`].
    pub fn pcv_split(&self, fold: usize) -> PathBuf {
        self.pcv_fold(fold).join("split.json")
    }

    /// A PCV fold's outputs: its model on the target's training data of S. It exists once the fold is done.
    pub fn pcv_output(&self, fold: usize) -> PathBuf {
        self.pcv_fold(fold).join("train.safetensors")
    }

    /// `summary.json`: written last of the report files, so that it marks a finished report.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }

    /// `metrics.csv`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    /// `report.md`.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.md")
    }

    /// `curve.png`.
    pub fn curve_plot(&self) -> PathBuf {
        self.root.join("curve.png")
    }

    /// `curve.csv`.
    pub fn curve_csv(&self) -> PathBuf {
        self.root.join("curve.csv")
    }

    /// `epochs.png`.
    pub fn epochs_plot(&self) -> PathBuf {
        self.root.join("epochs.png")
    }

    /// `head-norms.png`: the head's weight norms and biases by class group per evaluated epoch.
    pub fn head_norms_plot(&self) -> PathBuf {
        self.root.join("head-norms.png")
    }

    /// Whether any stage has saved a result yet (a run that has not may take another config).
    pub fn holds_results(&self) -> bool {
        ["outputs", "checkpoints", "models"]
            .iter()
            .any(|name| self.root.join(name).exists())
    }

    /// Removes the temporary files a killed process left behind (`.NAME.XXXXXX.partial`, see
    /// [`write_atomic`]); returns how many.
    pub fn remove_partial_files(&self) -> Result<usize, TrainError> {
        fn sweep(folder: &Path, removed: &mut usize) -> Result<(), TrainError> {
            let entries = std::fs::read_dir(folder).map_err(|e| io_error(folder, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_error(folder, e))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
                if kind.is_dir() {
                    sweep(&path, removed)?;
                } else if name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX) {
                    std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                    *removed += 1;
                }
            }
            Ok(())
        }
        let mut removed = 0;
        sweep(&self.root, &mut removed)?;
        Ok(removed)
    }
}

pub(crate) fn io_error(path: &Path, error: std::io::Error) -> TrainError {
    TrainError::file(path, ftcal_eval::describe_io_error(&error))
}

/// Creates the folder that will hold `path`.
pub(crate) fn create_parent(path: &Path) -> Result<(), TrainError> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e)),
        None => Ok(()),
    }
}

/// The lock of a run directory, held while a process runs in it and released when the process ends,
/// however it ends (the kernel drops the lock of a killed process).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// A run directory ready for a run.
#[derive(Debug)]
pub struct Prepared {
    /// The directory.
    pub dir: RunDir,
    /// Held until the run ends.
    pub lock: RunLock,
    /// Whether the directory already held this run (it resumes).
    pub resuming: bool,
}

/// The resolved config as saved in the run directory.
pub fn config_text(config: &RunConfig) -> String {
    let body = toml::to_string(config).expect("a run config serialises to TOML");
    format!("# Written by ftcal run: the config of this run with every default filled in.\n{body}")
}

impl RunDir {
    /// Makes the directory ready for `config`: locks it against a second process, clears it under
    /// `force`, removes what a killed process left half-written, and writes the config of a new run. A rerun
    /// of the same config resumes; another config is an error unless nothing was computed yet.
    /// `wait`: when another process holds the directory, wait for it to end (a sweep's cell run twice at
    /// once) instead of failing; a stop request ends the wait.
    pub fn prepare(&self, config: &RunConfig, force: bool, wait: bool) -> Result<Prepared, TrainError> {
        let path = self.config();
        let root = &self.root;
        if !path.exists()
            && root.exists()
            && std::fs::read_dir(root)
                .map_err(|e| io_error(root, e))?
                .any(|entry| entry.is_ok_and(|entry| entry.file_name() != ".lock"))
        {
            return Err(TrainError::file(
                root,
                "exists, is not empty and holds no ftcal run (no config.toml); choose another --out",
            ));
        }
        std::fs::create_dir_all(root).map_err(|e| io_error(root, e))?;
        let lock = if wait {
            self.wait_for_lock()?
        } else {
            self.take_lock()?
        };
        if force {
            for entry in std::fs::read_dir(root).map_err(|e| io_error(root, e))? {
                let entry = entry.map_err(|e| io_error(root, e))?;
                if entry.file_name() == ".lock" {
                    continue;
                }
                let entry_path = entry.path();
                let removed = if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    std::fs::remove_dir_all(&entry_path)
                } else {
                    std::fs::remove_file(&entry_path)
                };
                removed.map_err(|e| io_error(&entry_path, e))?;
            }
        }
        self.remove_partial_files()?;
        let text = config_text(config);
        if !path.exists() {
            write_atomic(&path, text.as_bytes())?;
            return Ok(Prepared {
                dir: self.clone(),
                lock,
                resuming: false,
            });
        }
        let saved = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        let resuming = if saved == text {
            true
        } else if !self.holds_results() {
            // A run that stopped before computing anything (e.g. on a wrong dataset root) holds nothing
            // to lose: the corrected config takes its place.
            write_atomic(&path, text.as_bytes())?;
            false
        } else {
            let saved_config: Result<RunConfig, _> = toml::from_str(&saved);
            // A run directory written before a key existed lacks it; resolved again, the saved config
            // takes the key's default, which is what that run did. Then it is the same run.
            if let Ok(resolved) = saved_config.as_ref().map(RunConfig::resolve)
                && resolved.as_ref().ok() == Some(config)
            {
                write_atomic(&path, text.as_bytes())?;
            } else {
                let detail = match saved_config {
                    Ok(saved) => first_difference(&saved, config),
                    Err(_) => "it cannot be read".to_string(),
                };
                return Err(TrainError::file(
                    &path,
                    format!(
                        "this run directory holds a run of another config ({detail}); use --force to start it over, or --out for a new directory"
                    ),
                ));
            }
            true
        };
        Ok(Prepared {
            dir: self.clone(),
            lock,
            resuming,
        })
    }

    /// Locks an existing run directory for a process that rewrites its report (`ftcal eval`), so that it
    /// never writes beside a run in progress.
    pub fn lock_existing(&self) -> Result<RunLock, TrainError> {
        let config = self.config();
        if !config.exists() {
            return Err(TrainError::file(
                &self.root,
                "holds no config.toml: it is not a run directory of ftcal run",
            ));
        }
        self.take_lock()
    }

    fn take_lock(&self) -> Result<RunLock, TrainError> {
        self.try_lock()?.ok_or_else(|| {
            TrainError::file(
                &self.root,
                "another ftcal process is running in this run directory; wait for it to end (or stop it), or use --out for a new directory",
            )
        })
    }

    /// Takes the directory's lock, waiting while another process holds it; a stop request (SIGTERM,
    /// Ctrl-C) ends the wait with [`TrainError::Interrupted`].
    pub fn wait_for_lock(&self) -> Result<RunLock, TrainError> {
        loop {
            if let Some(lock) = self.try_lock()? {
                return Ok(lock);
            }
            if crate::interrupt::stop_requested() {
                return Err(TrainError::Interrupted {
                    at: format!("waiting for another process in {}", self.root.display()),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Whether a live process holds the directory's lock (the lock of a killed process is released by
    /// the kernel, so a stale `.lock` file is not held).
    pub fn is_locked(&self) -> bool {
        if !self.lock().exists() {
            return false;
        }
        matches!(self.try_lock(), Ok(None))
    }

    /// The lock, or `None` while another process holds it.
    fn try_lock(&self) -> Result<Option<RunLock>, TrainError> {
        let path = self.lock();
        std::fs::create_dir_all(&self.root).map_err(|e| io_error(&self.root, e))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            // Some network file systems cannot lock; the run goes on unguarded rather than not at all.
            Err(std::fs::TryLockError::Error(error)) if error.kind() == std::io::ErrorKind::Unsupported => {}
            Err(std::fs::TryLockError::Error(error)) => return Err(io_error(&path, error)),
        }
        Ok(Some(RunLock { _file: file }))
    }
}

/// The first top-level table whose values differ, for the "another config" error.
fn first_difference(saved: &RunConfig, current: &RunConfig) -> String {
    let saved = toml::Table::try_from(saved).unwrap_or_default();
    let current = toml::Table::try_from(current).unwrap_or_default();
    let keys: std::collections::BTreeSet<&String> = saved.keys().chain(current.keys()).collect();
    keys.into_iter()
        .find(|key| saved.get(*key) != current.get(*key))
        .map(|key| format!("`{key}` differs"))
        .unwrap_or_else(|| "formatting differs".to_string())
}

/// S and U as the run used them, so that `ftcal eval` needs no dataset (`classes.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSplit {
    /// Logit columns.
    pub num_classes: usize,
    /// S.
    pub fine_tuning: Vec<usize>,
    /// U.
    pub absent: Vec<usize>,
    /// Whether classes outside S ∪ U compete in the argmax (false for ImageNet-R's 200-class protocol).
    pub outside_compete: bool,
}

impl SavedSplit {
    /// Captures a split.
    pub fn new(split: &ClassSplit) -> Self {
        Self {
            num_classes: split.num_classes(),
            fine_tuning: split.fine_tuning().to_vec(),
            absent: split.absent().to_vec(),
            outside_compete: split.outside_compete(),
        }
    }

    /// The split again.
    pub fn split(&self) -> Result<ClassSplit, TrainError> {
        let split = ClassSplit::new(self.num_classes, &self.fine_tuning, &self.absent)?;
        Ok(if self.outside_compete {
            split
        } else {
            split.exclude_outside()
        })
    }
}

/// Reads a JSON record of the run directory.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::file(path, format!("unreadable: {e}")))
}

/// Writes a JSON record of the run directory, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let json = serde_json::to_string_pretty(value).expect("run records serialise");
    write_atomic(path, format!("{json}\n").as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_anywhere_in_the_directory_are_removed_and_nothing_else() {
        let temp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(temp.path());
        let output = dir.output("test", 3);
        create_parent(&output).unwrap();
        std::fs::write(&output, b"kept").unwrap();
        let left = output.with_file_name(".3.safetensors.a1B2c3.partial");
        std::fs::write(&left, b"half").unwrap();
        std::fs::write(temp.path().join(".summary.json.x.partial"), b"half").unwrap();
        std::fs::write(temp.path().join("notes.partial"), b"a user's file").unwrap();
        assert_eq!(dir.remove_partial_files().unwrap(), 2);
        assert!(output.exists() && !left.exists());
        assert!(temp.path().join("notes.partial").exists());
    }

    #[test]
    fn a_second_process_cannot_take_a_locked_directory() {
        let temp = tempfile::tempdir().unwrap();
        let dir = RunDir::new(temp.path().join("run"));
        std::fs::create_dir_all(dir.root()).unwrap();
        let held = dir.take_lock().unwrap();
        // Another open file description of the lock file stands for another process.
        let error = dir.take_lock().unwrap_err().to_string();
        assert!(error.contains("another ftcal process is running"), "{error}");
        assert!(dir.is_locked());
        drop(held);
        assert!(!dir.is_locked(), "a released lock is free, though its file stays");
        dir.take_lock().unwrap();
    }
}
