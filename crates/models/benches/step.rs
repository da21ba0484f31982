//! `cargo bench -p ftcal-models`: the two CPU figures `scripts/bench_torch_models.py` measures for
//! PyTorch, on burn's `flex` backend with 2 threads, on random data (seed 0):
//!
//! - `resnet18_train_step`: one training step of the torchvision ResNet-18 with a 10-class head, batch 32
//!   of 3×64×64, labels in 0..10, on `Device::flex().autodiff()` (so BatchNorm uses batch statistics):
//!   forward, cross-entropy, backward, SGD step with lr 0.01 and momentum 0.9 (dampening 0, as PyTorch;
//!   burn's default is 0.1).
//! - `resnet50_forward`: one forward pass of the torchvision ResNet-50 (1000 classes) on
//!   `Device::flex()` (no autodiff, so BatchNorm uses its running statistics), batch 8 of 3×224×224.
//! - `resnet18_step_parts`: the same training step cut in three, to see where its time goes: forward +
//!   loss (graph recorded), backward (with the gradients collected per parameter), SGD update. Each
//!   iteration runs a whole step and times one part, so the three add up to `resnet18_train_step`.
//!
//! Compare the first two with `python scripts/bench_torch_models.py --threads 2` on the same machine,
//! idle: criterion's estimate is a mean, the script prints a median; both are seconds per step.
//!
//! Threads: flex runs its parallel kernels on rayon's global pool, and its matrix products (gemm's
//! `Parallelism::Rayon(0)`) take `rayon::current_num_threads()`, so the pool's size is the thread count.
//! That needs burn's `rayon` feature (without it flex is single-threaded; it and `simd` are flex's
//! defaults, which the workspace's `default-features = false` turns off, so the dev-dependency names
//! both) and, here, `RAYON_NUM_THREADS`: `main` sets it to 2 before anything starts the pool, whatever
//! the environment said.

use std::time::{Duration, Instant};

use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor};
use criterion::{Criterion, SamplingMode, criterion_group};
use ftcal_models::{Model, registry};

/// The rayon pool's size, as PyTorch's `torch.set_num_threads(2)` in the script.
const THREADS: &str = "2";
const LEARNING_RATE: f64 = 0.01;

fn model(name: &str, classes: usize, device: &Device) -> Model {
    registry::model(name, "bench")
        .expect("a registered model")
        .config
        .with_classes(classes)
        .init(device)
}

/// A ResNet-18 training run on one fixed random batch.
struct Training {
    model: Option<Model>,
    optimizer: ModuleOptimizer,
    loss: CrossEntropyLoss,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
}

impl Training {
    fn new() -> Self {
        let device = Device::flex().autodiff();
        device.seed(0);
        let momentum = MomentumConfig::new().with_momentum(0.9).with_dampening(0.0);
        Self {
            model: Some(model("resnet18", 10, &device)),
            optimizer: SgdConfig::new().with_momentum(Some(momentum)).init(),
            loss: CrossEntropyLossConfig::new().init(&device),
            images: Tensor::random([32, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
            labels: Tensor::random([32], Distribution::Uniform(0.0, 10.0), &device),
        }
    }

    fn model(&self) -> &Model {
        self.model.as_ref().expect("a model between steps")
    }

    fn forward(&self) -> Tensor<1> {
        let logits = self.model().forward(self.images.clone());
        self.loss.forward(logits, self.labels.clone())
    }

    /// One step; returns the time of each part: forward and loss, backward, SGD update.
    fn step(&mut self) -> [Duration; 3] {
        let start = Instant::now();
        let loss = self.forward();
        let forward_done = Instant::now();
        let gradients = GradientsParams::from_grads(loss.backward(), self.model());
        let backward_done = Instant::now();
        let model = self.model.take().expect("a model between steps");
        self.model = Some(self.optimizer.step(LEARNING_RATE, model, gradients));
        [
            forward_done - start,
            backward_done - forward_done,
            backward_done.elapsed(),
        ]
    }
}

fn resnet18_train_step(c: &mut Criterion) {
    let mut training = Training::new();
    let loss: f32 = training.forward().into_scalar();
    assert!(loss.is_finite(), "the loss of the first step is {loss}");
    let mut group = c.benchmark_group("resnet18_train_step");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("batch_32_64x64_sgd_momentum", |b| b.iter(|| training.step()));
    group.finish();
}

fn resnet50_forward(c: &mut Criterion) {
    let device = Device::flex();
    device.seed(0);
    let model = model("resnet50", 1000, &device);
    let images = Tensor::<4>::random([8, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let mut group = c.benchmark_group("resnet50_forward");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("eval_batch_8_224x224", |b| {
        b.iter(|| model.forward(images.clone()))
    });
    group.finish();
}

fn resnet18_step_parts(c: &mut Criterion) {
    let mut training = Training::new();
    let mut group = c.benchmark_group("resnet18_step_parts");
    // Every iteration is a whole step, of which one part is timed: a forward pass left without its
    // backward keeps its graph until the next backward, so a forward-only loop would grow in memory
    // (~80 MB a pass here) and time page faults. 6 s is ten to twenty whole steps.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    for (part, name) in ["forward_and_loss", "backward", "sgd_momentum_update"]
        .into_iter()
        .enumerate()
    {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| (0..iterations).map(|_| training.step()[part]).sum())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    resnet18_train_step,
    resnet50_forward,
    resnet18_step_parts
);

fn main() {
    // SAFETY: nothing else runs yet (no thread of ours, rayon's pool not started), so nothing reads the
    // environment while it changes.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", THREADS) };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
