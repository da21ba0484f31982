//! A training stage's checkpoint, written after every epoch: the model (timm-named `.safetensors`), the
//! optimizer state, and `state.json` (epoch, iteration, the loss history). `state.json` is written last,
//! each file atomically, so a crash leaves either the old checkpoint or the new one.
//!
//! There is no random-number state to save: batch order and augmentation are pure functions of
//! (seed, epoch) (see `ftcal_data::loader`), and the learning rate of the iteration count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::tensor::Device;
use ftcal_eval::write_atomic;
use ftcal_models::{LoadOptions, Model, ModelConfig, TensorMap};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::optim::Optimizer;

/// One finished epoch's training figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's iterations.
    pub loss: f64,
    /// The head's learning rate at the epoch's last iteration.
    pub lr: f64,
    /// Training images per second over the epoch.
    pub images_per_second: f64,
}

/// `state.json`: where a stage stands.
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
    fn model_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    fn optimizer_path(&self) -> PathBuf {
        self.dir.join("optimizer.safetensors")
    }

    /// The saved state, if the stage has completed an epoch.
    pub fn state(&self) -> Result<Option<TrainingState>, TrainError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                TrainError::file(
                    &path,
                    format!("unreadable checkpoint state: {e}; delete the folder to restart the stage"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TrainError::file(&path, e.to_string())),
        }
    }

    /// Saves a checkpoint: model and optimizer first, then the state that makes them current.
    pub fn save(
        &self,
        model: &Model,
        config: &ModelConfig,
        optimizer: &Optimizer,
        order: &[ParamId],
        state: &TrainingState,
    ) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::file(&self.dir, e.to_string()))?;
        model.save(config, &self.model_path())?;
        optimizer
            .state(order)
            .write_safetensors(&self.optimizer_path(), BTreeMap::new())?;
        let json = serde_json::to_string_pretty(state).expect("the state serialises");
        write_atomic(&self.state_path(), json.as_bytes())?;
        Ok(())
    }

    /// Loads the checkpointed weights into `model` (built with the same config) and the optimizer state
    /// into `optimizer`; `order` is `model`'s parameter order after loading.
    pub fn restore(
        &self,
        model: Model,
        optimizer: &mut Optimizer,
        order: impl Fn(&Model) -> Vec<ParamId>,
        device: &Device,
    ) -> Result<Model, TrainError> {
        let weights = TensorMap::read(&self.model_path())?;
        let (model, _) = model.load_timm(&weights, LoadOptions::default(), device)?;
        let state = TensorMap::read(&self.optimizer_path())?;
        optimizer.load_state(&state, &order(&model), device)?;
        optimizer.check_state(&model)?;
        Ok(model)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
