//! `cargo bench -p ftcal-train --bench holistic`: what each part of Holistic Transfer adds to a fine-tuning
//! iteration, against plain fine-tuning, on burn's `flex` backend with 2 threads (BENCHMARKS.md).
//!
//! Each variant fine-tunes the model from the same initialisation on Digits-2's optdigits 0–4 (32×32, the
//! quickstart's augmentation, batch 64) through `train_stage`, the trainer a run uses. The time per
//! iteration is taken between the first and the last iteration's progress events (so it leaves out the
//! stage's set-up and its end-of-epoch checkpoint), over `ITERATIONS` iterations after the first.
//!
//! - distillation: the frozen source model's forward pass on every batch;
//! - rank regulariser: the features' SVD (burn-linalg, on the host) and its surrogate's backward;
//! - LOLSGD: the model and optimizer state copied to the host at each copy's end and reloaded at each
//!   copy's start and round's end, amortised over the copy's K steps; measured at M = 4, K = 10. Its
//!   batches are smaller (half of S is left out), which makes its steps cheaper: measured as it runs. One
//!   copy boundary (the snapshot of model and momentum, and the reload of both) is also timed alone: a
//!   round of M copies has M snapshots and M reloads, so K steps per copy add 1/K of it per step.
//!
//! Every figure is the median of `REPEATS` stages, after one stage of warm-up (the rayon pool, the
//! allocator). Under `cargo test --all-targets` (no `--bench` argument) it only checks that it runs: the
//! quickstart's model, 3 iterations, one stage each.

use std::time::Instant;

use burn::tensor::Device;
use ftcal_data::sources::digits2::digits2_set;
use ftcal_data::{LoaderSettings, Pipeline, TransformSpec};
use ftcal_models::{ModelConfig, registry};
use ftcal_train::checkpoint::Checkpoint;
use ftcal_train::config::{Method, ScheduleSettings, TrainingSettings};
use ftcal_train::holistic::distillation::DistillationSettings;
use ftcal_train::holistic::lolsgd::LolsgdSettings;
use ftcal_train::holistic::rank::RankRegularizationSettings;
use ftcal_train::optim::OptimizerSettings;
use ftcal_train::progress::RunLog;
use ftcal_train::trainer::{StageJob, train_stage};
use ftcal_train::{Event, Observer};

/// Iterations timed per stage, and stages per figure, when benching.
const ITERATIONS: usize = 30;
const REPEATS: usize = 3;

/// Records when each iteration finished.
#[derive(Default)]
struct Clock {
    finished: Vec<Instant>,
}

impl Observer for Clock {
    fn event(&mut self, event: &Event<'_>) {
        if matches!(event, Event::Iteration { .. }) {
            self.finished.push(Instant::now());
        }
    }
}

/// What this process measures: the bench's figures, or (under `cargo test`) a check that it runs.
struct Budget {
    iterations: usize,
    repeats: usize,
}

static BUDGET: std::sync::OnceLock<Budget> = std::sync::OnceLock::new();

fn budget() -> &'static Budget {
    BUDGET.get().expect("main sets the budget")
}

/// Timings of a part measured alone (a boundary, the rank term): 5 when benching, else 1.
fn timings() -> usize {
    if budget().repeats > 1 { 5 } else { 1 }
}

fn settings(method: Method) -> TrainingSettings {
    TrainingSettings {
        method,
        epochs: 1,
        iterations_per_epoch: Some(budget().iterations + 1),
        batch_size: 64,
        lr: 0.05,
        backbone_lr_multiplier: Some(0.1),
        optimizer: OptimizerSettings::sgd(0.9, true, 5e-4),
        schedule: ScheduleSettings::default(),
        freeze_batch_norm: false,
        grad_clip_norm: None,
        lolsgd: None,
        distillation: None,
        rank_regularization: None,
        ensemble: None,
    }
}

/// Seconds per iteration of the stage `settings` describe.
fn seconds_per_iteration(config: &ModelConfig, settings: TrainingSettings) -> f64 {
    let device = Device::flex().autodiff();
    device.seed(0);
    let model = config.init(&device);
    device.seed(0);
    let source_model = config.init(&device);
    let settings = settings.resolve(ftcal_train::Stage::FineTuning).unwrap();
    let pipeline = Pipeline::from_spec(&TransformSpec::Preset("digits_train".into()), "bench").unwrap();
    let loader = LoaderSettings {
        cache: true,
        ..LoaderSettings::default()
    };
    let set = digits2_set("optdigits")
        .unwrap()
        .restricted_to(&[0, 1, 2, 3, 4], "S");
    let temp = tempfile::tempdir().unwrap();
    let job = StageJob {
        name: "fine_tuning".into(),
        settings: &settings,
        train_set: set,
        pipeline: &pipeline,
        loader: &loader,
        seed: 0,
        checkpoint: Checkpoint::new(temp.path().join("checkpoint")),
        model_config: config,
        stop_after_epoch: None,
        fine_tuning_classes: vec![0, 1, 2, 3, 4],
        absent_classes: vec![5, 6, 7, 8, 9],
        source_model: Some(source_model),
    };
    let mut clock = Clock::default();
    {
        let mut log = RunLog::open(&temp.path().join("log.txt"), &mut clock).unwrap();
        train_stage(job, model, &device, &mut log, &mut |_, _, _| Ok(())).unwrap();
    }
    let (first, last) = (clock.finished[0], clock.finished[clock.finished.len() - 1]);
    (last - first).as_secs_f64() / (clock.finished.len() - 1) as f64
}

/// Seconds for one copy boundary of LOLSGD on `config`'s model: the snapshot of the model and its SGD
/// momentum to the host, and both loaded back into a model and an optimizer (the median of 5 timings).
fn copy_boundary_seconds(config: &ModelConfig) -> f64 {
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, Tensor};
    use ftcal_models::{LoadOptions, ParamGroup};
    use ftcal_train::holistic::lolsgd;
    use ftcal_train::optim::Optimizer;

    let device = Device::flex().autodiff();
    device.seed(0);
    let model = config.init(&device);
    let order = |model: &ftcal_models::Model| {
        let mut order = model.param_ids(ParamGroup::Backbone);
        order.extend(model.param_ids(ParamGroup::Head));
        order
    };
    let sgd = OptimizerSettings::sgd(0.9, true, 5e-4);
    let mut optimizer = Optimizer::new(&sgd, "bench").unwrap();
    let images = Tensor::<4>::random([8, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let grads = GradientsParams::from_grads(model.forward(images).sum().backward(), &model);
    let mut model = optimizer.step(model, grads, &|_| 0.01);
    let mut times = Vec::new();
    for _ in 0..timings() {
        let started = Instant::now();
        let snapshot = lolsgd::snapshot(model.to_timm(), optimizer.state(&order(&model)));
        let (weights, state) = lolsgd::split(&snapshot);
        model = model
            .load_timm(&weights, LoadOptions::default(), &device)
            .unwrap()
            .0;
        optimizer = Optimizer::new(&sgd, "bench").unwrap();
        optimizer.load_state(&state, &order(&model), &device).unwrap();
        times.push(started.elapsed().as_secs_f64());
    }
    median(times)
}

/// Seconds for the rank term alone on a batch of `rows` features of `dim` (the SVD on the host, the
/// normalisation and the surrogate's backward), the median of 5.
fn rank_term_seconds(rows: usize, dim: usize) -> f64 {
    use burn::tensor::{Distribution, Tensor};
    let device = Device::flex().autodiff();
    device.seed(0);
    let regulariser = RankRegularizationSettings::default();
    let times = (0..timings())
        .map(|_| {
            let features =
                Tensor::<2>::random([rows, dim], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let started = Instant::now();
            let _ = regulariser.loss(features).backward();
            started.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // SAFETY: set before any thread exists (rayon's pool starts on the first parallel kernel).
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "2") };
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this main without it.
    let benching = std::env::args().any(|arg| arg == "--bench");
    let chosen = if benching {
        Budget {
            iterations: ITERATIONS,
            repeats: REPEATS,
        }
    } else {
        Budget {
            iterations: 3,
            repeats: 1,
        }
    };
    if !benching {
        eprintln!("a check that the bench runs (cargo bench -p ftcal-train --bench holistic measures)");
    }
    assert!(BUDGET.set(chosen).is_ok(), "main runs once");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let digits = ModelConfig::read(&workspace.join("configs/models/resnet_digits.toml"))
        .unwrap()
        .with_classes(10);
    let resnet18 = registry::model("resnet18", "bench")
        .unwrap()
        .config
        .with_classes(10);
    println!("| model | variant | s / iteration | × plain |");
    println!("|---|---|---:|---:|");
    let models = [("quickstart ResNet", &digits), ("ResNet-18", &resnet18)];
    for (name, config) in &models[..if benching { 2 } else { 1 }] {
        let rank_term = rank_term_seconds(64, config.feature_dim());
        let lolsgd = |local_steps| LolsgdSettings {
            local_steps,
            ..LolsgdSettings::default()
        };
        let variants: Vec<(&str, TrainingSettings)> = vec![
            ("plain fine-tuning", settings(Method::Full)),
            (
                "+ distillation",
                TrainingSettings {
                    distillation: Some(DistillationSettings::default()),
                    ..settings(Method::Full)
                },
            ),
            (
                "+ rank regulariser",
                TrainingSettings {
                    rank_regularization: Some(RankRegularizationSettings::default()),
                    ..settings(Method::Full)
                },
            ),
            (
                "+ LOLSGD, M = 4, K = 10, ρ = 0.5",
                TrainingSettings {
                    lolsgd: Some(lolsgd(10)),
                    ..settings(Method::Full)
                },
            ),
            (
                "+ LOLSGD, M = 4, K = 10, nothing left out",
                TrainingSettings {
                    lolsgd: Some(LolsgdSettings {
                        leave_out: 0.0,
                        ..lolsgd(10)
                    }),
                    ..settings(Method::Full)
                },
            ),
            (
                "HT preset (frozen classifier + LOLSGD K = 10 + distillation)",
                TrainingSettings {
                    lolsgd: Some(lolsgd(10)),
                    ..settings(Method::HolisticTransfer)
                },
            ),
        ];
        if benching {
            seconds_per_iteration(config, settings(Method::Full));
        }
        let mut plain = None;
        for (variant, settings) in variants {
            let seconds = median(
                (0..budget().repeats)
                    .map(|_| seconds_per_iteration(config, settings.clone()))
                    .collect(),
            );
            let plain_seconds = *plain.get_or_insert(seconds);
            println!(
                "| {name} | {variant} | {seconds:.4} | {:.2} |",
                seconds / plain_seconds
            );
        }
        println!(
            "| {name} | the rank term alone (SVD of 64 × {} features, forward and backward) | {rank_term:.4} | {:.3} |",
            config.feature_dim(),
            rank_term / plain.expect("plain was measured")
        );
        let boundary = copy_boundary_seconds(config);
        let plain = plain.expect("plain was measured");
        println!(
            "| {name} | one LOLSGD copy boundary (snapshot + reload of weights and momentum) | {boundary:.4} | {:.2}; at K = 50: +{:.1} % a step |",
            boundary / plain,
            100.0 * boundary / 50.0 / plain
        );
    }
}
