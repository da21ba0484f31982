//! `ftcal models`: the registered models, running one on a tensor file (to check converted weights
//! against PyTorch), and timing training steps on any backend (to compare with PyTorch on a GPU).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::{Args, Subcommand};
use ftcal_eval::write_atomic;
use ftcal_models::weights::{HostData, HostTensor};
use ftcal_models::{Model, ModelSettings, Precision, TensorMap, registry};
use ftcal_train::Backend;
use ftcal_train::optim::{Optimizer, OptimizerSettings};

use crate::backend;

/// Arguments of `ftcal models`.
#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: Option<ModelsCommand>,
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Run a model in eval mode on the tensor `input` [B, 3, H, W] of a .safetensors file; write its
    /// `features` [B, D] and `logits` [B, C].
    Run(RunArgs),
    /// Time training steps on random data (seeded): forward, cross-entropy, backward, and the SGD step
    /// `ftcal run` takes (momentum 0.9, dampening 0, as PyTorch's); print images/s. `scripts/bench_torch_train.py` is the same in
    /// PyTorch.
    BenchTrain(BenchTrainArgs),
}

/// Arguments of `ftcal models run`.
#[derive(Args, Debug)]
struct RunArgs {
    /// A registered name (see `ftcal models`) or a model TOML file (family, layers, channels, …).
    #[arg(long, value_name = "NAME|FILE.toml")]
    model: String,

    /// Weights: timm / torchvision .safetensors or .pth, or an ftcal checkpoint.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,

    /// A .safetensors file with the float tensor `input` [B, 3, H, W].
    #[arg(long, value_name = "FILE")]
    input: PathBuf,

    /// Where to write `features` and `logits` (.safetensors).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,

    /// Head classes, when not the architecture's.
    #[arg(long)]
    classes: Option<usize>,
}

/// Arguments of `ftcal models bench-train`.
#[derive(Args, Debug)]
struct BenchTrainArgs {
    /// A registered name (see `ftcal models`) or a model TOML file.
    #[arg(long, value_name = "NAME|FILE.toml", default_value = "resnet50")]
    model: String,

    /// flex, wgpu or cuda (the binary must have been built with its feature).
    #[arg(long, value_parser = backend::parse, default_value = "flex")]
    backend: Backend,

    /// f32, or bf16: products in bfloat16 with float32 master weights, as a run's `precision =`.
    #[arg(long, value_parser = backend::parse_precision, default_value = "f32")]
    precision: Precision,

    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,

    /// Input height and width.
    #[arg(long, default_value_t = 224)]
    image_size: usize,

    /// Timed steps.
    #[arg(long, default_value_t = 100)]
    steps: usize,

    /// Untimed steps first: GPU backends compile and autotune their kernels in the first steps.
    #[arg(long, default_value_t = 10)]
    warmup: usize,

    /// Head classes, when not the architecture's.
    #[arg(long)]
    classes: Option<usize>,

    /// Learning rate of the SGD step.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,

    /// Seeds the weights, the images and the labels.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Read the loss back to the host every N steps (reading waits for the device; `ftcal run` reads every
    /// tenth of an epoch). Several values, e.g. `1,10`, time the steps once per value, one after the other
    /// after the same warm-up.
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_value = "1")]
    read_loss_every: Vec<usize>,

    /// Time the forward pass and the loss alone, in eval mode (BatchNorm's running statistics), without
    /// autodiff or an update: an evaluation's cost.
    #[arg(long)]
    forward_only: bool,

    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs `ftcal models …`.
pub fn run(args: &ModelsArgs) -> Result<()> {
    match &args.command {
        None => {
            list();
            Ok(())
        }
        Some(ModelsCommand::Run(run)) => run_model(run),
        Some(ModelsCommand::BenchTrain(bench)) => bench_train(bench),
    }
}

fn list() {
    println!(
        "{:<38} {:>12} {:>7} {:>8}  pretrained weights (timm name.tag)",
        "name", "parameters", "input", "classes"
    );
    for model in registry::models() {
        let size = model.config.image_size();
        println!(
            "{:<38} {:>11.1}M {:>7} {:>8}  {}",
            model.name,
            model.config.num_params() as f64 / 1e6,
            format!("{size}x{size}"),
            model.config.classes(),
            model.weights
        );
    }
}

fn run_model(args: &RunArgs) -> Result<()> {
    let device = backend::device(Backend::Flex)?;
    let settings = ModelSettings {
        arch: args.model.clone(),
        classes: args.classes,
        image_size: None,
        weights: Some(args.weights.clone()),
        allow_head_mismatch: false,
        head: Default::default(),
        cosine_scale: None,
    };
    let (_, model, _) = settings.build("--model", &device)?;
    let inputs = TensorMap::read(&args.input)?;
    let input = inputs.tensors.get("input").with_context(|| {
        format!(
            "{}: no tensor `input`; found {:?}",
            args.input.display(),
            inputs.tensors.keys()
        )
    })?;
    let (HostData::Float(values), [batch, 3, height, width]) = (&input.data, input.shape.as_slice()) else {
        bail!(
            "{}: `input` must be a float tensor [B, 3, H, W]; it is {:?}",
            args.input.display(),
            input.shape
        );
    };
    let x = Tensor::<4>::from_data(
        TensorData::new(values.clone(), [*batch, 3, *height, *width]),
        &device,
    );
    let features = model.features(x);
    let logits = model.logits(features.clone());
    let host = |tensor: Tensor<2>| {
        let shape = tensor.dims().to_vec();
        HostTensor::float(
            shape,
            tensor
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .unwrap_or_default(),
        )
    };
    let out = TensorMap {
        tensors: BTreeMap::from([
            ("features".to_string(), host(features)),
            ("logits".to_string(), host(logits)),
        ]),
        origin: args.out.clone(),
    };
    out.write_safetensors(&args.out, BTreeMap::new())?;
    println!(
        "wrote features [{batch}, {}] and logits to {}",
        model.head().weight.shape().dims::<2>()[0],
        args.out.display()
    );
    Ok(())
}

/// One training run on one fixed random batch, as `scripts/bench_torch_train.py` does in PyTorch, with
/// `ftcal run`'s optimizer, so that the figure is that of a run's step.
struct Training {
    model: Option<Model>,
    optimizer: Optimizer,
    loss: burn::nn::loss::CrossEntropyLoss,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    lr: f64,
    /// Time the forward pass and the loss alone, in eval mode (no autodiff, no update).
    forward_only: bool,
}

impl Training {
    /// One step; returns its loss, still on the device (reading it waits for the step to finish).
    fn step(&mut self) -> Result<Tensor<1>> {
        let model = self.model.take().context("a model between steps")?;
        let logits = model.forward(self.images.clone());
        let loss = self.loss.forward(logits, self.labels.clone());
        if self.forward_only {
            self.model = Some(model);
            return Ok(loss);
        }
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optimizer.step(model, gradients, &|_| self.lr));
        Ok(loss.detach())
    }
}

/// Reads losses back from the device in one transfer. A device failure (out of memory, most often) shows
/// here, as an error rather than a panic.
fn read_losses(losses: Vec<Tensor<1>>) -> Result<Vec<f32>> {
    Tensor::cat(losses, 0)
        .try_into_data()
        .map_err(|error| anyhow!("the device failed (out of memory? try a smaller --batch-size): {error}"))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|error| anyhow!("losses: {error:?}"))
}

/// Steps `first..first + count`, reading the losses back every `every` steps into `losses`; returns the
/// time per step of each read-back interval, in ms.
fn run_steps(
    training: &mut Training,
    losses: &mut Vec<f32>,
    first: usize,
    count: usize,
    every: usize,
) -> Result<Vec<f64>> {
    let mut step_ms = Vec::new();
    let (mut pending, mut interval) = (Vec::new(), Instant::now());
    for index in first..first + count {
        pending.push(training.step()?);
        if pending.len() == every || index + 1 == first + count {
            let steps = pending.len();
            for (offset, loss) in read_losses(std::mem::take(&mut pending))?.into_iter().enumerate() {
                if !loss.is_finite() {
                    bail!("step {}: the loss is {loss}", index + 1 - steps + offset);
                }
                losses.push(loss);
            }
            step_ms.push(interval.elapsed().as_secs_f64() * 1e3 / steps as f64);
            interval = Instant::now();
        }
    }
    Ok(step_ms)
}

/// One timed phase of bench-train.
struct Phase {
    read_loss_every: usize,
    seconds: f64,
    /// Per-step times: each read-back interval divided by its steps.
    step_ms: Vec<f64>,
}

fn bench_train(args: &BenchTrainArgs) -> Result<()> {
    if args.steps == 0 || args.batch_size == 0 {
        bail!("--steps and --batch-size must be at least 1");
    }
    let base = backend::device(args.backend)?;
    let device = if args.forward_only {
        base.clone()
    } else {
        base.clone().autodiff()
    };
    device.seed(args.seed);
    let settings = ModelSettings {
        arch: args.model.clone(),
        classes: args.classes,
        image_size: Some(args.image_size),
        weights: None,
        allow_head_mismatch: false,
        head: Default::default(),
        cosine_scale: None,
    };
    let config = settings.config("--model")?;
    let classes = config.classes();
    let (batch, size) = (args.batch_size, args.image_size);
    let mut training = Training {
        model: Some(
            (config.init(&device).with_precision(args.precision))
                .with_batch_norm_training(!args.forward_only),
        ),
        optimizer: Optimizer::new(&OptimizerSettings::sgd(0.9, false, 0.0), "bench-train")?,
        loss: CrossEntropyLossConfig::new().init(&device),
        images: Tensor::random([batch, 3, size, size], Distribution::Normal(0.0, 1.0), &device),
        labels: Tensor::random([batch], Distribution::Uniform(0.0, classes as f64), &device),
        lr: args.lr,
        forward_only: args.forward_only,
    };
    let on = backend::describe(args.backend, &base);
    eprintln!(
        "bench-train: {} on {on}, {}; batch {batch} of 3x{size}x{size}, {classes} classes; {} warm-up \
         and {} timed steps",
        args.model,
        args.precision.name(),
        args.warmup,
        args.steps
    );
    let sync = || {
        device
            .sync()
            .map_err(|error| anyhow!("{on}: the device failed: {error}"))
    };

    let warmup_start = Instant::now();
    let mut losses: Vec<f32> = Vec::new();
    run_steps(&mut training, &mut losses, 0, args.warmup, 1)?;
    sync()?;
    let warmup_seconds = warmup_start.elapsed().as_secs_f64();
    // Printed before the timed steps, so that a run stopped by a timeout still says how far it got.
    eprintln!(
        "bench-train: {} warm-up steps in {warmup_seconds:.1} s (GPU backends compile and autotune \
         their kernels here)",
        args.warmup
    );

    let mut phases = Vec::new();
    let mut first = args.warmup;
    for &every in &args.read_loss_every {
        if every == 0 {
            bail!("--read-loss-every must be at least 1");
        }
        let start = Instant::now();
        let mut step_ms = run_steps(&mut training, &mut losses, first, args.steps, every)?;
        // The last update is still queued after its loss came back.
        sync()?;
        let seconds = start.elapsed().as_secs_f64();
        step_ms.sort_by(f64::total_cmp);
        first += args.steps;
        let phase = Phase {
            read_loss_every: every,
            seconds,
            step_ms,
        };
        println!(
            "{}: {:.1} images/s on {on} ({} steps of batch {batch} at {size}x{size} in {seconds:.2} s, \
             the loss read back every {every} steps, median step {:.1} ms; loss {:.4} -> {:.4})",
            args.model,
            (batch * args.steps) as f64 / seconds,
            args.steps,
            phase.step_ms[phase.step_ms.len() / 2],
            losses[0],
            losses[losses.len() - 1]
        );
        phases.push(phase);
    }
    if let Some(path) = &args.json {
        let figures = |phase: &Phase| {
            serde_json::json!({
                "read_loss_every": phase.read_loss_every,
                "seconds": phase.seconds,
                "images_per_s": (batch * args.steps) as f64 / phase.seconds,
                "step_ms_median": phase.step_ms[phase.step_ms.len() / 2],
                "step_ms_min": phase.step_ms[0],
                "step_ms_max": phase.step_ms[phase.step_ms.len() - 1],
            })
        };
        // The first phase's figures at the top level, as the scripts that read this file expect.
        let mut record = serde_json::json!({
            "framework": "ftcal (burn 0.22.1)",
            "backend": format!("{:?}", args.backend).to_lowercase(),
            "precision": args.precision.name(),
            "forward_only": args.forward_only,
            "device": on,
            "model": args.model,
            "batch_size": batch,
            "image_size": size,
            "classes": classes,
            "steps": args.steps,
            "warmup": args.warmup,
            "lr": args.lr,
            "seed": args.seed,
            "warmup_seconds": warmup_seconds,
            "loss_first": losses[0],
            "loss_last": losses[losses.len() - 1],
            "phases": phases.iter().map(figures).collect::<Vec<_>>(),
        });
        if let (Some(object), serde_json::Value::Object(first)) =
            (record.as_object_mut(), figures(&phases[0]))
        {
            object.extend(first);
        }
        let text = serde_json::to_string_pretty(&record)?;
        write_atomic(path, (text + "\n").as_bytes())?;
    }
    Ok(())
}
