//! The device a run's tensors live on, from `backend =` in the config (docs/design.md §Backends).
//!
//! Every device is built explicitly: burn's default device is the first compiled-in backend, which in a
//! binary with `wgpu` would be the GPU (or, on a machine without one, Mesa's software rasterizer).
//! A backend the binary was built without, or a GPU the machine lacks, is an error that says what to
//! do, never a panic.

use anyhow::{Context, Result};
use burn::tensor::Device;
use ftcal_models::Precision;
use ftcal_train::Backend;
use serde::Deserialize;
use serde::de::IntoDeserializer;

/// The device for `backend`, or an error saying why it cannot be used on this machine or build.
pub fn device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Flex => flex(),
        Backend::Wgpu => wgpu(),
        Backend::Cuda => cuda(),
    }
}

/// Parses a backend name as the config spells it (`flex`, `wgpu`, `cuda`), for command-line flags.
pub fn parse(name: &str) -> Result<Backend> {
    config_word(name, "backend", "flex, wgpu or cuda")
}

/// Parses a precision as the config spells it (`f32`, `bf16`), for command-line flags.
pub fn parse_precision(name: &str) -> Result<Precision> {
    config_word(name, "precision", "f32 or bf16")
}

/// A config enum's value from its word, through serde, so that a flag's names stay the config's.
fn config_word<'de, T: Deserialize<'de>>(name: &'de str, what: &str, choices: &str) -> Result<T> {
    T::deserialize(name.into_deserializer())
        .map_err(|error: serde::de::value::Error| anyhow::anyhow!(error))
        .with_context(|| format!("unknown {what} {name:?}; use {choices}"))
}

/// One line naming what runs the tensors (`wgpu: NVIDIA H200 (spirv…)`), for logs and benchmark
/// records: a GPU figure is meaningless without knowing that it was not a software adapter.
pub fn describe(backend: Backend, device: &Device) -> String {
    match backend {
        Backend::Flex => {
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            format!("flex: CPU, {threads} hardware threads")
        }
        Backend::Wgpu | Backend::Cuda => gpu_name(backend, device),
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn gpu_name(backend: Backend, device: &Device) -> String {
    let name = format!("{backend:?}").to_lowercase();
    match device.identity() {
        Some(identity) => {
            // CubeCL reports no physical card for a CPU adapter (lavapipe, llvmpipe).
            let software = if identity.physical.is_none() {
                ", a software adapter"
            } else {
                ""
            };
            format!("{name}: {} ({}{software})", identity.name, identity.fingerprint)
        }
        None => format!("{name}: {device:?}"),
    }
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn gpu_name(backend: Backend, device: &Device) -> String {
    format!("{backend:?}: {device:?}")
}

/// The error for a backend whose cargo feature this binary was built without.
#[cfg(not(all(feature = "flex", feature = "wgpu", feature = "cuda")))]
fn not_built(feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "backend = \"{feature}\" is not built into this binary; build it with \
         `cargo build --release -p ftcal --features {feature}`, or use another backend"
    )
}

#[cfg(feature = "flex")]
fn flex() -> Result<Device> {
    Ok(Device::flex())
}

#[cfg(not(feature = "flex"))]
fn flex() -> Result<Device> {
    Err(not_built("flex"))
}

/// burn registers one wgpu runtime per process and refuses a second initialisation, so the first
/// answer, device or error, is kept for every later call (several stages, several tests).
#[cfg(feature = "wgpu")]
static WGPU: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device> {
    WGPU.get_or_init(init_wgpu).clone().map_err(anyhow::Error::msg)
}

/// Starts wgpu with burn's fallible initialisation (`Device::wgpu_options().init()`), which returns
/// "no adapter" as an error where the lazy `Device::wgpu(..)` would panic at the first tensor.
#[cfg(feature = "wgpu")]
fn init_wgpu() -> Result<Device, String> {
    use burn::tensor::wgpu::WgpuInitError;
    let device = match Device::wgpu_options().init() {
        Ok(device) => device,
        Err(
            error @ (WgpuInitError::AdapterUnavailable { .. } | WgpuInitError::UnsupportedGraphicsApi { .. }),
        ) => {
            return Err(no_adapter(&error.to_string()));
        }
        Err(error) => {
            return Err(format!(
                "backend = \"wgpu\": the GPU could not be started ({error}); use backend = \"flex\", \
                 or check the driver with `vulkaninfo --summary`"
            ));
        }
    };
    let name = gpu_name(Backend::Wgpu, &device);
    if name.ends_with("a software adapter)") {
        // Mesa's lavapipe works but is ~15x slower than flex (docs/design.md §Backends): fine for tests,
        // not runs.
        eprintln!("note: {name}; training will be far slower than on backend = \"flex\"");
    }
    Ok(device)
}

/// The error for a machine where wgpu finds no adapter; `details` is CubeCL's own message.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
fn no_adapter(details: &str) -> String {
    format!(
        "backend = \"wgpu\": no GPU adapter found ({details}); use backend = \"flex\" or install a \
         Vulkan driver"
    )
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device> {
    Err(not_built("wgpu"))
}

/// The first CUDA device. Listing devices asks the driver without opening one, and a machine without
/// it lists none; opening `Device::cuda(0)` there would panic at the first tensor.
#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    Device::enumerate(burn::tensor::DeviceType::Cuda)
        .into_iter()
        .next()
        .context(
            "backend = \"cuda\": no CUDA device found (no NVIDIA driver, or none visible through \
             CUDA_VISIBLE_DEVICES); use backend = \"flex\" or \"wgpu\"",
        )
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    Err(not_built("cuda"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_are_the_configs() {
        assert_eq!(parse("flex").unwrap(), Backend::Flex);
        assert_eq!(parse("wgpu").unwrap(), Backend::Wgpu);
        assert_eq!(parse("cuda").unwrap(), Backend::Cuda);
        let error = format!("{:#}", parse("gpu").unwrap_err());
        assert!(error.contains("flex, wgpu or cuda"), "{error}");
    }

    #[test]
    fn flex_is_built_by_default() {
        let device = device(Backend::Flex).unwrap();
        assert!(describe(Backend::Flex, &device).starts_with("flex: CPU"));
    }

    #[test]
    fn no_adapter_says_what_to_do() {
        let message = no_adapter("No adapter available");
        assert!(
            message.starts_with("backend = \"wgpu\": no GPU adapter found (No adapter available)"),
            "{message}"
        );
        assert!(message.ends_with("use backend = \"flex\" or install a Vulkan driver"));
    }

    /// A binary without a backend's feature names the feature to build with.
    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn wgpu_not_built_names_the_feature() {
        let error = device(Backend::Wgpu).unwrap_err().to_string();
        assert!(error.contains("--features wgpu"), "{error}");
    }

    /// A binary built with `cuda` on a machine without NVIDIA's driver (CI): `backend = "cuda"` is an error
    /// that says so, not a panic; where the driver is, the device is found.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_without_a_gpu_says_so() {
        let has_driver = std::path::Path::new("/dev/nvidiactl").exists();
        match device(Backend::Cuda) {
            Ok(device) => assert!(
                has_driver,
                "a CUDA device without a driver: {}",
                describe(Backend::Cuda, &device)
            ),
            Err(error) => {
                let error = format!("{error:#}");
                assert!(!has_driver, "the driver is here, yet: {error}");
                assert!(
                    error.starts_with("backend = \"cuda\": no CUDA device found"),
                    "{error}"
                );
            }
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_not_built_names_the_feature() {
        let error = device(Backend::Cuda).unwrap_err().to_string();
        assert!(
            error.contains("`cargo build --release -p ftcal --features cuda`"),
            "{error}"
        );
    }
}

/// The GPU path end to end on whatever adapter wgpu finds (in CI, Mesa's lavapipe): a tiny ResNet with
/// the same weights on wgpu and on flex gives the same logits, and one SGD step on each gives the same
/// losses. No adapter is a failure with `device`'s error, never a skip: CI installs lavapipe so that
/// this runs. `cargo test -p ftcal --features wgpu gpu_smoke`.
#[cfg(all(test, feature = "wgpu"))]
mod gpu_smoke {
    use burn::module::Module;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
    use ftcal_models::{BlockKind, Model, ModelConfig, ResNetConfig, Stem};
    use ftcal_train::optim::{Optimizer, OptimizerSettings};

    use super::{Backend, describe, device};

    /// Two stages of bottleneck blocks (1×1 and 3×3 convolutions, stride 2, projection shortcuts) after
    /// the ImageNet stem (7×7 convolution, max-pool): every layer kind of the ResNets, with few distinct
    /// shapes. Each shape is a kernel that lavapipe compiles (~0.4 s each, ~130 in all), which is
    /// most of the test's time; Mesa's shader cache makes a second run ~6x faster.
    fn tiny_resnet() -> ModelConfig {
        ModelConfig::Resnet(ResNetConfig {
            block: BlockKind::Bottleneck,
            layers: vec![1, 1],
            channels: vec![4, 8],
            stem_width: 4,
            stem: Stem::Imagenet,
            classes: 5,
            image_size: 32,
        })
    }

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32 values")
    }

    /// Largest |a - b| relative to max(1, |b|): the two backends sum in different orders.
    fn max_difference(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
            .fold(0.0, f32::max)
    }

    /// The loss before and after one step of `ftcal run`'s SGD (lr 0.1, momentum 0.9, dampening 0) on
    /// `device`.
    fn train_step(model: Model, images: &TensorData, labels: &TensorData, device: &Device) -> [f32; 2] {
        let device = device.clone().autodiff();
        // `fork`, not `to_device`: the copy must be a leaf of `device`'s graph; `train` then turns on
        // the gradients of a model made on a plain device.
        let model = model.fork(&device).train();
        let images = Tensor::<4>::from_data(images.clone(), &device);
        let labels = Tensor::<1, Int>::from_data(labels.clone(), &device);
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let loss = loss_fn.forward(model.forward(images.clone()), labels.clone());
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let mut optimizer = Optimizer::new(&OptimizerSettings::sgd(0.9, false, 0.0), "gpu_smoke").unwrap();
        let model = optimizer.step(model, gradients, &|_| 0.1);
        let after = loss_fn.forward(model.forward(images), labels);
        [loss.into_scalar(), after.into_scalar()]
    }

    #[test]
    fn wgpu_matches_flex_and_trains() {
        let gpu = device(Backend::Wgpu).unwrap_or_else(|error| panic!("{error:#}"));
        eprintln!("gpu_smoke on {}", describe(Backend::Wgpu, &gpu));
        let cpu = Device::flex();
        cpu.seed(7);
        let model = tiny_resnet().init(&cpu);
        let images = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &cpu);
        let labels = TensorData::from([0i64, 1, 2, 4]);

        // Eval mode (no autodiff): BatchNorm uses its running statistics. The flex forward also
        // materialises the lazily initialised parameters, so the copy below has the same weights.
        let expected = values(model.forward(images.clone()));
        let on_gpu = model.clone().to_device(&gpu);
        let got = values(on_gpu.forward(images.clone().to_device(&gpu)));
        let difference = max_difference(&got, &expected);
        assert!(
            difference < 1e-3,
            "wgpu logits differ from flex's by {difference}: {got:?} vs {expected:?}"
        );

        let images = images.into_data();
        let [cpu_before, cpu_after] = train_step(model.clone(), &images, &labels, &cpu);
        let [gpu_before, gpu_after] = train_step(model, &images, &labels, &gpu);
        eprintln!("loss before/after one step: flex {cpu_before}/{cpu_after}, wgpu {gpu_before}/{gpu_after}");
        assert!(gpu_before.is_finite() && gpu_after.is_finite());
        // The step did change the weights, on the GPU as on the CPU (a step without gradients would not).
        assert!(
            gpu_after != gpu_before,
            "the SGD step left the loss at {gpu_before}"
        );
        let difference = max_difference(&[gpu_before, gpu_after], &[cpu_before, cpu_after]);
        assert!(
            difference < 1e-3,
            "wgpu losses differ from flex's by {difference}"
        );
    }
}
