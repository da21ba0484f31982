//! Optimizers with PyTorch's update rules (torch.optim 2.x), per-parameter learning rates, global-norm
//! gradient clipping, and state that can be checkpointed by parameter order.
//!
//! - [`settings`]: the config tables, one variant per optimizer with torch's defaults;
//! - `rules`: the update rules, one function each, torch's single-tensor code path operation by operation;
//! - `elementwise`: what the rules compute with: tensors, or on flex blocks of ftcal-kernels' in-place
//!   step (one read and one write of each tensor per step, on every thread, instead of a full-size
//!   temporary per operation);
//! - `state`: the state's named tensors for checkpoints, and its checks against the model;
//! - `clip`: global-norm gradient clipping.
//!
//! `crates/train/tests/optim_torch.rs` checks the rules against torch 2.15 and adabelief-pytorch 0.2.1
//! (fixtures from `scripts/make_optimizer_fixtures.py`).

mod clip;
mod elementwise;
mod rules;
pub mod settings;
mod state;

use std::collections::HashMap;
use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use ftcal_kernels::FlatUpdate;

pub use clip::clip_grad_norm;
use elementwise::Block;
use rules::Step;
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
        state.step += 1;
        let kept = self.settings.buffer_names().len();
        let tensors = FlatUpdate {
            param: inner.reshape([count]),
            grad: grad.reshape([count]),
            buffers: std::mem::take(&mut state.buffers),
        };
        let (updated, buffers) = step_flat(
            self.settings,
            (self.learning_rate)(id),
            state.step as f64,
            tensors,
            kept,
        );
        state.buffers = buffers;
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

/// One step of a flat parameter with learning rate `lr`, its `count`-th: in place block by block on
/// flex (ftcal-kernels), with tensor operations elsewhere; returns the parameter and its `kept` buffers.
fn step_flat(
    settings: &OptimizerSettings,
    lr: f64,
    count: f64,
    tensors: FlatUpdate,
    kept: usize,
) -> (Tensor<1>, Vec<Tensor<1>>) {
    let first_step = tensors.buffers.is_empty();
    let in_place = ftcal_kernels::update_in_place(tensors, kept, |param, grad, buffers| {
        let previous = if first_step {
            Vec::new()
        } else {
            buffers.iter().map(|buffer| Block(buffer.to_vec())).collect()
        };
        let step = Step { lr, count, previous };
        let (updated, kept_buffers) =
            rules::update(settings, &step, Block(param.to_vec()), Block(grad.to_vec()));
        debug_assert_eq!(
            kept_buffers.len(),
            buffers.len(),
            "a rule keeps its settings' buffers"
        );
        param.copy_from_slice(&updated.0);
        for (buffer, kept_buffer) in buffers.iter_mut().zip(&kept_buffers) {
            buffer.copy_from_slice(&kept_buffer.0);
        }
    });
    match in_place {
        Ok(updated) => updated,
        Err(refused) => {
            let FlatUpdate { param, grad, buffers } = *refused;
            let step = Step {
                lr,
                count,
                previous: buffers,
            };
            rules::update(settings, &step, param, grad)
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};
    use serde::Deserialize;

    use super::rules::{self, Step};
    use super::{FlatUpdate, OptimizerSettings, step_flat};

    #[derive(Deserialize)]
    struct Cases {
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        settings: OptimizerSettings,
    }

    fn bits(tensor: &Tensor<1>) -> Vec<u32> {
        let values = tensor.to_data().try_to_vec::<f32>().unwrap();
        values.into_iter().map(f32::to_bits).collect()
    }

    /// The in-place step on flex (blocks, several threads) and the rules on whole tensors agree bit for
    /// bit, for every optimizer case of the torch fixtures, over eight steps (AdaBelief's rectified
    /// branch starts at its sixth), for a length of several blocks with a ragged end and a short one.
    #[test]
    fn the_in_place_step_is_the_tensor_step_bit_for_bit() {
        let text = include_str!("../../../../tests/fixtures/optim/cases.json");
        let cases: Cases = serde_json::from_str(text).unwrap();
        let device = Device::flex();
        device.seed(7);
        for case in &cases.cases {
            for length in [5 * ftcal_kernels::in_place::BLOCK + 17, 37] {
                let kept = case.settings.buffer_names().len();
                let mut in_place = Tensor::<1>::random([length], Distribution::Normal(0.0, 1.0), &device);
                let mut tensors = in_place.clone() + 0.0;
                let (mut in_place_buffers, mut tensor_buffers) = (Vec::new(), Vec::new());
                for count in 1..=8 {
                    let grad = Tensor::<1>::random([length], Distribution::Normal(0.0, 1.0), &device);
                    let lr = 0.05 / count as f64;
                    let update = FlatUpdate {
                        param: in_place,
                        grad: grad.clone(),
                        buffers: in_place_buffers,
                    };
                    (in_place, in_place_buffers) = step_flat(&case.settings, lr, count as f64, update, kept);
                    let step = Step {
                        lr,
                        count: count as f64,
                        previous: tensor_buffers,
                    };
                    (tensors, tensor_buffers) = rules::update(&case.settings, &step, tensors, grad);

                    let what = format!("{} of length {length}, step {count}", case.name);
                    assert!(bits(&in_place) == bits(&tensors), "{what}: the parameters differ");
                    assert_eq!(in_place_buffers.len(), tensor_buffers.len(), "{what}");
                    assert_eq!(in_place_buffers.len(), kept, "{what}");
                    for (ours, theirs) in in_place_buffers.iter().zip(&tensor_buffers) {
                        assert!(bits(ours) == bits(theirs), "{what}: the buffers differ");
                    }
                }
            }
        }
    }
}
