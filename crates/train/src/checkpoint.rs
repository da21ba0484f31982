//! A training stage's checkpoint, one atomic unit: the model and the optimizer state go to new files named
//! by the iteration count, then `state.json`, which names them, replaces the old one in a single rename;
//! only then are the files of the previous checkpoint removed. A process killed at any moment leaves
//! either the previous checkpoint whole or the new one whole, never weights of one epoch beside the
//! optimizer or counters of another.
//!
//! A checkpoint is written after every epoch and, when a stop is requested, in the middle of one.
//! There is no random-number state to save: batch order and augmentation are pure functions of
//! (seed, epoch, batch) (see `ftcal_data::loader`), and the learning rate of the iteration count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::tensor::Device;
use ftcal_models::{LoadOptions, Model, ModelConfig, TensorMap};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::holistic::lolsgd::Round;
use crate::optim::Optimizer;
use crate::run_dir::{io_error, read_json, write_json};

/// One finished epoch's training figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's iterations.
    pub loss: f64,
    /// The head's learning rate at the epoch's last iteration.
    pub lr: f64,
}

/// Where a stage stopped inside an epoch (a stop requested mid-epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Iterations of the epoch done.
    pub iterations: usize,
    /// Sum of their losses, for the epoch's mean.
    pub loss_sum: f64,
}

/// `state.json`: where a stage stands, and the files that hold its model and optimizer there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Epochs completed (the next epoch to run).
    pub epochs_done: usize,
    /// Iterations completed, for the learning-rate schedule.
    pub iterations_done: usize,
    /// The seed the stage's batches and augmentation come from.
    pub seed: u64,
    /// One record per completed epoch.
    pub history: Vec<EpochRecord>,
    /// The part of epoch `epochs_done` already done, when the stage stopped inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_epoch: Option<PartialEpoch>,
    /// The model's file in the checkpoint folder (empty once the stage has finished and its result is
    /// saved elsewhere).
    #[serde(default = "legacy_model_file")]
    pub model_file: String,
    /// The optimizer state's file in the checkpoint folder (empty likewise).
    #[serde(default = "legacy_optimizer_file")]
    pub optimizer_file: String,
    /// The LOLSGD round in progress when the stage stopped inside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lolsgd_round: Option<RoundFiles>,
}

/// The files of a LOLSGD round in progress (see [`crate::holistic::lolsgd::Round`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundFiles {
    /// The snapshot each copy of the round starts from.
    pub start_file: String,
    /// The sum of the finished copies' snapshots, when a copy has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum_file: Option<String>,
    /// How many copies the sum holds.
    pub copies_summed: usize,
}

// Checkpoints written before the files were numbered.
fn legacy_model_file() -> String {
    "model.safetensors".into()
}
fn legacy_optimizer_file() -> String {
    "optimizer.safetensors".into()
}

impl TrainingState {
    /// The state of a stage that has not run an iteration yet.
    pub fn start(seed: u64) -> Self {
        Self {
            epochs_done: 0,
            iterations_done: 0,
            seed,
            history: Vec::new(),
            partial_epoch: None,
            model_file: String::new(),
            optimizer_file: String::new(),
            lolsgd_round: None,
        }
    }
}

/// The checkpoint files of one stage, in `checkpoints/<stage>/`.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    /// The checkpoint folder of a stage.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The saved state, if the stage has saved one.
    pub fn state(&self) -> Result<Option<TrainingState>, TrainError> {
        let path = self.state_path();
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some).map_err(|error| {
            TrainError::file(&path, format!("{error}; delete the folder to restart the stage"))
        })
    }

    /// Saves a checkpoint at `state` (whose file names it sets): the new model and optimizer files (and a
    /// LOLSGD `round` in progress) first, then `state.json`, then the previous checkpoint's files go.
    pub fn save(
        &self,
        model: &Model,
        config: &ModelConfig,
        optimizer: &Optimizer,
        order: &[ParamId],
        round: Option<&Round>,
        state: &mut TrainingState,
    ) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        let at = state.iterations_done;
        state.model_file = format!("model-{at}.safetensors");
        state.optimizer_file = format!("optimizer-{at}.safetensors");
        model.save(config, &self.dir.join(&state.model_file))?;
        optimizer
            .state(order)
            .write_safetensors(&self.dir.join(&state.optimizer_file), BTreeMap::new())?;
        state.lolsgd_round = match round {
            None => None,
            Some(round) => {
                let start_file = format!("lolsgd-start-{at}.safetensors");
                round
                    .start
                    .write_safetensors(&self.dir.join(&start_file), BTreeMap::new())?;
                let sum_file = match &round.sum {
                    None => None,
                    Some(sum) => {
                        let file = format!("lolsgd-sum-{at}.safetensors");
                        sum.write_safetensors(&self.dir.join(&file), BTreeMap::new())?;
                        Some(file)
                    }
                };
                Some(RoundFiles {
                    start_file,
                    sum_file,
                    copies_summed: round.copies_summed,
                })
            }
        };
        write_json(&self.state_path(), state)?;
        self.remove_unreferenced(state)
    }

    /// Removes model, optimizer and LOLSGD files that `state` does not name: the previous checkpoint's, or
    /// new ones whose `state.json` a killed process never wrote.
    fn remove_unreferenced(&self, state: &TrainingState) -> Result<(), TrainError> {
        let mut referenced = vec![state.model_file.as_str(), state.optimizer_file.as_str()];
        if let Some(round) = &state.lolsgd_round {
            referenced.push(&round.start_file);
            referenced.extend(round.sum_file.as_deref());
        }
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let checkpoint_file = ["model", "optimizer", "lolsgd"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                && name.ends_with(".safetensors");
            if checkpoint_file && !referenced.contains(&name.as_str()) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
        }
        Ok(())
    }

    /// Removes the model and optimizer files of a stage whose result is saved elsewhere, keeping
    /// `state.json` (its loss history) with no files named. Removing again what is gone is no error.
    pub fn release(&self) -> Result<(), TrainError> {
        let Some(mut state) = self.state()? else {
            return Ok(());
        };
        if !state.model_file.is_empty() || !state.optimizer_file.is_empty() || state.lolsgd_round.is_some() {
            state.model_file.clear();
            state.optimizer_file.clear();
            state.lolsgd_round = None;
            write_json(&self.state_path(), &state)?;
        }
        self.remove_unreferenced(&state)
    }

    /// Loads the checkpointed weights into `model` (built with the same config) and the optimizer state
    /// into `optimizer`; `order` is `model`'s parameter order after loading. Also returns the LOLSGD round
    /// the stage stopped inside, if any.
    pub fn restore(
        &self,
        state: &TrainingState,
        model: Model,
        optimizer: &mut Optimizer,
        order: impl Fn(&Model) -> Vec<ParamId>,
        device: &Device,
    ) -> Result<(Model, Option<Round>), TrainError> {
        if state.model_file.is_empty() {
            return Err(TrainError::file(
                &self.dir,
                "this stage finished and its checkpoint files were removed; use --force to run it again",
            ));
        }
        let weights = TensorMap::read(&self.dir.join(&state.model_file))?;
        let (model, _) = model.load_timm(&weights, LoadOptions::default(), device)?;
        let optimizer_state = TensorMap::read(&self.dir.join(&state.optimizer_file))?;
        optimizer.load_state(&optimizer_state, &order(&model), device)?;
        optimizer.check_state(&model)?;
        let round = match &state.lolsgd_round {
            None => None,
            Some(files) => Some(Round {
                start: TensorMap::read(&self.dir.join(&files.start_file))?,
                sum: (files.sum_file.as_ref())
                    .map(|file| TensorMap::read(&self.dir.join(file)))
                    .transpose()?,
                copies_summed: files.copies_summed,
            }),
        };
        Ok((model, round))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
