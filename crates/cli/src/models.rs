//! `ftcal models`: the registered models, and running one on a tensor file (to check converted weights
//! against PyTorch).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use clap::{Args, Subcommand};
use ftcal_models::weights::{HostData, HostTensor};
use ftcal_models::{ModelSettings, TensorMap, registry};

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

/// Runs `ftcal models …`.
pub fn run(args: &ModelsArgs) -> Result<()> {
    match &args.command {
        None => {
            list();
            Ok(())
        }
        Some(ModelsCommand::Run(run)) => run_model(run),
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
    let device = Device::flex();
    let settings = ModelSettings {
        arch: args.model.clone(),
        classes: args.classes,
        image_size: None,
        weights: Some(args.weights.clone()),
        allow_head_mismatch: false,
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
