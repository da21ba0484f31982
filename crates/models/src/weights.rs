//! Weights by timm's key names: reading `.safetensors` and PyTorch `.pth` files into a [`TensorMap`],
//! loading a model from it with every missing, unexpected or mis-shaped key reported, and writing a
//! model back to a timm-named `.safetensors` (which is also ftcal's checkpoint format).
//!
//! `.pth` files are read by burn's `PytorchReader`, a pickle reader written in Rust: it rebuilds tensors
//! and plain containers and never imports or calls Python code, so a pickle that would run a command is
//! refused as an unknown global instead of being executed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::{Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use ftcal_eval::io::TensorBytes;
use safetensors::{Dtype, SafeTensors};

use crate::ModelError;

/// One tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape, PyTorch's order.
    pub shape: Vec<usize>,
    /// Values; integer tensors (BatchNorm's `num_batches_tracked`) are kept as integers.
    pub data: HostData,
}

/// The values of a [`HostTensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    /// Floating-point values of any width, as `f32`.
    Float(Vec<f32>),
    /// Integer values of any width, as `i64`.
    Int(Vec<i64>),
}

impl HostTensor {
    /// A float tensor.
    pub fn float(shape: Vec<usize>, values: Vec<f32>) -> Self {
        Self {
            shape,
            data: HostData::Float(values),
        }
    }

    fn float_values(&self) -> Vec<f32> {
        match &self.data {
            HostData::Float(values) => values.clone(),
            HostData::Int(values) => values.iter().map(|v| *v as f32).collect(),
        }
    }
}

/// Tensors by name, with the file they came from.
#[derive(Debug, Clone, Default)]
pub struct TensorMap {
    /// Tensors by timm key name.
    pub tensors: BTreeMap<String, HostTensor>,
    /// The file, for error messages.
    pub origin: PathBuf,
}

impl TensorMap {
    /// Reads a `.safetensors` or PyTorch `.pth` / `.pt` / `.bin` file, telling them apart by their bytes.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let bytes =
            std::fs::read(path).map_err(|error| ModelError::file(path, format!("cannot read: {error}")))?;
        let is_zip = bytes.starts_with(b"PK\x03\x04");
        let is_pickle = bytes.first() == Some(&0x80);
        if is_zip || is_pickle {
            return Self::from_pytorch(path);
        }
        Self::from_safetensors(&bytes, path)
    }

    fn from_safetensors(bytes: &[u8], origin: &Path) -> Result<Self, ModelError> {
        let file = SafeTensors::deserialize(bytes).map_err(|error| {
            ModelError::file(
                origin,
                format!("not a readable .safetensors or PyTorch file ({error}); it may be truncated"),
            )
        })?;
        let mut tensors = BTreeMap::new();
        for (name, view) in file.tensors() {
            let raw = view.data();
            use burn::store::pytorch_reader::DType;
            let dtype = match view.dtype() {
                Dtype::F32 => Some(DType::F32),
                Dtype::F64 => Some(DType::F64),
                Dtype::F16 => Some(DType::F16),
                Dtype::BF16 => Some(DType::BF16),
                Dtype::I64 => Some(DType::I64),
                Dtype::I32 => Some(DType::I32),
                _ => None,
            };
            let Some(data) = dtype.and_then(|dtype| host_data(dtype, raw)) else {
                return Err(ModelError::file(
                    origin,
                    format!(
                        "tensor `{name}` has dtype {:?}; weights must be float (or integer counters)",
                        view.dtype()
                    ),
                ));
            };
            tensors.insert(
                name.clone(),
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(Self {
            tensors,
            origin: origin.to_path_buf(),
        })
    }

    fn from_pytorch(origin: &Path) -> Result<Self, ModelError> {
        let reader = burn::store::pytorch_reader::PytorchReader::new(origin).map_err(|error| {
            ModelError::file(
                origin,
                format!(
                    "cannot read this PyTorch file: {error}. ftcal reads state dicts of tensors and never runs \
                     pickled code; save the weights with safetensors.torch.save_file if the file holds anything else"
                ),
            )
        })?;
        let mut tensors = BTreeMap::new();
        for (name, tensor) in reader.into_tensors() {
            let fail = |message: String| ModelError::file(origin, format!("tensor `{name}`: {message}"));
            let raw = tensor
                .read()
                .map_err(|error| fail(format!("cannot read its data: {error}")))?;
            let shape = tensor.shape().to_vec();
            let count: usize = shape.iter().product();
            let data = host_data(tensor.dtype(), &raw)
                .ok_or_else(|| fail(format!("unsupported dtype {:?}", tensor.dtype())))?;
            let len = match &data {
                HostData::Float(values) => values.len(),
                HostData::Int(values) => values.len(),
            };
            if len != count {
                return Err(fail(format!(
                    "holds {len} values for shape {shape:?}; the file is truncated or corrupt"
                )));
            }
            tensors.insert(name, HostTensor { shape, data });
        }
        Ok(Self {
            tensors,
            origin: origin.to_path_buf(),
        })
    }

    /// Writes a `.safetensors` file atomically, with `metadata`; the same tensors and metadata give the
    /// same bytes.
    pub fn write_safetensors(
        &self,
        path: &Path,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), ModelError> {
        let tensors: Vec<TensorBytes> = self
            .tensors
            .iter()
            .map(|(name, tensor)| {
                let (dtype, bytes) = match &tensor.data {
                    HostData::Float(values) => {
                        (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
                    }
                    HostData::Int(values) => {
                        (Dtype::I64, values.iter().flat_map(|v| v.to_le_bytes()).collect())
                    }
                };
                TensorBytes {
                    name: name.clone(),
                    dtype,
                    shape: tensor.shape.clone(),
                    bytes,
                }
            })
            .collect();
        ftcal_eval::io::write_safetensors(path, &tensors, &metadata)?;
        Ok(())
    }
}

/// Little-endian `raw` bytes of `dtype` as host values, or `None` for a dtype weights do not use.
fn host_data(dtype: burn::store::pytorch_reader::DType, raw: &[u8]) -> Option<HostData> {
    use burn::store::pytorch_reader::DType;
    Some(match dtype {
        DType::F32 => HostData::Float(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        DType::F64 => HostData::Float(
            raw.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
        ),
        DType::F16 => HostData::Float(
            raw.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        DType::BF16 => HostData::Float(
            raw.chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        DType::I64 => HostData::Int(
            raw.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        DType::I32 => HostData::Int(
            raw.chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
        ),
        _ => return None,
    })
}

/// How strictly weights must fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Keep the model's freshly initialised head when the file's is missing or has another class
    /// count (a new head for a new label space); every other key must still fit.
    pub allow_head_mismatch: bool,
}

/// Hands tensors of a [`TensorMap`] to a model's modules by key, collecting every problem.
pub struct WeightLoader<'a> {
    map: &'a TensorMap,
    device: Device,
    options: LoadOptions,
    head_prefix: String,
    used: BTreeSet<String>,
    problems: Vec<String>,
    kept_head: bool,
}

impl<'a> WeightLoader<'a> {
    /// A loader of `map` onto `device`; keys under `head_prefix` (e.g. `fc`, `head`) form the head.
    pub fn new(map: &'a TensorMap, device: &Device, options: LoadOptions, head_prefix: &str) -> Self {
        Self {
            map,
            device: device.clone(),
            options,
            head_prefix: format!("{head_prefix}."),
            used: BTreeSet::new(),
            problems: Vec::new(),
            kept_head: false,
        }
    }

    /// The device tensors are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn is_head(&self, key: &str) -> bool {
        key.starts_with(&self.head_prefix)
    }

    /// The values of `key` if it exists with `shape`; otherwise records the problem and returns `None`.
    pub fn take(&mut self, key: &str, shape: &[usize]) -> Option<Vec<f32>> {
        let head = self.is_head(key);
        match self.map.tensors.get(key) {
            None => {
                if head && self.options.allow_head_mismatch {
                    self.kept_head = true;
                } else {
                    let hint = if head {
                        " (set allow_head_mismatch to keep a new head)"
                    } else {
                        ""
                    };
                    self.problems
                        .push(format!("missing key `{key}` (expected shape {shape:?}){hint}"));
                }
                None
            }
            Some(tensor) => {
                self.used.insert(key.to_string());
                if tensor.shape != shape {
                    if head && self.options.allow_head_mismatch {
                        self.kept_head = true;
                    } else {
                        let hint = if head {
                            " (set allow_head_mismatch to keep a new head)"
                        } else {
                            ""
                        };
                        self.problems.push(format!(
                            "`{key}` has shape {:?} in the file, the model expects {shape:?}{hint}",
                            tensor.shape
                        ));
                    }
                    return None;
                }
                Some(tensor.float_values())
            }
        }
    }

    /// Marks `key` as expected but not needed (BatchNorm's `num_batches_tracked`).
    pub fn skip(&mut self, key: &str) {
        self.used.insert(key.to_string());
    }

    /// A float parameter of `shape` from `key`, or `current` when the key cannot be used.
    pub fn param<const D: usize>(&mut self, key: &str, current: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape: Vec<usize> = current.shape().dims::<D>().to_vec();
        match self.take(key, &shape) {
            Some(values) => {
                Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), &self.device))
            }
            None => current,
        }
    }

    /// Ends loading: an error listing every missing, unexpected or mis-shaped key, if any. Returns
    /// whether the model's own head was kept.
    pub fn finish(self) -> Result<bool, ModelError> {
        let mut problems = self.problems;
        for key in self.map.tensors.keys() {
            if !self.used.contains(key) {
                problems.push(format!("unexpected key `{key}`: the model has no such parameter"));
            }
        }
        if problems.is_empty() {
            Ok(self.kept_head)
        } else {
            Err(ModelError::Mismatch {
                path: self.map.origin.clone(),
                problems,
            })
        }
    }
}

/// Collects a model's tensors under timm's key names.
#[derive(Default)]
pub struct WeightWriter {
    /// The tensors written so far.
    pub map: TensorMap,
}

impl WeightWriter {
    /// Adds a float tensor.
    pub fn put<const D: usize>(&mut self, key: &str, tensor: Tensor<D>) {
        let shape = tensor.dims().to_vec();
        let values = tensor
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        self.map
            .tensors
            .insert(key.to_string(), HostTensor::float(shape, values));
    }

    /// Adds an integer scalar (BatchNorm's `num_batches_tracked`).
    pub fn put_count(&mut self, key: &str, value: i64) {
        self.map.tensors.insert(
            key.to_string(),
            HostTensor {
                shape: vec![],
                data: HostData::Int(vec![value]),
            },
        );
    }
}

/// Loading and saving one module under a key prefix, in timm's layout.
pub trait TimmWeights {
    /// Replaces the module's tensors with those under `prefix` (e.g. `layer1.0.conv1`).
    fn load_weights(self, prefix: &str, loader: &mut WeightLoader<'_>) -> Self;
    /// Writes the module's tensors under `prefix`.
    fn save_weights(&self, prefix: &str, writer: &mut WeightWriter);
}

/// `prefix.name`, or `name` at the top level.
pub(crate) fn key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl TimmWeights for Conv2d {
    fn load_weights(mut self, prefix: &str, loader: &mut WeightLoader<'_>) -> Self {
        self.weight = loader.param(&key(prefix, "weight"), self.weight);
        self.bias = self.bias.map(|bias| loader.param(&key(prefix, "bias"), bias));
        self
    }

    fn save_weights(&self, prefix: &str, writer: &mut WeightWriter) {
        writer.put(&key(prefix, "weight"), self.weight.val());
        if let Some(bias) = &self.bias {
            writer.put(&key(prefix, "bias"), bias.val());
        }
    }
}

impl TimmWeights for BatchNorm {
    fn load_weights(mut self, prefix: &str, loader: &mut WeightLoader<'_>) -> Self {
        self.gamma = loader.param(&key(prefix, "weight"), self.gamma);
        self.beta = loader.param(&key(prefix, "bias"), self.beta);
        let [features] = self.gamma.shape().dims();
        for (name, state) in [
            ("running_mean", &mut self.running_mean),
            ("running_var", &mut self.running_var),
        ] {
            if let Some(values) = loader.take(&key(prefix, name), &[features]) {
                *state = RunningState::new(Tensor::from_data(
                    TensorData::new(values, [features]),
                    loader.device(),
                ));
            }
        }
        loader.skip(&key(prefix, "num_batches_tracked"));
        self
    }

    fn save_weights(&self, prefix: &str, writer: &mut WeightWriter) {
        writer.put(&key(prefix, "weight"), self.gamma.val());
        writer.put(&key(prefix, "bias"), self.beta.val());
        // `value()` can be one training step behind: the newest update waits in a per-thread slot until
        // a sync. Saving it would checkpoint statistics the model in memory no longer has.
        writer.put(&key(prefix, "running_mean"), self.running_mean.value_sync());
        writer.put(&key(prefix, "running_var"), self.running_var.value_sync());
        writer.put_count(&key(prefix, "num_batches_tracked"), 0);
    }
}

impl TimmWeights for LayerNorm {
    fn load_weights(mut self, prefix: &str, loader: &mut WeightLoader<'_>) -> Self {
        self.gamma = loader.param(&key(prefix, "weight"), self.gamma);
        self.beta = self.beta.map(|beta| loader.param(&key(prefix, "bias"), beta));
        self
    }

    fn save_weights(&self, prefix: &str, writer: &mut WeightWriter) {
        writer.put(&key(prefix, "weight"), self.gamma.val());
        if let Some(beta) = &self.beta {
            writer.put(&key(prefix, "bias"), beta.val());
        }
    }
}

/// PyTorch stores a linear weight as [out, in]; burn as [in, out].
impl TimmWeights for Linear {
    fn load_weights(mut self, prefix: &str, loader: &mut WeightLoader<'_>) -> Self {
        let [d_in, d_out] = self.weight.shape().dims();
        if let Some(values) = loader.take(&key(prefix, "weight"), &[d_out, d_in]) {
            // Transposed on the host, not as a strided view: a trained weight is contiguous in burn's
            // layout, and a matmul over a view sums in another order (1 ulp apart), so a model reloaded
            // from its own weights (LOLSGD's rounds, WiSE-FT) would not compute what it computed.
            let mut burn_layout = vec![0f32; values.len()];
            for (row, chunk) in values.chunks_exact(d_in).enumerate() {
                for (column, value) in chunk.iter().enumerate() {
                    burn_layout[column * d_out + row] = *value;
                }
            }
            self.weight = Param::from_tensor(Tensor::from_data(
                TensorData::new(burn_layout, [d_in, d_out]),
                loader.device(),
            ));
        }
        self.bias = self.bias.map(|bias| loader.param(&key(prefix, "bias"), bias));
        self
    }

    fn save_weights(&self, prefix: &str, writer: &mut WeightWriter) {
        writer.put(&key(prefix, "weight"), self.weight.val().transpose());
        if let Some(bias) = &self.bias {
            writer.put(&key(prefix, "bias"), bias.val());
        }
    }
}
