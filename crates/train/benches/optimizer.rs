//! `cargo bench -p ftcal-train --bench optimizer`: one optimizer step over a model's parameters on burn's
//! `flex` backend with 2 threads (BENCHMARKS.md), as a run takes it: `Optimizer::step` on the autodiff
//! model with a fresh gradient for every parameter.
//!
//! Rows: SGD with momentum 0.9 (the paper's, and bench-train's) and AdamW, on ResNet-18 (10 classes) and
//! ResNet-50 (1000 classes). Each figure is the median of `STEPS` steps after two of warm-up (the first
//! step allocates the buffers). The effective bandwidth counts the bytes a fused step must move: each
//! parameter, gradient and buffer read once, the parameter and buffers written once.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only checks that it runs: the quickstart's
//! model, one timed step.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use ftcal_models::{Model, ModelConfig, registry};
use ftcal_train::optim::settings::AdamW;
use ftcal_train::optim::{Optimizer, OptimizerSettings};

/// Timed steps per figure when benching.
const STEPS: usize = 10;

/// Every float parameter's id and shape.
#[derive(Default)]
struct Shapes(Vec<(ParamId, Vec<usize>)>);

impl ModuleVisitor for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, param.lazy_shape().to_vec()));
    }
}

/// A random gradient for every parameter, flat, drawn once: each step registers them again in the
/// parameters' shapes (a clone shares the values), so that drawing them costs no step.
fn random_gradients(shapes: &Shapes, device: &Device) -> Vec<Tensor<1>> {
    let shape_counts = shapes.0.iter().map(|(_, shape)| shape.iter().product::<usize>());
    shape_counts
        .map(|count| Tensor::<1>::random([count], Distribution::Normal(0.0, 1e-3), device))
        .collect()
}

/// The gradients as `GradientsParams::from_grads` hands them over: tensors outside autodiff, in each
/// parameter's shape.
fn gradients(shapes: &Shapes, flat: &[Tensor<1>]) -> GradientsParams {
    let mut grads = GradientsParams::new();
    for ((id, shape), grad) in shapes.0.iter().zip(flat) {
        let grad = grad.clone();
        match shape.len() {
            1 => grads.register(*id, grad),
            2 => grads.register(*id, grad.reshape([shape[0], shape[1]])),
            4 => grads.register(*id, grad.reshape([shape[0], shape[1], shape[2], shape[3]])),
            rank => panic!("no parameter of rank {rank} in these models"),
        }
    }
    grads
}

/// The median seconds of one `Optimizer::step` over `steps` steps after two of warm-up, and the model's
/// parameter count.
fn step_seconds(config: &ModelConfig, settings: &OptimizerSettings, steps: usize) -> (f64, usize) {
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut model: Model = config.init(&device);
    let mut shapes = Shapes::default();
    model.visit(&mut shapes);
    let parameters = shapes
        .0
        .iter()
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum();
    let inner = device.clone().inner();
    let mut optimizer = Optimizer::new(settings, "bench").unwrap();
    let draws = [
        random_gradients(&shapes, &inner),
        random_gradients(&shapes, &inner),
    ];
    let mut times = Vec::new();
    for step in 0..steps + 2 {
        let grads = gradients(&shapes, &draws[step % 2]);
        let started = Instant::now();
        model = optimizer.step(model, grads, &|_| 0.01);
        if step >= 2 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], parameters)
}

fn main() {
    // SAFETY: set before any thread exists (rayon's pool starts on the first parallel kernel).
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "2") };
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this main without it.
    let benching = std::env::args().any(|arg| arg == "--bench");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = |name: &str, classes| {
        registry::model(name, "bench")
            .unwrap()
            .config
            .with_classes(classes)
    };
    let models = if benching {
        vec![
            ("ResNet-18", model("resnet18", 10)),
            ("ResNet-50", model("resnet50", 1000)),
        ]
    } else {
        eprintln!("a check that the bench runs (cargo bench -p ftcal-train --bench optimizer measures)");
        let digits = ModelConfig::read(&workspace.join("configs/models/resnet_digits.toml")).unwrap();
        vec![("quickstart ResNet", digits.with_classes(10))]
    };
    let optimizers = [
        ("SGD, momentum 0.9", OptimizerSettings::sgd(0.9, false, 0.0), 5),
        ("AdamW", OptimizerSettings::Adamw(AdamW::default()), 7),
    ];
    println!("| model | parameters | optimizer | ms / step | GB/s moved |");
    println!("|---|---:|---|---:|---:|");
    for (name, config) in &models {
        for (optimizer, settings, tensors_moved) in &optimizers {
            let (seconds, parameters) = step_seconds(config, settings, if benching { STEPS } else { 1 });
            let bytes = (parameters * 4 * tensors_moved) as f64;
            println!(
                "| {name} | {:.1} M | {optimizer} | {:.1} | {:.1} |",
                parameters as f64 / 1e6,
                seconds * 1e3,
                bytes / seconds / 1e9
            );
        }
    }
}
