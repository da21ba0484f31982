//! An optimizer's state as named tensors, keyed by parameter position, for checkpoints: written, read back
//! with every key checked, and checked against the rebuilt model's shapes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use ftcal_models::TensorMap;
use ftcal_models::weights::{HostData, HostTensor};

use super::Optimizer;
use crate::TrainError;

/// One parameter's optimizer state. Buffers are kept flat (rank 1), so one state type serves parameters
/// of every rank; `shape` restores the parameter's own shape when the state is written.
#[derive(Debug, Clone)]
pub(super) struct ParamState {
    /// Steps taken by this parameter (torch counts per parameter too).
    pub(super) step: u64,
    /// The parameter's shape.
    pub(super) shape: Vec<usize>,
    /// The buffers named by [`super::OptimizerSettings::buffer_names`], in that order; empty before the first step.
    pub(super) buffers: Vec<Tensor<1>>,
}

impl Optimizer {
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
                    self.settings.name(),
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
                        self.settings.name(),
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
