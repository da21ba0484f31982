//! One training stage: cross-entropy over all logits, the optimizer with per-group learning rates, the
//! schedule stepped every iteration, a checkpoint after every epoch (and inside one when a stop is
//! requested), and a stop on a non-finite loss.

use std::collections::HashSet;
use std::time::Instant;

use burn::module::ParamId;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use ftcal_data::{BatchPlan, ImageSet, Loader, LoaderSettings, Pipeline};
use ftcal_models::{LoadOptions, Model, ModelConfig, ParamGroup, TensorMap};

use crate::TrainError;
use crate::checkpoint::{Checkpoint, EpochRecord, PartialEpoch, TrainingState};
use crate::config::{Method, TrainingSettings};
use crate::holistic::distillation::Distillation;
use crate::holistic::lolsgd::{self, LocalSgd};
use crate::interrupt;
use crate::optim::{Optimizer, clip_grad_norm};
use crate::progress::{Event, RunLog};

/// Where a non-finite loss stopped a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Divergence {
    /// 0-based epoch.
    pub epoch: usize,
    /// 1-based iteration within the epoch.
    pub iteration: usize,
}

/// How a stage ended (a stop on request is [`TrainError::Interrupted`], its checkpoint written).
pub enum StageEnd {
    /// Every epoch ran; the trained model.
    Finished(Box<Model>),
    /// A loss was NaN or infinite.
    Diverged(Divergence),
}

/// A training stage to run.
pub struct StageJob<'a> {
    /// `source`, `fine_tuning` or `pcv-<k>`: names the stage in logs and progress.
    pub name: String,
    /// Resolved settings.
    pub settings: &'a TrainingSettings,
    /// The training images (with the labels the loss is computed against).
    pub train_set: ImageSet,
    /// The training pipeline (augmentation).
    pub pipeline: &'a Pipeline,
    /// Worker threads and caching.
    pub loader: &'a LoaderSettings,
    /// Seeds the batch order and augmentation.
    pub seed: u64,
    /// The stage's checkpoint folder.
    pub checkpoint: Checkpoint,
    /// The model's description (checkpoints are rebuilt from it).
    pub model_config: &'a ModelConfig,
    /// Stop after this epoch (0-based) once its checkpoint is written and `after_epoch` has run.
    pub stop_after_epoch: Option<usize>,
    /// The classes the stage fine-tunes on (S, or a PCV fold's half of it): those LOLSGD leaves out from.
    pub fine_tuning_classes: Vec<usize>,
    /// The stage's absent classes (U, and a PCV fold's pseudo-absent half): those distillation keeps.
    /// Classes outside S ∪ U (ImageNet-R's other 800 logits) are neither.
    pub absent_classes: Vec<usize>,
    /// The frozen source (pre-trained) model, when the settings distil it.
    pub source_model: Option<Model>,
}

/// The parameters the optimizer sees, in a fixed order (the optimizer state is saved by position).
fn parameter_order(model: &Model) -> Vec<ParamId> {
    let mut order = model.param_ids(ParamGroup::Backbone);
    order.extend(model.param_ids(ParamGroup::Head));
    order
}

/// The head's parameters (they train at `lr`, the backbone's at `lr` × the multiplier). Ids change when a
/// model is reloaded (LOLSGD's rounds), so they are taken again then.
fn head_ids(model: &Model) -> HashSet<ParamId> {
    model.param_ids(ParamGroup::Head).into_iter().collect()
}

/// The model as the method trains it: frozen parts stop their gradients; frozen BatchNorm (and the
/// linear probe's backbone) normalise with the running statistics.
fn prepare(model: Model, settings: &TrainingSettings) -> Model {
    let model = match settings.method {
        Method::Full => model,
        Method::FrozenClassifier | Method::HolisticTransfer => model.freeze(ParamGroup::Head),
        Method::LinearProbe => model.freeze(ParamGroup::Backbone).with_batch_norm_training(false),
    };
    if settings.freeze_batch_norm {
        model.with_batch_norm_training(false)
    } else {
        model
    }
}

/// Runs (or resumes) a stage from `model`, which lives on the autodiff `device`. `after_epoch` runs after
/// each epoch's checkpoint (the pipeline evaluates and saves outputs there); it must skip work already
/// done, because a resumed stage calls it again for the last checkpointed epoch, whose evaluation a killed
/// process may not have finished.
pub fn train_stage(
    job: StageJob<'_>,
    model: Model,
    device: &Device,
    log: &mut RunLog<'_>,
    after_epoch: &mut dyn FnMut(usize, &Model, &mut RunLog<'_>) -> Result<(), TrainError>,
) -> Result<StageEnd, TrainError> {
    let settings = job.settings;
    let key = if job.name == "source" {
        "source"
    } else {
        "fine_tuning"
    };
    let optimizer_key = format!("{key}.optimizer");
    let mut optimizer = Optimizer::new(&settings.optimizer, &optimizer_key)?;
    let loader = Loader::new(
        job.train_set,
        job.pipeline.clone(),
        batch_plan(settings),
        job.seed,
        job.loader,
    )
    .map_err(|e| TrainError::config(format!("{key}.batch_size"), e.to_string()))?;
    let iterations = loader.batches_per_epoch();
    let total_iterations = iterations * settings.epochs;
    let mut local_sgd =
        (settings.active_lolsgd()).map(|lolsgd| LocalSgd::new(lolsgd, &job.fine_tuning_classes, job.seed));
    let distillation = settings.active_distillation().map(|distillation| {
        let source = job
            .source_model
            .as_ref()
            .expect("the pipeline gives a distilling stage its source model");
        Distillation::new(distillation, source, &job.absent_classes, device)
    });
    let rank_regularization = settings.active_rank_regularization();

    let (mut model, mut state) = match job.checkpoint.state()? {
        Some(state) if state.iterations_done > 0 => {
            let (model, round) =
                job.checkpoint
                    .restore(&state, model, &mut optimizer, parameter_order, device)?;
            if let (Some(local_sgd), Some(round)) = (&mut local_sgd, round) {
                local_sgd.resume(round);
            }
            let at = match &state.partial_epoch {
                Some(partial) => format!(
                    "epoch {}, iteration {}/{iterations}",
                    state.epochs_done, partial.iterations
                ),
                None => format!("the end of epoch {}", state.epochs_done - 1),
            };
            log.message(&format!(
                "{}: resuming at {at} from {}",
                job.name,
                job.checkpoint.dir().display()
            ));
            (model, state)
        }
        _ => (model, TrainingState::start(job.seed)),
    };
    if state.seed != job.seed {
        return Err(TrainError::file(
            job.checkpoint.dir(),
            format!(
                "the checkpoint was made with seed {} but the config has {}; use --force to start over",
                state.seed, job.seed
            ),
        ));
    }
    model = prepare(model, settings);
    let (mut order, mut head) = (parameter_order(&model), head_ids(&model));
    let loss_function = CrossEntropyLossConfig::new().init(device);
    let point = format!("{} iteration", job.name);
    // Losses are read back to the host (a wait for the device) every tenth of an epoch, not every step.
    let read_every = iterations.div_ceil(10).max(1);
    // A LOLSGD copy's start, or a round's average, replaces the model and the optimizer state.
    let reload = |snapshot: &TensorMap, model: Model| -> Result<(Model, Optimizer), TrainError> {
        let (weights, optimizer_state) = lolsgd::split(snapshot);
        let (model, _) = model.load_timm(&weights, LoadOptions::default(), device)?;
        let model = prepare(model, settings);
        let mut optimizer = Optimizer::new(&settings.optimizer, &optimizer_key)?;
        optimizer.load_state(&optimizer_state, &parameter_order(&model), device)?;
        Ok((model, optimizer))
    };

    if state.partial_epoch.is_none() && state.epochs_done > 0 {
        after_epoch(state.epochs_done - 1, &model, log)?;
    }
    for epoch in state.epochs_done..settings.epochs {
        if interrupt::stop_requested() {
            return Err(stopped(log, &job.name, format!("before epoch {epoch}")));
        }
        let partial = state.partial_epoch.take();
        let first = partial.as_ref().map_or(0, |p| p.iterations);
        let mut loss_sum = partial.map_or(0.0, |p| p.loss_sum);
        log.event(&Event::EpochStarted {
            stage: &job.name,
            epoch,
            epochs: settings.epochs,
            iterations,
        });
        let started = Instant::now();
        let (mut images, mut lr) = (0usize, settings.lr);
        let mut pending = PendingLosses::default();
        for (index, batch) in (first..).zip(loader.epoch_from(epoch, first)) {
            interrupt::reached(&point);
            let mut batch = batch?;
            if !batch.skipped.is_empty() {
                log.log_only(&format!(
                    "{}: skipped unreadable {}",
                    job.name,
                    batch.skipped.join(", ")
                ));
            }
            let round_position = (local_sgd.as_ref()).map(|lolsgd| lolsgd.position(iterations, index));
            if let (Some(local_sgd), Some(at)) = (&mut local_sgd, round_position) {
                let snapshot = || lolsgd::snapshot(model.to_timm(), optimizer.state(&order));
                if let Some(start) = local_sgd.before_step(at, snapshot) {
                    (model, optimizer) = reload(&start, model)?;
                    (order, head) = (parameter_order(&model), head_ids(&model));
                }
                batch = batch.restricted_to(&local_sgd.kept_classes(epoch, at));
            }
            if !batch.is_empty() {
                let (inputs, labels) = batch.to_tensors(device);
                let features = model.features(inputs.clone());
                let logits = model.logits(features.clone());
                let mut loss = match &distillation {
                    Some(distillation) => {
                        let distilled = distillation.loss(logits.clone(), &inputs);
                        let cross_entropy = loss_function.forward(logits, labels);
                        match distilled {
                            Some(distilled) => cross_entropy + distilled,
                            None => cross_entropy,
                        }
                    }
                    None => loss_function.forward(logits, labels),
                };
                if let Some(rank_regularization) = rank_regularization {
                    loss = loss + rank_regularization.loss(features);
                }
                pending.push(index, loss.clone().detach());
                let mut grads = GradientsParams::from_grads(loss.backward(), &model);
                if let Some(max_norm) = settings.grad_clip_norm {
                    grads = clip_grad_norm(&model, grads, max_norm).0;
                }
                lr = settings.lr * settings.schedule.factor(state.iterations_done, total_iterations);
                let backbone_lr = lr * settings.backbone_multiplier();
                model = optimizer.step(model, grads, &|id| {
                    if head.contains(&id) { lr } else { backbone_lr }
                });
                state.iterations_done += 1;
                images += batch.len();
            }
            if let (Some(local_sgd), Some(at)) = (&mut local_sgd, round_position) {
                let snapshot = || lolsgd::snapshot(model.to_timm(), optimizer.state(&order));
                if let Some(average) = local_sgd.after_step(at, snapshot) {
                    (model, optimizer) = reload(&average, model)?;
                    (order, head) = (parameter_order(&model), head_ids(&model));
                }
            }
            if batch.is_empty() {
                continue;
            }
            let images_per_second = images as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let stop = interrupt::stop_requested();
            let read_back = (index + 1) % read_every == 0 || index + 1 == iterations || stop;
            let mut loss_read = None;
            if read_back {
                for (at, value) in pending.read() {
                    if !value.is_finite() {
                        log.event(&Event::EpochFinished);
                        log.message(&format!(
                            "{}: the loss is {value} at epoch {epoch}, iteration {}: the run diverged (lower the learning rate)",
                            job.name,
                            at + 1
                        ));
                        return Ok(StageEnd::Diverged(Divergence {
                            epoch,
                            iteration: at + 1,
                        }));
                    }
                    loss_sum += value;
                    loss_read = Some(value);
                }
            }
            log.event(&Event::Iteration {
                iteration: index + 1,
                loss: loss_read,
                lr,
                images_per_second,
            });
            if let Some(loss) = loss_read {
                log.log_only(&format!(
                    "{} epoch {epoch} iteration {}/{iterations}: loss {loss:.4}, lr {lr:.3e}, {images_per_second:.0} images/s",
                    job.name,
                    index + 1
                ));
            }
            if stop && index + 1 < iterations {
                log.event(&Event::EpochFinished);
                state.partial_epoch = Some(PartialEpoch {
                    iterations: index + 1,
                    loss_sum,
                });
                let round = local_sgd.as_ref().and_then(LocalSgd::round);
                job.checkpoint
                    .save(&model, job.model_config, &optimizer, &order, round, &mut state)?;
                return Err(stopped(
                    log,
                    &job.name,
                    format!("in epoch {epoch} after iteration {}/{iterations}", index + 1),
                ));
            }
        }
        log.event(&Event::EpochFinished);
        let record = EpochRecord {
            epoch,
            loss: loss_sum / iterations.max(1) as f64,
            lr,
        };
        log.message(&format!(
            "{} epoch {}/{}: loss {:.4}, lr {:.3e}, {:.0} images/s",
            job.name,
            epoch + 1,
            settings.epochs,
            record.loss,
            record.lr,
            images as f64 / started.elapsed().as_secs_f64().max(1e-9)
        ));
        state.epochs_done = epoch + 1;
        state.history.push(record);
        // Rounds end with the epoch, so an epoch's checkpoint never holds one in progress.
        job.checkpoint
            .save(&model, job.model_config, &optimizer, &order, None, &mut state)?;
        after_epoch(epoch, &model, log)?;
        if job.stop_after_epoch == Some(epoch) && epoch + 1 < settings.epochs {
            return Err(stopped(log, &job.name, format!("after epoch {epoch}, as asked")));
        }
    }
    Ok(StageEnd::Finished(Box::new(model)))
}

/// The losses of the iterations since the last read-back, still on the device. Reading a value to the host
/// waits until the device has finished everything queued before it; doing so every step would drain a
/// GPU's queue every step. Read together, they still give each iteration's loss, so a non-finite loss is
/// pinned to its iteration, and their sum in the host's order is the one a read per step would give.
#[derive(Default)]
struct PendingLosses {
    losses: Vec<(usize, Tensor<1>)>,
}

impl PendingLosses {
    /// The loss of the iteration with 0-based index `index` in its epoch.
    fn push(&mut self, index: usize, loss: Tensor<1>) {
        self.losses.push((index, loss));
    }

    /// Reads every pending loss back in one transfer: (index, loss) in order.
    fn read(&mut self) -> Vec<(usize, f64)> {
        if self.losses.is_empty() {
            return Vec::new();
        }
        let (indices, tensors): (Vec<usize>, Vec<Tensor<1>>) = self.losses.drain(..).unzip();
        let values = Tensor::cat(tensors, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("losses convert to f32");
        indices
            .into_iter()
            .zip(values)
            .map(|(index, value)| (index, f64::from(value)))
            .collect()
    }
}

/// The batches a stage trains on: shuffled, the last incomplete batch of each pass dropped.
pub fn batch_plan(settings: &TrainingSettings) -> BatchPlan {
    BatchPlan {
        batch_size: settings.batch_size,
        shuffle: true,
        drop_last: true,
        iterations_per_epoch: settings.iterations_per_epoch,
    }
}

/// Logs where a stage stopped on request and makes the error that unwinds the run.
fn stopped(log: &mut RunLog<'_>, stage: &str, at: String) -> TrainError {
    let at = format!("{stage} {at}");
    log.message(&format!(
        "stopped at a safe point: {at}, checkpoint written; the same command resumes"
    ));
    TrainError::Interrupted { at }
}
