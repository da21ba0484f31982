//! Optimizers with PyTorch's update rules (torch.optim 2.x), per-parameter learning rates, global-norm
//! gradient clipping, and state that can be checkpointed by parameter order.
//!
//! - [`settings`]: the config tables, one variant per optimizer with torch's defaults;
//! - `rules`: the update rules, one function each, torch's single-tensor code path operation by operation;
//! - `state`: the state's named tensors for checkpoints, and its checks against the model;
//! - `clip`: global-norm gradient clipping.
//!
//! `crates/train/tests/optim_torch.rs` checks the rules against torch 2.15 and adabelief-pytorch 0.2.1
//! (fixtures from `scripts/make_optimizer_fixtures.py`).

mod clip;
mod rules;
pub mod settings;
mod state;

use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

pub use clip::clip_grad_norm;
pub use settings::{OptimizerName, OptimizerSettings};
use state::ParamState;

use crate::TrainError;

/// An optimizer over a module's parameters, keyed by [`ParamId`].
#[derive(Debug, Clone)]
pub struct Optimizer {
    settings: OptimizerSettings,
    states: HashMap<ParamId, ParamState>,
    /// The file the state was loaded from, for errors of [`Optimizer::check_state`].
    origin: PathBuf,
}

impl Optimizer {
    /// An optimizer with no state yet; `key` names the config table in errors of the settings.
    pub fn new(settings: &OptimizerSettings, key: &str) -> Result<Self, TrainError> {
        settings.validate(key)?;
        Ok(Self {
            settings: settings.clone(),
            states: HashMap::new(),
            origin: PathBuf::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// One update: every parameter with a gradient in `grads` moves with learning rate
    /// `learning_rate(id)`; parameters without one are left as they are.
    ///
    /// Panics if a state restored by [`Optimizer::load_state`] does not fit its parameter's shape;
    /// [`Optimizer::check_state`] reports that as an error beforehand.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        mut grads: GradientsParams,
        learning_rate: &dyn Fn(ParamId) -> f64,
    ) -> M {
        let mut mapper = StepMapper {
            settings: &self.settings,
            states: &mut self.states,
            grads: &mut grads,
            learning_rate,
        };
        module.map(&mut mapper)
    }
}

/// Walks the module and updates each parameter that has a gradient, as burn's own `ModuleOptimizer`
/// does: the update runs on the inner (non-autodiff) tensor, and the result is lifted back with the
/// parameter's autodiff settings and id.
struct StepMapper<'a> {
    settings: &'a OptimizerSettings,
    states: &'a mut HashMap<ParamId, ParamState>,
    grads: &'a mut GradientsParams,
    learning_rate: &'a dyn Fn(ParamId) -> f64,
}

impl ModuleMapper for StepMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.dims();
        let count = shape.iter().product::<usize>();
        let device = grad.device();

        // What `Tensor::from_inner` would otherwise reset: the parameter must come back tracked as it was,
        // or its next forward pass mixes checkpointing strategies, which autodiff refuses.
        let autodiff = tensor.is_autodiff();
        let require_grad = tensor.is_require_grad();
        let checkpointing = tensor.gradient_checkpointing_strategy();
        let distributed = tensor.is_distributed();

        let mut inner = tensor.inner();
        if inner.device() != device {
            inner = inner.to_device(&device);
        }
        let mut state = self.states.remove(&id).unwrap_or_else(|| ParamState {
            step: 0,
            shape: shape.to_vec(),
            buffers: Vec::new(),
        });
        assert!(
            state.buffers.is_empty() || state.shape == shape,
            "the optimizer state of parameter {id} has shape {:?}, the parameter {shape:?}: the loaded state \
             is from another model (Optimizer::check_state reports this as an error)",
            state.shape
        );
        if state
            .buffers
            .first()
            .is_some_and(|buffer| buffer.device() != device)
        {
            state.buffers = state
                .buffers
                .into_iter()
                .map(|buffer| buffer.to_device(&device))
                .collect();
        }
        let updated = rules::update(
            self.settings,
            (self.learning_rate)(id),
            inner.reshape([count]),
            grad.reshape([count]),
            &mut state,
        );
        state.shape = shape.to_vec();
        self.states.insert(id, state);

        let mut updated: Tensor<D> = updated.reshape(shape);
        if autodiff {
            updated = Tensor::from_inner(updated);
            if let Some(strategy) = checkpointing {
                updated = updated.with_gradient_checkpointing_strategy(strategy);
            }
            if require_grad {
                updated = updated.require_grad();
            }
            if distributed {
                updated = updated.set_distributed(id);
            }
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}
