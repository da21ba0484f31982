//! Optimizers with PyTorch's update rules (torch.optim 2.x), per-parameter learning rates, global-norm
//! gradient clipping, and state that can be checkpointed by parameter order.
//!
//! INTERFACE STUB: bodies are being written (issue 5); the signatures are the contract.

use std::collections::HashMap;

use burn::module::{Module, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Device;
use ftcal_models::TensorMap;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The optimizers ftcal runs, under torch.optim's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// `torch.optim.SGD` (momentum, dampening, Nesterov, L2 weight decay).
    Sgd,
    /// `torch.optim.Adam` (L2 weight decay added to the gradient).
    Adam,
    /// `torch.optim.AdamW` (decoupled weight decay).
    Adamw,
    /// `torch.optim.Adagrad`.
    Adagrad,
    /// `torch.optim.RMSprop`.
    Rmsprop,
    /// AdaBelief (Zhuang et al. 2020), as the `adabelief-pytorch` package.
    Adabelief,
    /// `torch.optim.Adadelta`.
    Adadelta,
}

/// `[fine_tuning.optimizer]` (and `[source.optimizer]`): the optimizer and its hyper-parameters; an option
/// the optimizer does not take is an error, an option left out takes PyTorch's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSettings {
    /// Which optimizer.
    pub name: OptimizerName,
    /// Weight decay (L2 for SGD, Adam, Adagrad, RMSprop, Adadelta; decoupled for AdamW and AdaBelief).
    #[serde(default)]
    pub weight_decay: f64,
    /// SGD, RMSprop: momentum factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// SGD: dampening of the momentum (PyTorch 0; burn's default is 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    /// SGD: Nesterov momentum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// Adam, AdamW, AdaBelief: (β1, β2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    /// Adam, AdamW, Adagrad, RMSprop, AdaBelief, Adadelta: the ε of the denominator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// RMSprop: smoothing constant α.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// RMSprop: centred (normalise by the variance estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centered: Option<bool>,
    /// Adadelta: ρ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// Adagrad: learning-rate decay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_decay: Option<f64>,
    /// Adagrad: initial accumulator value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_accumulator_value: Option<f64>,
}

impl OptimizerSettings {
    /// SGD with the given momentum, Nesterov and weight decay (dampening 0).
    pub fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        let _ = (momentum, nesterov, weight_decay);
        todo!()
    }

    /// The settings with every option the optimizer takes filled in with PyTorch's default; an option it
    /// does not take, or a value out of range, is an error naming `key.<option>`.
    pub fn resolve(&self, key: &str) -> Result<Self, TrainError> {
        let _ = key;
        todo!()
    }
}

/// One parameter's optimizer state.
#[derive(Debug, Clone)]
struct ParamState {
    _step: u64,
}

/// An optimizer over a module's parameters, keyed by [`ParamId`].
#[derive(Debug, Clone)]
pub struct Optimizer {
    settings: OptimizerSettings,
    states: HashMap<ParamId, ParamState>,
}

impl Optimizer {
    /// An optimizer with no state yet; `key` names the config table in errors.
    pub fn new(settings: &OptimizerSettings, key: &str) -> Result<Self, TrainError> {
        let settings = settings.resolve(key)?;
        Ok(Self {
            settings,
            states: HashMap::new(),
        })
    }

    /// The resolved settings.
    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// One update: every parameter with a gradient in `grads` moves with learning rate
    /// `learning_rate(id)`; parameters without one are left as they are.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: GradientsParams,
        learning_rate: &dyn Fn(ParamId) -> f64,
    ) -> M {
        let _ = (grads, learning_rate);
        module
    }

    /// The state as named tensors, keyed by each parameter's position in `order` (ids change when a model
    /// is rebuilt from a checkpoint; the order of its parameters does not).
    pub fn state(&self, order: &[ParamId]) -> TensorMap {
        let _ = order;
        todo!()
    }

    /// Restores a state written by [`Optimizer::state`] for the parameters `order` of a rebuilt model.
    pub fn load_state(&mut self, map: &TensorMap, order: &[ParamId], device: &Device) -> Result<(), TrainError> {
        let _ = (map, order, device);
        todo!()
    }
}

/// Scales `grads` of the parameters `ids` so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_`; returns the gradients and the norm before clipping.
pub fn clip_grad_norm(grads: GradientsParams, ids: &[ParamId], max_norm: f64) -> (GradientsParams, f64) {
    let _ = (ids, max_norm);
    (grads, 0.0)
}
