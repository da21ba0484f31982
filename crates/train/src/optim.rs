//! Optimizers with PyTorch's update rules (torch.optim 2.x), per-parameter learning rates, global-norm
//! gradient clipping, and state that can be checkpointed by parameter order.
//!
//! Each rule is torch's single-tensor (`foreach=False`) code path, operation by operation, in `f32` with
//! the scalar coefficients computed in `f64` as Python does; `crates/train/tests/optim_torch.rs` checks
//! them against torch 2.15 and adabelief-pytorch 0.2.1 (fixtures from `scripts/make_optimizer_fixtures.py`).
//!
//! Changes to the interface stub (issue 5), for the callers:
//! - `clip_grad_norm` takes the module instead of a list of ids:
//!   `clip_grad_norm<M: Module>(module: &M, grads: GradientsParams, max_norm: f64) -> (GradientsParams, f64)`.
//!   `GradientsParams` can only be read at a parameter's rank, which the module knows and a `ParamId` does
//!   not. It clips over every parameter of the module that has a gradient in `grads`, which is what
//!   `clip_grad_norm_(model.parameters(), max_norm)` does (frozen parameters have no gradient).
//! - New: [`Optimizer::check_state`]. [`Optimizer::load_state`] sees ids, not shapes; call `check_state`
//!   with the rebuilt model after it, so that a state of another model is an error, not a panic in `step`.
//! - `weight_decay` is optional like every other option, so that AdamW takes torch's 1e-2 when it is left
//!   out and the others 0.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use ftcal_models::TensorMap;
use ftcal_models::weights::{HostData, HostTensor};
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
    /// AdaBelief (Zhuang et al. 2020), as the `adabelief-pytorch` package 0.2.x with its defaults:
    /// decoupled weight decay (`weight_decouple=True`, `fixed_decay=False`), the rectified update
    /// (`rectify=True`) that falls back to SGD with momentum while the variance estimate is too young
    /// (`degenerated_to_sgd=True`), no AMSGrad, ε = 1e-16.
    Adabelief,
    /// `torch.optim.Adadelta`.
    Adadelta,
}

impl OptimizerName {
    /// The lowercase name used in configs and messages.
    fn as_str(self) -> &'static str {
        match self {
            Self::Sgd => "sgd",
            Self::Adam => "adam",
            Self::Adamw => "adamw",
            Self::Adagrad => "adagrad",
            Self::Rmsprop => "rmsprop",
            Self::Adabelief => "adabelief",
            Self::Adadelta => "adadelta",
        }
    }

    /// The options this optimizer takes, as torch's keyword arguments.
    fn options(self) -> &'static [&'static str] {
        match self {
            Self::Sgd => &["momentum", "dampening", "nesterov", "weight_decay"],
            Self::Adam | Self::Adamw | Self::Adabelief => &["betas", "eps", "weight_decay"],
            Self::Adagrad => &["lr_decay", "initial_accumulator_value", "eps", "weight_decay"],
            Self::Rmsprop => &["alpha", "eps", "momentum", "centered", "weight_decay"],
            Self::Adadelta => &["rho", "eps", "weight_decay"],
        }
    }
}

impl std::fmt::Display for OptimizerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[fine_tuning.optimizer]` (and `[source.optimizer]`): the optimizer and its hyper-parameters; an option
/// the optimizer does not take is an error, an option left out takes PyTorch's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSettings {
    /// Which optimizer.
    pub name: OptimizerName,
    /// Weight decay (L2 for SGD, Adam, Adagrad, RMSprop, Adadelta; decoupled for AdamW and AdaBelief).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
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

/// `key.option`, or `option` when there is no enclosing key.
fn option_key(key: &str, option: &str) -> String {
    if key.is_empty() {
        option.to_string()
    } else {
        format!("{key}.{option}")
    }
}

impl OptimizerSettings {
    /// SGD with the given momentum, Nesterov and weight decay (dampening 0).
    pub fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> Self {
        Self {
            name: OptimizerName::Sgd,
            weight_decay: Some(weight_decay),
            momentum: Some(momentum),
            dampening: Some(0.0),
            nesterov: Some(nesterov),
            betas: None,
            eps: None,
            alpha: None,
            centered: None,
            rho: None,
            lr_decay: None,
            initial_accumulator_value: None,
        }
    }

    /// How many state tensors of a parameter's size the optimizer keeps (momentum buffers, moment
    /// estimates), for the disk estimate of its checkpoints.
    pub fn state_tensors_per_parameter(&self) -> usize {
        let momentum = usize::from(self.momentum.is_some_and(|m| m != 0.0));
        match self.name {
            OptimizerName::Sgd => momentum,
            OptimizerName::Adagrad => 1,
            OptimizerName::Rmsprop => 1 + momentum + usize::from(self.centered == Some(true)),
            OptimizerName::Adam
            | OptimizerName::Adamw
            | OptimizerName::Adabelief
            | OptimizerName::Adadelta => 2,
        }
    }

    /// The settings with every option the optimizer takes filled in with PyTorch's default; an option it
    /// does not take, or a value out of range, is an error naming `key.<option>`.
    ///
    /// Defaults (torch.optim 2.x): SGD momentum 0, dampening 0, no Nesterov; Adam and AdamW betas
    /// (0.9, 0.999), ε 1e-8; Adagrad lr_decay 0, initial accumulator 0, ε 1e-10; RMSprop α 0.99, ε 1e-8,
    /// momentum 0, not centred; Adadelta ρ 0.9, ε 1e-6; AdaBelief betas (0.9, 0.999), ε 1e-16. Weight
    /// decay 1e-2 for AdamW, 0 for the others (adabelief-pytorch's default is 0 too).
    pub fn resolve(&self, key: &str) -> Result<Self, TrainError> {
        let name = self.name;
        let given = [
            ("momentum", self.momentum.is_some()),
            ("dampening", self.dampening.is_some()),
            ("nesterov", self.nesterov.is_some()),
            ("betas", self.betas.is_some()),
            ("eps", self.eps.is_some()),
            ("alpha", self.alpha.is_some()),
            ("centered", self.centered.is_some()),
            ("rho", self.rho.is_some()),
            ("lr_decay", self.lr_decay.is_some()),
            (
                "initial_accumulator_value",
                self.initial_accumulator_value.is_some(),
            ),
        ];
        let takes = name.options();
        for (option, present) in given {
            if present && !takes.contains(&option) {
                return Err(TrainError::config(
                    option_key(key, option),
                    format!("{name} takes no `{option}`; it takes {}", takes.join(", ")),
                ));
            }
        }

        let mut resolved = self.clone();
        resolved
            .weight_decay
            .get_or_insert(if name == OptimizerName::Adamw { 1e-2 } else { 0.0 });
        match name {
            OptimizerName::Sgd => {
                resolved.momentum.get_or_insert(0.0);
                resolved.dampening.get_or_insert(0.0);
                resolved.nesterov.get_or_insert(false);
            }
            OptimizerName::Adam | OptimizerName::Adamw => {
                resolved.betas.get_or_insert([0.9, 0.999]);
                resolved.eps.get_or_insert(1e-8);
            }
            OptimizerName::Adabelief => {
                resolved.betas.get_or_insert([0.9, 0.999]);
                resolved.eps.get_or_insert(1e-16);
            }
            OptimizerName::Adagrad => {
                resolved.lr_decay.get_or_insert(0.0);
                resolved.initial_accumulator_value.get_or_insert(0.0);
                resolved.eps.get_or_insert(1e-10);
            }
            OptimizerName::Rmsprop => {
                resolved.alpha.get_or_insert(0.99);
                resolved.eps.get_or_insert(1e-8);
                resolved.momentum.get_or_insert(0.0);
                resolved.centered.get_or_insert(false);
            }
            OptimizerName::Adadelta => {
                resolved.rho.get_or_insert(0.9);
                resolved.eps.get_or_insert(1e-6);
            }
        }
        resolved.validate(key)?;
        Ok(resolved)
    }

    /// Range checks of resolved settings: torch's own, plus those that only catch typos (a negative
    /// dampening, a smoothing constant above 1, ε of 0) rather than forbid a meaningful setting.
    fn validate(&self, key: &str) -> Result<(), TrainError> {
        let fail = |option: &str, message: String| Err(TrainError::config(option_key(key, option), message));
        let at_least_zero = |option: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                fail(option, format!("is {value}; it must be a finite number ≥ 0"))
            }
        };
        let unit = |option: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                fail(option, format!("is {value}; it must lie in [0, 1]"))
            }
        };
        if let Some(weight_decay) = self.weight_decay {
            at_least_zero("weight_decay", weight_decay)?;
        }
        if let Some(momentum) = self.momentum {
            unit("momentum", momentum)?;
        }
        if let Some(dampening) = self.dampening {
            unit("dampening", dampening)?;
        }
        if self.nesterov == Some(true) {
            let momentum = self.momentum.unwrap_or(0.0);
            let dampening = self.dampening.unwrap_or(0.0);
            if momentum <= 0.0 || dampening != 0.0 {
                return fail(
                    "nesterov",
                    format!(
                        "Nesterov momentum needs momentum > 0 and dampening 0 (as torch.optim.SGD), but momentum is \
                         {momentum} and dampening {dampening}: set `momentum`, or `nesterov = false`"
                    ),
                );
            }
        }
        if let Some(betas) = self.betas {
            for (index, beta) in betas.into_iter().enumerate() {
                if !(0.0..1.0).contains(&beta) {
                    return fail(
                        "betas",
                        format!("β{} is {beta}; each beta must lie in [0, 1)", index + 1),
                    );
                }
            }
        }
        if let Some(eps) = self.eps
            && !(eps.is_finite() && eps > 0.0)
        {
            return fail("eps", format!("is {eps}; it must be a finite number > 0"));
        }
        if let Some(alpha) = self.alpha {
            unit("alpha", alpha)?;
        }
        if let Some(rho) = self.rho {
            unit("rho", rho)?;
        }
        if let Some(lr_decay) = self.lr_decay {
            at_least_zero("lr_decay", lr_decay)?;
        }
        if let Some(value) = self.initial_accumulator_value {
            at_least_zero("initial_accumulator_value", value)?;
        }
        Ok(())
    }

    /// The names of the per-parameter buffers the optimizer keeps (torch's state keys), besides `step`.
    fn buffer_names(&self) -> Vec<&'static str> {
        match self.name {
            OptimizerName::Sgd if self.momentum.unwrap_or(0.0) != 0.0 => vec!["momentum_buffer"],
            OptimizerName::Sgd => vec![],
            OptimizerName::Adam | OptimizerName::Adamw => vec!["exp_avg", "exp_avg_sq"],
            OptimizerName::Adabelief => vec!["exp_avg", "exp_avg_var"],
            OptimizerName::Adagrad => vec!["sum"],
            OptimizerName::Rmsprop => {
                let mut names = vec!["square_avg"];
                if self.momentum.unwrap_or(0.0) > 0.0 {
                    names.push("momentum_buffer");
                }
                if self.centered.unwrap_or(false) {
                    names.push("grad_avg");
                }
                names
            }
            OptimizerName::Adadelta => vec!["square_avg", "acc_delta"],
        }
    }
}

/// One parameter's optimizer state. Buffers are kept flat (rank 1), so one state type serves parameters
/// of every rank; `shape` restores the parameter's own shape when the state is written.
#[derive(Debug, Clone)]
struct ParamState {
    /// Steps taken by this parameter (torch counts per parameter too).
    step: u64,
    /// The parameter's shape.
    shape: Vec<usize>,
    /// The buffers named by [`OptimizerSettings::buffer_names`], in that order; empty before the first step.
    buffers: Vec<Tensor<1>>,
}

/// An optimizer over a module's parameters, keyed by [`ParamId`].
#[derive(Debug, Clone)]
pub struct Optimizer {
    settings: OptimizerSettings,
    states: HashMap<ParamId, ParamState>,
    /// The file the state was loaded from, for errors of [`Optimizer::check_state`].
    origin: PathBuf,
}

impl Optimizer {
    /// An optimizer with no state yet; `key` names the config table in errors.
    pub fn new(settings: &OptimizerSettings, key: &str) -> Result<Self, TrainError> {
        let settings = settings.resolve(key)?;
        Ok(Self {
            settings,
            states: HashMap::new(),
            origin: PathBuf::new(),
        })
    }

    /// The resolved settings.
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

    /// The state as named tensors, keyed by each parameter's position in `order` (ids change when a model
    /// is rebuilt from a checkpoint; the order of its parameters does not).
    ///
    /// Keys are `<position>.step` (a scalar) and `<position>.<buffer>` with torch's buffer names
    /// (`exp_avg`, `momentum_buffer`, ...) in the parameter's shape, all `f32`. Parameters that have not
    /// taken a step have no entry; states of parameters missing from `order` are not written.
    pub fn state(&self, order: &[ParamId]) -> TensorMap {
        let names = self.settings.buffer_names();
        let mut tensors = BTreeMap::new();
        for (position, id) in order.iter().enumerate() {
            let Some(state) = self.states.get(id) else {
                continue;
            };
            tensors.insert(
                format!("{position}.step"),
                HostTensor::float(vec![], vec![state.step as f32]),
            );
            for (name, buffer) in names.iter().zip(&state.buffers) {
                let values = buffer
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("a tensor converted to f32 reads as f32");
                tensors.insert(
                    format!("{position}.{name}"),
                    HostTensor::float(state.shape.clone(), values),
                );
            }
        }
        TensorMap {
            tensors,
            origin: PathBuf::new(),
        }
    }

    /// Restores a state written by [`Optimizer::state`] for the parameters `order` of a rebuilt model.
    ///
    /// Every key must be `<position>.step` or `<position>.<buffer>` for a buffer these settings keep, each
    /// stepped parameter must have all of them, in one shape. On error the optimizer is left unchanged.
    /// Shapes are checked against the model by [`Optimizer::check_state`].
    pub fn load_state(
        &mut self,
        map: &TensorMap,
        order: &[ParamId],
        device: &Device,
    ) -> Result<(), TrainError> {
        let fail = |message: String| TrainError::file(&map.origin, format!("optimizer state: {message}"));
        let names = self.settings.buffer_names();
        let kept = || {
            std::iter::once("step")
                .chain(names.iter().copied())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut by_position: BTreeMap<usize, BTreeMap<&str, &HostTensor>> = BTreeMap::new();
        for (key, tensor) in &map.tensors {
            let parsed = key
                .split_once('.')
                .and_then(|(position, name)| Some((position.parse::<usize>().ok()?, name)));
            let Some((position, name)) = parsed else {
                return Err(fail(format!(
                    "`{key}` is not `<parameter position>.<name>`; this is not an optimizer state of ftcal"
                )));
            };
            if position >= order.len() {
                return Err(fail(format!(
                    "`{key}` is for parameter {position}, but the model has {} parameters; the state is from \
                     another model",
                    order.len()
                )));
            }
            if name != "step" && !names.contains(&name) {
                return Err(fail(format!(
                    "`{key}`: {} with these settings keeps no `{name}` (it keeps {}); the state was written \
                     with another optimizer or other settings",
                    self.settings.name,
                    kept()
                )));
            }
            by_position.entry(position).or_default().insert(name, tensor);
        }

        let device = device.clone().inner();
        let mut states = HashMap::new();
        for (position, entries) in by_position {
            let Some(step) = entries.get("step") else {
                return Err(fail(format!("`{position}.step` is missing")));
            };
            let step_value = match &step.data {
                HostData::Float(values) if values.len() == 1 => Some(values[0] as f64),
                HostData::Int(values) if values.len() == 1 => Some(values[0] as f64),
                _ => None,
            };
            let step = match step_value {
                Some(value) if value >= 1.0 && value.fract() == 0.0 && value < 2f64.powi(53) => value as u64,
                _ => {
                    return Err(fail(format!(
                        "`{position}.step` must hold one whole number ≥ 1 (the parameter's step count)"
                    )));
                }
            };
            let mut shape: Option<&[usize]> = None;
            let mut buffers = Vec::with_capacity(names.len());
            for name in &names {
                let key = format!("{position}.{name}");
                let Some(tensor) = entries.get(name) else {
                    return Err(fail(format!(
                        "`{key}` is missing ({} keeps {} for each parameter)",
                        self.settings.name,
                        kept()
                    )));
                };
                let HostData::Float(values) = &tensor.data else {
                    return Err(fail(format!(
                        "`{key}` holds integers; optimizer buffers are float"
                    )));
                };
                let count: usize = tensor.shape.iter().product();
                if values.len() != count {
                    return Err(fail(format!(
                        "`{key}` holds {} values for shape {:?}",
                        values.len(),
                        tensor.shape
                    )));
                }
                match shape {
                    Some(shape) if shape != tensor.shape.as_slice() => {
                        return Err(fail(format!(
                            "`{key}` has shape {:?}, the other buffers of parameter {position} {shape:?}",
                            tensor.shape
                        )));
                    }
                    _ => shape = Some(&tensor.shape),
                }
                buffers.push(Tensor::<1>::from_data(
                    TensorData::new(values.clone(), [count]),
                    &device,
                ));
            }
            states.insert(
                order[position],
                ParamState {
                    step,
                    shape: shape.map(<[usize]>::to_vec).unwrap_or_default(),
                    buffers,
                },
            );
        }
        self.states = states;
        self.origin = map.origin.clone();
        Ok(())
    }

    /// Checks that every state belongs to a float parameter of `module` and has its shape; call it after
    /// [`Optimizer::load_state`] with the rebuilt model, so that a foreign state is an error, not a panic
    /// in [`Optimizer::step`].
    pub fn check_state<M: Module>(&self, module: &M) -> Result<(), TrainError> {
        let mut shapes = ParamShapes::default();
        module.visit(&mut shapes);
        for (id, state) in &self.states {
            let Some((path, shape)) = shapes.shapes.get(id) else {
                return Err(TrainError::file(
                    &self.origin,
                    "optimizer state: a state belongs to no parameter of the model (the parameter order given \
                     to load_state is not this model's)",
                ));
            };
            if !state.buffers.is_empty() && &state.shape != shape {
                return Err(TrainError::file(
                    &self.origin,
                    format!(
                        "optimizer state: the state of `{path}` has shape {:?}, the parameter {shape:?}; the \
                         state is from another model",
                        state.shape
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Every float parameter's module path and shape, by id.
#[derive(Default)]
struct ParamShapes {
    path: Vec<String>,
    shapes: HashMap<ParamId, (String, Vec<usize>)>,
}

impl ModuleVisitor for ParamShapes {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shape = param.lazy_shape().to_vec();
        self.shapes.insert(param.id, (self.path.join("."), shape));
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
        let updated = update(
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

/// torch's `lerp_` with a scalar weight: `start + w·(end − start)` for w < 0.5, else
/// `end − (1 − w)·(end − start)`, the two forms its kernel picks between for accuracy.
fn lerp(start: Tensor<1>, end: Tensor<1>, weight: f64) -> Tensor<1> {
    let difference = end.clone() - start.clone();
    if weight.abs() < 0.5 {
        start + difference.mul_scalar(weight)
    } else {
        end + difference.mul_scalar(weight - 1.0)
    }
}

/// `buffer` at `index`, or `initial` before the first step.
fn buffer_or(buffers: &[Tensor<1>], index: usize, initial: impl FnOnce() -> Tensor<1>) -> Tensor<1> {
    buffers.get(index).cloned().unwrap_or_else(initial)
}

/// One parameter's update (flat `param` and `grad`), torch's single-tensor code line by line: Python's
/// scalar arithmetic in `f64`, tensor arithmetic in `f32`, `addcmul`/`addcdiv` as `self + (value·t1)·t2`
/// and `self + (value·t1)/t2`, `add(other, alpha)` as `self + alpha·other`.
fn update(
    settings: &OptimizerSettings,
    lr: f64,
    param: Tensor<1>,
    grad: Tensor<1>,
    state: &mut ParamState,
) -> Tensor<1> {
    // Settings reach here resolved; an unresolved one decays by nothing rather than by a guess.
    let weight_decay = settings.weight_decay.unwrap_or(0.0);
    let old = std::mem::take(&mut state.buffers);
    let fresh = state.step == 0;
    state.step += 1;
    let step = state.step as f64;
    let template = grad.clone();
    let zeros = || template.zeros_like();
    let mut param = param;
    let mut grad = grad;
    let l2 = |grad: Tensor<1>, param: &Tensor<1>| {
        if weight_decay != 0.0 {
            grad + param.clone().mul_scalar(weight_decay)
        } else {
            grad
        }
    };

    match settings.name {
        OptimizerName::Sgd => {
            let momentum = settings.momentum.unwrap_or(0.0);
            let dampening = settings.dampening.unwrap_or(0.0);
            grad = l2(grad, &param);
            if momentum != 0.0 {
                // The first step's buffer is the gradient itself, not a damped one.
                let buffer = if fresh || old.is_empty() {
                    grad.clone()
                } else {
                    old[0].clone().mul_scalar(momentum) + grad.clone().mul_scalar(1.0 - dampening)
                };
                grad = if settings.nesterov.unwrap_or(false) {
                    grad + buffer.clone().mul_scalar(momentum)
                } else {
                    buffer.clone()
                };
                state.buffers = vec![buffer];
            }
            param + grad.mul_scalar(-lr)
        }
        OptimizerName::Adam | OptimizerName::Adamw => {
            let [beta1, beta2] = settings.betas.unwrap_or([0.9, 0.999]);
            let eps = settings.eps.unwrap_or(1e-8);
            if weight_decay != 0.0 {
                if settings.name == OptimizerName::Adamw {
                    param = param.mul_scalar(1.0 - lr * weight_decay);
                } else {
                    grad = l2(grad, &param);
                }
            }
            let exp_avg = lerp(buffer_or(&old, 0, zeros), grad.clone(), 1.0 - beta1);
            let exp_avg_sq =
                buffer_or(&old, 1, zeros).mul_scalar(beta2) + grad.clone().mul_scalar(1.0 - beta2) * grad;
            let bias_correction1 = 1.0 - beta1.powf(step);
            let bias_correction2 = 1.0 - beta2.powf(step);
            let step_size = lr / bias_correction1;
            let bias_correction2_sqrt = bias_correction2.powf(0.5);
            let denom = exp_avg_sq
                .clone()
                .sqrt()
                .div_scalar(bias_correction2_sqrt)
                .add_scalar(eps);
            let param = param + exp_avg.clone().mul_scalar(-step_size) / denom;
            state.buffers = vec![exp_avg, exp_avg_sq];
            param
        }
        OptimizerName::Adagrad => {
            let lr_decay = settings.lr_decay.unwrap_or(0.0);
            let initial = settings.initial_accumulator_value.unwrap_or(0.0);
            let eps = settings.eps.unwrap_or(1e-10);
            grad = l2(grad, &param);
            let clr = lr / (1.0 + (step - 1.0) * lr_decay);
            let sum = buffer_or(&old, 0, || grad.full_like(initial)) + grad.clone() * grad.clone();
            let std = sum.clone().sqrt().add_scalar(eps);
            state.buffers = vec![sum];
            param + grad.mul_scalar(-clr) / std
        }
        OptimizerName::Rmsprop => {
            let alpha = settings.alpha.unwrap_or(0.99);
            let eps = settings.eps.unwrap_or(1e-8);
            let momentum = settings.momentum.unwrap_or(0.0);
            let centered = settings.centered.unwrap_or(false);
            grad = l2(grad, &param);
            let mut next = old.into_iter();
            let square_avg = next.next().unwrap_or_else(zeros).mul_scalar(alpha)
                + grad.clone().mul_scalar(1.0 - alpha) * grad.clone();
            let momentum_buffer = (momentum > 0.0).then(|| next.next().unwrap_or_else(zeros));
            let grad_avg =
                centered.then(|| lerp(next.next().unwrap_or_else(zeros), grad.clone(), 1.0 - alpha));
            let avg = match &grad_avg {
                Some(grad_avg) => (square_avg.clone() - grad_avg.clone() * grad_avg.clone()).sqrt(),
                None => square_avg.clone().sqrt(),
            }
            .add_scalar(eps);
            state.buffers = vec![square_avg];
            let param = match momentum_buffer {
                Some(buffer) => {
                    let buffer = buffer.mul_scalar(momentum) + grad / avg;
                    state.buffers.push(buffer.clone());
                    param + buffer.mul_scalar(-lr)
                }
                None => param + grad.mul_scalar(-lr) / avg,
            };
            state.buffers.extend(grad_avg);
            param
        }
        OptimizerName::Adadelta => {
            let rho = settings.rho.unwrap_or(0.9);
            let eps = settings.eps.unwrap_or(1e-6);
            grad = l2(grad, &param);
            let square_avg =
                buffer_or(&old, 0, zeros).mul_scalar(rho) + grad.clone().mul_scalar(1.0 - rho) * grad.clone();
            let acc_delta = buffer_or(&old, 1, zeros);
            let std = square_avg.clone().add_scalar(eps).sqrt();
            let delta = acc_delta.clone().add_scalar(eps).sqrt() / std * grad;
            let acc_delta = acc_delta.mul_scalar(rho) + delta.clone().mul_scalar(1.0 - rho) * delta.clone();
            state.buffers = vec![square_avg, acc_delta];
            param + delta.mul_scalar(-lr)
        }
        OptimizerName::Adabelief => {
            let [beta1, beta2] = settings.betas.unwrap_or([0.9, 0.999]);
            let eps = settings.eps.unwrap_or(1e-16);
            // weight_decouple=True, fixed_decay=False: p *= 1 − lr·wd before anything else.
            if weight_decay != 0.0 {
                param = param.mul_scalar(1.0 - lr * weight_decay);
            }
            let exp_avg = buffer_or(&old, 0, zeros).mul_scalar(beta1) + grad.clone().mul_scalar(1.0 - beta1);
            let residual = grad - exp_avg.clone();
            // The package adds ε to the stored variance in place every step (`exp_avg_var.add_(eps)`).
            let exp_avg_var = (buffer_or(&old, 1, zeros).mul_scalar(beta2)
                + residual.clone().mul_scalar(1.0 - beta2) * residual)
                .add_scalar(eps);
            // Rectification (RAdam's), degenerating to SGD with momentum while N_sma < 5.
            let beta2_t = beta2.powf(step);
            let n_sma_max = 2.0 / (1.0 - beta2) - 1.0;
            let n_sma = n_sma_max - 2.0 * step * beta2_t / (1.0 - beta2_t);
            let param = if n_sma >= 5.0 {
                let step_size = ((1.0 - beta2_t) * (n_sma - 4.0) / (n_sma_max - 4.0) * (n_sma - 2.0) / n_sma
                    * n_sma_max
                    / (n_sma_max - 2.0))
                    .sqrt()
                    / (1.0 - beta1.powf(step));
                let denom = exp_avg_var.clone().sqrt().add_scalar(eps);
                param + exp_avg.clone().mul_scalar(-step_size * lr) / denom
            } else {
                let step_size = 1.0 / (1.0 - beta1.powf(step));
                param + exp_avg.clone().mul_scalar(-step_size * lr)
            };
            state.buffers = vec![exp_avg, exp_avg_var];
            param
        }
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)`: the norm is taken over every float
/// parameter of `module` that has a gradient in `grads` (each counted once), and every such gradient is
/// multiplied by `min(1, max_norm / (norm + 1e-6))`. Returns the gradients and the norm before clipping,
/// as a one-element tensor on the gradients' device (`None` when no parameter has a gradient). Nothing is
/// read back to the host, as in torch: the coefficient stays on the device. NaN or infinite gradients
/// make the norm non-finite, and the gradients then come out scaled by NaN or 0, as in torch.
///
/// Takes the module instead of a list of ids: gradients can only be read at their rank, which the
/// module's parameters carry.
pub fn clip_grad_norm<M: Module>(
    module: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, Option<Tensor<1>>) {
    let mut norms = GradNorms {
        grads: &grads,
        seen: HashSet::new(),
        norms: Vec::new(),
    };
    module.visit(&mut norms);
    let norms = norms.norms;
    if norms.is_empty() {
        return (grads, None);
    }
    // The norm of the per-tensor norms, as torch stacks them.
    let total = Tensor::cat(norms, 0).square().sum().sqrt();
    // torch: `max_norm / (total + 1e-6)` in f32, where a float over a tensor is `reciprocal() * max_norm`,
    // then clamped to 1 (multiplying by exactly 1 changes no value).
    let coefficient = total
        .clone()
        .add_scalar(1e-6f32)
        .recip()
        .mul_scalar(max_norm as f32)
        .clamp_max(1.0f32);
    let mut grads = grads;
    let mut scale = ScaleGrads {
        grads: &mut grads,
        seen: HashSet::new(),
        coefficient,
    };
    module.visit(&mut scale);
    (grads, Some(total))
}

/// Collects the L2 norm of each parameter's gradient, on the gradients' device.
struct GradNorms<'a> {
    grads: &'a GradientsParams,
    seen: HashSet<ParamId>,
    norms: Vec<Tensor<1>>,
}

impl ModuleVisitor for GradNorms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.seen.insert(param.id) {
            return;
        }
        if let Some(grad) = self.grads.get::<D>(param.id) {
            self.norms.push(grad.square().sum().sqrt());
        }
    }
}

/// Multiplies each parameter's gradient by the clipping coefficient (a one-element tensor).
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    seen: HashSet<ParamId>,
    coefficient: Tensor<1>,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.seen.insert(param.id) {
            return;
        }
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let coefficient = self.coefficient.clone().reshape([1; D]);
            self.grads.register(param.id, grad.mul(coefficient));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(name: OptimizerName) -> OptimizerSettings {
        OptimizerSettings {
            name,
            weight_decay: None,
            momentum: None,
            dampening: None,
            nesterov: None,
            betas: None,
            eps: None,
            alpha: None,
            centered: None,
            rho: None,
            lr_decay: None,
            initial_accumulator_value: None,
        }
    }

    fn config_error(result: Result<OptimizerSettings, TrainError>) -> (String, String) {
        match result {
            Err(TrainError::Config { key, message }) => (key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_torchs() {
        let sgd = settings(OptimizerName::Sgd).resolve("k").unwrap();
        assert_eq!(
            (sgd.momentum, sgd.dampening, sgd.nesterov, sgd.weight_decay),
            (Some(0.0), Some(0.0), Some(false), Some(0.0))
        );
        let adam = settings(OptimizerName::Adam).resolve("k").unwrap();
        assert_eq!((adam.betas, adam.eps), (Some([0.9, 0.999]), Some(1e-8)));
        let adamw = settings(OptimizerName::Adamw).resolve("k").unwrap();
        assert_eq!(
            (adamw.betas, adamw.eps, adamw.weight_decay),
            (Some([0.9, 0.999]), Some(1e-8), Some(1e-2))
        );
        let adagrad = settings(OptimizerName::Adagrad).resolve("k").unwrap();
        assert_eq!(
            (adagrad.lr_decay, adagrad.initial_accumulator_value, adagrad.eps),
            (Some(0.0), Some(0.0), Some(1e-10))
        );
        let rmsprop = settings(OptimizerName::Rmsprop).resolve("k").unwrap();
        assert_eq!(
            (rmsprop.alpha, rmsprop.eps, rmsprop.momentum, rmsprop.centered),
            (Some(0.99), Some(1e-8), Some(0.0), Some(false))
        );
        let adadelta = settings(OptimizerName::Adadelta).resolve("k").unwrap();
        assert_eq!((adadelta.rho, adadelta.eps), (Some(0.9), Some(1e-6)));
        let adabelief = settings(OptimizerName::Adabelief).resolve("k").unwrap();
        assert_eq!(
            (adabelief.betas, adabelief.eps),
            (Some([0.9, 0.999]), Some(1e-16))
        );
    }

    #[test]
    fn resolve_keeps_what_is_set_and_is_idempotent() {
        let sgd = OptimizerSettings::sgd(0.9, true, 5e-4);
        let resolved = sgd.resolve("fine_tuning.optimizer").unwrap();
        assert_eq!(resolved, sgd, "sgd() builds resolved settings");
        assert_eq!(resolved.resolve("k").unwrap(), resolved);
        let mut adam = settings(OptimizerName::Adam);
        adam.betas = Some([0.8, 0.99]);
        assert_eq!(adam.resolve("k").unwrap().betas, Some([0.8, 0.99]));
    }

    #[test]
    fn an_option_the_optimizer_does_not_take_is_an_error() {
        let mut sgd = settings(OptimizerName::Sgd);
        sgd.betas = Some([0.9, 0.999]);
        let (key, message) = config_error(sgd.resolve("fine_tuning.optimizer"));
        assert_eq!(key, "fine_tuning.optimizer.betas");
        assert_eq!(
            message,
            "sgd takes no `betas`; it takes momentum, dampening, nesterov, weight_decay"
        );

        let mut adam = settings(OptimizerName::Adam);
        adam.momentum = Some(0.9);
        assert_eq!(
            config_error(adam.resolve("source.optimizer")).0,
            "source.optimizer.momentum"
        );
        let mut adamw = settings(OptimizerName::Adamw);
        adamw.nesterov = Some(false);
        assert_eq!(config_error(adamw.resolve("k")).0, "k.nesterov");
        let mut adagrad = settings(OptimizerName::Adagrad);
        adagrad.rho = Some(0.9);
        assert_eq!(config_error(adagrad.resolve("k")).0, "k.rho");
        let mut rmsprop = settings(OptimizerName::Rmsprop);
        rmsprop.dampening = Some(0.0);
        assert_eq!(config_error(rmsprop.resolve("k")).0, "k.dampening");
        let mut adadelta = settings(OptimizerName::Adadelta);
        adadelta.alpha = Some(0.9);
        assert_eq!(config_error(adadelta.resolve("k")).0, "k.alpha");
        let mut adabelief = settings(OptimizerName::Adabelief);
        adabelief.centered = Some(true);
        assert_eq!(config_error(adabelief.resolve("k")).0, "k.centered");
        let mut sgd = settings(OptimizerName::Sgd);
        sgd.lr_decay = Some(0.1);
        assert_eq!(config_error(sgd.resolve("k")).0, "k.lr_decay");
        let mut sgd = settings(OptimizerName::Sgd);
        sgd.initial_accumulator_value = Some(0.1);
        assert_eq!(config_error(sgd.resolve("k")).0, "k.initial_accumulator_value");
        let mut sgd = settings(OptimizerName::Sgd);
        sgd.eps = Some(1e-8);
        assert_eq!(config_error(sgd.resolve("")).0, "eps");
    }

    #[test]
    fn out_of_range_values_are_errors() {
        let cases: Vec<(OptimizerSettings, &str)> = vec![
            (
                OptimizerSettings {
                    weight_decay: Some(-1e-4),
                    ..settings(OptimizerName::Adam)
                },
                "weight_decay",
            ),
            (
                OptimizerSettings {
                    weight_decay: Some(f64::NAN),
                    ..settings(OptimizerName::Sgd)
                },
                "weight_decay",
            ),
            (OptimizerSettings::sgd(-0.9, false, 0.0), "momentum"),
            (
                OptimizerSettings {
                    dampening: Some(-0.1),
                    ..OptimizerSettings::sgd(0.9, false, 0.0)
                },
                "dampening",
            ),
            (OptimizerSettings::sgd(0.0, true, 0.0), "nesterov"),
            (
                OptimizerSettings {
                    dampening: Some(0.1),
                    ..OptimizerSettings::sgd(0.9, true, 0.0)
                },
                "nesterov",
            ),
            (
                OptimizerSettings {
                    betas: Some([1.0, 0.999]),
                    ..settings(OptimizerName::Adam)
                },
                "betas",
            ),
            (
                OptimizerSettings {
                    betas: Some([0.9, -0.1]),
                    ..settings(OptimizerName::Adabelief)
                },
                "betas",
            ),
            (
                OptimizerSettings {
                    eps: Some(0.0),
                    ..settings(OptimizerName::Adamw)
                },
                "eps",
            ),
            (
                OptimizerSettings {
                    eps: Some(-1e-8),
                    ..settings(OptimizerName::Rmsprop)
                },
                "eps",
            ),
            (
                OptimizerSettings {
                    alpha: Some(1.5),
                    ..settings(OptimizerName::Rmsprop)
                },
                "alpha",
            ),
            (
                OptimizerSettings {
                    momentum: Some(-0.5),
                    ..settings(OptimizerName::Rmsprop)
                },
                "momentum",
            ),
            (
                OptimizerSettings {
                    rho: Some(-0.1),
                    ..settings(OptimizerName::Adadelta)
                },
                "rho",
            ),
            (
                OptimizerSettings {
                    lr_decay: Some(-0.1),
                    ..settings(OptimizerName::Adagrad)
                },
                "lr_decay",
            ),
            (
                OptimizerSettings {
                    initial_accumulator_value: Some(-1.0),
                    ..settings(OptimizerName::Adagrad)
                },
                "initial_accumulator_value",
            ),
        ];
        for (settings, option) in cases {
            let (key, message) = config_error(settings.resolve("fine_tuning.optimizer"));
            assert_eq!(key, format!("fine_tuning.optimizer.{option}"), "{message}");
            assert!(Optimizer::new(&settings, "k").is_err());
        }
        // torch accepts these, and so does ftcal.
        assert!(OptimizerSettings::sgd(0.9, true, 0.0).resolve("k").is_ok());
        assert!(
            OptimizerSettings {
                betas: Some([0.0, 0.0]),
                ..settings(OptimizerName::Adam)
            }
            .resolve("k")
            .is_ok()
        );
    }

    #[test]
    fn settings_read_from_toml_with_unknown_keys_refused() {
        let parsed: OptimizerSettings =
            toml::from_str("name = \"sgd\"\nmomentum = 0.9\nnesterov = true\nweight_decay = 5e-4\n").unwrap();
        assert_eq!(
            parsed.resolve("k").unwrap(),
            OptimizerSettings::sgd(0.9, true, 5e-4)
        );
        assert!(toml::from_str::<OptimizerSettings>("name = \"sgd\"\nmomentun = 0.9\n").is_err());
        assert!(toml::from_str::<OptimizerSettings>("name = \"lion\"\n").is_err());
    }
}
