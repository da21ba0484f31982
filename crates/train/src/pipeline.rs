//! `ftcal run`: the stages of the data flow, each writing into the run directory so that the same command
//! resumes where an interrupted run stopped (killed, or stopped on request at a safe point).
//!
//! ```text
//! source (train on all classes, or load) → evaluate the pre-trained model (epoch −1)
//!   → fine-tune on S, evaluating every `eval.every` epochs → PCV folds → calibrate and report
//! ```
//!
//! No stage depends on what another left in memory: each starts from the run directory's files (the
//! pre-trained model is rebuilt from `[model]` and `models/source.safetensors` for every stage that
//! starts from it). burn's modules share BatchNorm's running statistics between clones, so fine-tuning a
//! clone of the pre-trained model would change the model the PCV folds start from, and only in a process
//! that had also run the fine-tuning.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ftcal_data::{BatchPlan, DataError, ImageSet, Loader, PartialClassData, Pipeline};
use ftcal_eval::{Divergence, RankedScores, Scores, read_scores, write_scores_as};
use ftcal_models::{Model, ModelConfig, ModelSettings};

use crate::TrainError;
use crate::checkpoint::Checkpoint;
use crate::config::{CalibrationMethod, EvalSplit, FeatureEpochs, RunConfig, TrainingSettings, config_name};
use crate::disk::{DiskUse, RunSizes};
use crate::head_norms::HeadNorms;
use crate::holistic::ensemble::EnsembleKind;
use crate::outputs::{evaluation_loader, predict};
use crate::progress::{Observer, RunLog};
use crate::report::{self, EpochRows, RunReport};
use crate::run_dir::{PRETRAINED_EPOCH, PcvFoldSplit, RunDir, SavedSplit, create_parent, write_json};
use crate::shared::{SharedHome, SharedStages, link_or_copy};
use crate::trainer::{StageEnd, StageJob, batch_plan, train_stage};

/// What `ftcal run` was asked beyond the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start over: delete the run directory's earlier contents, even a finished run.
    pub force: bool,
    /// Stop after this fine-tuning epoch (0-based) once its checkpoint is written (a test hook).
    pub stop_after_epoch: Option<usize>,
    /// Take the source stage and the pre-trained evaluation from these shared stages, computing them
    /// there when no run has yet (a sweep's cells).
    pub shared_stages: Option<SharedStages>,
    /// When another process holds the run directory, wait for it to end instead of failing.
    pub wait_for_lock: bool,
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    /// Every stage ran; the report.
    Completed(RunReport),
    /// The run directory already held this finished run; its report, recomputed.
    AlreadyDone(RunReport),
    /// A loss became NaN or infinite; `summary.json` says where.
    Diverged(RunReport),
    /// Stopped at a safe point on request (a signal, or `stop_after_epoch`); the same command resumes.
    Stopped {
        /// Where, e.g. `fine_tuning in epoch 2 after iteration 5/9`.
        at: String,
    },
}

/// The run directory a config writes to: `--out`, or `output_dir/name`.
pub fn run_dir(config: &RunConfig, out: Option<&Path>) -> PathBuf {
    out.map(Path::to_path_buf)
        .unwrap_or_else(|| config.output_dir.join(&config.name))
}

/// Runs, or resumes, the whole pipeline of `config` (resolved) in `dir`. `device` is the plain device of
/// the chosen backend; training runs on its autodiff twin. Everything that can be checked without
/// training is checked before the first stage starts.
pub fn run(
    config: &RunConfig,
    dir: &Path,
    device: &Device,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunOutcome, TrainError> {
    let prepared = RunDir::new(dir).prepare(config, options.force, options.wait_for_lock)?;
    let dir = &prepared.dir;
    if prepared.resuming
        && let Some(summary) = report::read_summary(dir)?
    {
        if summary.status == Some(ftcal_eval::RunStatus::Completed) {
            let mut log = RunLog::open(&dir.log(), observer)?;
            log.message(&format!(
                "{}: already finished; use --force to run it again",
                dir.root().display()
            ));
            let report = report::evaluate_run(dir.root(), EpochRows::Recorded)?;
            return Ok(RunOutcome::AlreadyDone(report));
        }
        if summary.status == Some(ftcal_eval::RunStatus::Diverged) {
            return Err(TrainError::file(
                dir.summary(),
                "this run diverged; change the config (e.g. a lower lr) and use --out, or --force to retry",
            ));
        }
    }
    let mut log = RunLog::open(&dir.log(), observer)?;
    log.message(&format!(
        "{} run `{}` in {} on {}{}",
        if prepared.resuming { "resuming" } else { "starting" },
        config.name,
        dir.root().display(),
        config_name(&config.backend),
        if config.precision.is_f32() {
            ""
        } else {
            " in bf16 mixed precision"
        }
    ));
    let context = Context::open(config, dir, device, options.shared_stages.clone(), &mut log)?;
    context.check_before_spending()?;
    log.message(&format!("expected disk use: {}", DiskUse::of(&context.sizes())));
    match context.stages(options, &mut log) {
        Err(TrainError::Interrupted { at }) => Ok(RunOutcome::Stopped { at }),
        outcome => outcome,
    }
}

/// Everything the stages share.
struct Context<'a> {
    config: &'a RunConfig,
    dir: &'a RunDir,
    device: &'a Device,
    training_device: Device,
    data: PartialClassData,
    train_pipeline: Pipeline,
    /// One evaluation loader per image set, made once so that its cache (`data.loader.cache`) serves
    /// every epoch: the target's training and test splits, S's training images (PCV), the source's test.
    eval_loaders: EvalLoaders,
    model_settings: ModelSettings,
    model_config: ModelConfig,
    /// The pre-trained model's outputs on each evaluation loader (by address), for a logit ensemble.
    source_scores: RefCell<HashMap<usize, Scores>>,
    /// Where the source stage and the pre-trained evaluation are shared with other runs, if they are.
    shared_stages: Option<SharedStages>,
}

/// The classes a training stage fine-tunes on, and those absent from it.
struct StageClasses {
    fine_tuning: Vec<usize>,
    absent: Vec<usize>,
}

struct EvalLoaders {
    target_train: Loader,
    target_test: Loader,
    fine_tuning_train: Loader,
    source_test: Option<Loader>,
}

impl<'a> Context<'a> {
    /// Lists the data, resolves the model against it and saves the class split.
    fn open(
        config: &'a RunConfig,
        dir: &'a RunDir,
        device: &'a Device,
        shared_stages: Option<SharedStages>,
        log: &mut RunLog<'_>,
    ) -> Result<Self, TrainError> {
        let data = config.data.open("data")?;
        let skip_unreadable = config.data.loader.on_corrupt == ftcal_data::OnCorrupt::Skip;
        if let Some(error) = data.first_error(skip_unreadable) {
            return Err(error.into());
        }
        let (train_pipeline, eval_pipeline) = config.data.transforms.pipelines("data.transforms")?;
        let mut model_settings = config.model.clone();
        let num_classes = data.target.num_classes;
        match model_settings.classes {
            Some(classes) if classes != num_classes => {
                return Err(TrainError::config(
                    "model.classes",
                    format!(
                        "is {classes} but the target dataset has {num_classes} classes; leave it out to use the dataset's"
                    ),
                ));
            }
            _ => model_settings.classes = Some(num_classes),
        }
        let model_config = model_settings.config("model")?;
        let (height, width) = eval_pipeline.output_size();
        let image_size = model_config.image_size() as u32;
        if model_config.needs_exact_image_size() && (height != image_size || width != image_size) {
            return Err(TrainError::config(
                "data.transforms",
                format!(
                    "the pipelines produce {height}×{width} images but the model takes only {0}×{0}; set model.image_size or the transforms",
                    model_config.image_size()
                ),
            ));
        }
        let split = &data.split;
        write_json(&dir.classes(), &SavedSplit::new(split))?;
        if split.absent().is_empty() {
            log.message(
                "U is empty: every class is fine-tuned on (an all-classes run); accuracies are measured, nothing is calibrated",
            );
        }
        log.message(&format!(
            "target {}: {} train / {} test images; S = {:?} ({} train images), U = {:?}",
            data.target.name,
            data.target.train.len(),
            data.target.test.len(),
            split.fine_tuning(),
            data.fine_tuning_train.len(),
            split.absent()
        ));
        let loader = |set: &ImageSet| {
            evaluation_loader(set, &eval_pipeline, config.eval.batch_size, &config.data.loader)
        };
        let eval_loaders = EvalLoaders {
            target_train: loader(&data.target.train)?,
            target_test: loader(&data.target.test)?,
            fine_tuning_train: loader(&data.fine_tuning_train)?,
            source_test: data
                .source
                .as_ref()
                .map(|source| loader(&source.test))
                .transpose()?,
        };
        Ok(Self {
            config,
            dir,
            device,
            training_device: device.clone().autodiff(),
            data,
            train_pipeline,
            eval_loaders,
            model_settings,
            model_config,
            source_scores: RefCell::default(),
            shared_stages,
        })
    }

    /// Checks what would otherwise fail only once a stage reaches it, so that a config error never costs
    /// the stages before: every stage's batch size against its training set, the PCV folds' halves of S,
    /// the evaluation batches, and the model's weights (built and loaded once).
    fn check_before_spending(&self) -> Result<(), TrainError> {
        let check = |plan: BatchPlan, set: &ImageSet, key: &str| {
            plan.check(set).map_err(|error| match error {
                DataError::Config { key: field, message } if field != "data" => {
                    TrainError::config(format!("{key}.{field}"), message)
                }
                other => other.into(),
            })
        };
        if let (Some(settings), Some(source)) = (&self.config.source, &self.data.source) {
            check(batch_plan(settings), &source.train, "source")?;
        }
        check(
            batch_plan(&self.config.fine_tuning),
            &self.data.fine_tuning_train,
            "fine_tuning",
        )?;
        for (fold, _, set) in self.pcv_folds()? {
            check(batch_plan(&self.config.fine_tuning), &set, "fine_tuning").map_err(
                |error| match error {
                    TrainError::Config { key, message } => {
                        TrainError::config(key, format!("PCV fold {fold} fine-tunes on half of S: {message}"))
                    }
                    other => other,
                },
            )?;
        }
        self.initial_model()?;
        Ok(())
    }

    /// What the run's disk use follows from.
    fn sizes(&self) -> RunSizes {
        let eval = &self.config.eval;
        let epochs = self.config.fine_tuning.epochs;
        let evaluated_epochs = (0..epochs)
            .filter(|epoch| (epoch + 1).is_multiple_of(eval.every) || epoch + 1 == epochs)
            .count();
        let evaluations = 1 + evaluated_epochs;
        let evaluations_with_features = match (eval.ncm, eval.save.features) {
            (false, _) | (_, FeatureEpochs::None) => 0,
            (true, FeatureEpochs::All) => evaluations,
            (true, FeatureEpochs::Ends) => 2.min(evaluations),
        };
        RunSizes {
            split_images: (eval.splits.iter())
                .map(|&split| self.eval_loader(split).set().len())
                .collect(),
            classes: self.model_config.classes(),
            feature_dim: self.model_config.feature_dim(),
            evaluations,
            evaluations_with_features,
            pcv_folds: eval.pcv_seeds.as_ref().map_or(0, Vec::len),
            fine_tuning_images: self.data.fine_tuning_train.len(),
            parameters: self.model_config.num_params(),
            saved_models: 1 + usize::from(self.config.source.is_some()),
            optimizer_tensors: self.config.fine_tuning.optimizer.state_tensors_per_parameter(),
            precision: eval.save.dtype,
        }
    }

    /// The PCV folds: each one's split of S and the training images of its half.
    fn pcv_folds(&self) -> Result<Vec<(usize, PcvFoldSplit, ImageSet)>, TrainError> {
        // With U empty (a run fine-tuned on every class) there is no γ to choose.
        if !self.config.eval.calibration.contains(&CalibrationMethod::Pcv)
            || self.data.split.absent().is_empty()
        {
            return Ok(Vec::new());
        }
        let seeds = self.config.eval.pcv_seeds.clone().unwrap_or_default();
        let mut folds = Vec::with_capacity(seeds.len());
        for (fold, seed) in seeds.into_iter().enumerate() {
            let fold_split = PcvFoldSplit::draw(self.data.split.fine_tuning(), seed);
            if fold_split.pseudo_absent.is_empty() {
                return Err(TrainError::config(
                    "eval.calibration",
                    "PCV needs at least two fine-tuning classes to split S in halves",
                ));
            }
            let set = self.data.target.train.restricted_to(
                &fold_split.pseudo_fine_tuning,
                format!("{} train (PCV fold {fold})", self.data.target.name),
            );
            folds.push((fold, fold_split, set));
        }
        Ok(folds)
    }

    fn eval_loader(&self, split: EvalSplit) -> &Loader {
        match split {
            EvalSplit::Train => &self.eval_loaders.target_train,
            EvalSplit::Test => &self.eval_loaders.target_test,
        }
    }

    /// `model`'s outputs on the images of `loader`, with features if asked, rounded to the precision the
    /// run saves (every metric is then computed from what the files hold).
    fn predict(
        &self,
        model: &Model,
        loader: &Loader,
        features: bool,
        what: &str,
        log: &mut RunLog<'_>,
    ) -> Result<Scores, TrainError> {
        let scores = predict(model, loader, features, self.device, what, log)?;
        Ok(scores.rounded_to(self.config.eval.save.dtype)?)
    }

    /// A fine-tuned `model`'s outputs as the run saves them: combined with the source model's when
    /// `[fine_tuning.ensemble]` is on (every metric and calibration then sees the ensemble).
    fn predict_fine_tuned(
        &self,
        model: &Model,
        loader: &Loader,
        features: bool,
        what: &str,
        log: &mut RunLog<'_>,
    ) -> Result<Scores, TrainError> {
        let Some(ensemble) = self.config.fine_tuning.active_ensemble() else {
            return self.predict(model, loader, features, what, log);
        };
        match ensemble.kind {
            EnsembleKind::Logits => {
                let fine_tuned = predict(model, loader, features, self.device, what, log)?;
                let source = self.source_scores(loader, what, log)?;
                let combined = ensemble.combine_logits(fine_tuned, &source)?;
                Ok(combined.rounded_to(self.config.eval.save.dtype)?)
            }
            EnsembleKind::Weights => {
                let weights = ensemble.combine_weights(&model.to_timm(), &self.pretrained_model()?.to_timm());
                let (combined, _) = (self.pretrained_model()?).load_timm(
                    &weights,
                    Default::default(),
                    &self.training_device,
                )?;
                self.predict(&combined, loader, features, what, log)
            }
        }
    }

    /// The pre-trained model's outputs on the images of `loader`, computed once per loader.
    fn source_scores(&self, loader: &Loader, what: &str, log: &mut RunLog<'_>) -> Result<Scores, TrainError> {
        let key = std::ptr::from_ref(loader) as usize;
        if let Some(scores) = self.source_scores.borrow().get(&key) {
            return Ok(scores.clone());
        }
        let what = format!("{what}, source model for the ensemble");
        let scores = predict(&self.pretrained_model()?, loader, false, self.device, &what, log)?;
        self.source_scores.borrow_mut().insert(key, scores.clone());
        Ok(scores)
    }

    /// Whether the outputs of `epoch` keep their features on disk.
    fn keeps_features(&self, epoch: i64) -> bool {
        match self.config.eval.save.features {
            FeatureEpochs::All => true,
            FeatureEpochs::None => false,
            FeatureEpochs::Ends => {
                epoch == PRETRAINED_EPOCH || epoch == self.config.fine_tuning.epochs as i64 - 1
            }
        }
    }

    /// Whether `epoch` still has an output to save or a row of `metrics.csv` to record.
    fn needs_evaluation(&self, epoch: i64) -> Result<bool, TrainError> {
        let recorded = report::read_metrics(self.dir)?
            .iter()
            .any(|row| row.epoch == epoch);
        let saved =
            (self.config.eval.splits.iter()).all(|split| self.dir.output(split.name(), epoch).exists());
        Ok(!(recorded && saved))
    }

    /// The model before any training, on the autodiff device: `[model]`'s weights, or its seeded
    /// initialisation.
    fn initial_model(&self) -> Result<Model, TrainError> {
        self.training_device.seed(self.config.seed);
        let (_, model, _) = self.model_settings.build("model", &self.training_device)?;
        Ok(model.with_precision(self.config.precision))
    }

    /// The pre-trained model, built anew from files: the source stage's result when there is one, else
    /// [`Self::initial_model`]; with `[model]`'s head (a cosine head takes the linear head's weights).
    fn pretrained_model(&self) -> Result<Model, TrainError> {
        let model = self.initial_model()?;
        let model = if self.config.source.is_none() {
            model
        } else {
            let weights = ftcal_models::TensorMap::read(&self.dir.source_model())?;
            model
                .load_timm(&weights, Default::default(), &self.training_device)?
                .0
        };
        Ok(model.with_cosine_scale(self.model_settings.head_scale()))
    }

    /// Evaluates `model` as the model of `epoch`: records the epoch's row of `metrics.csv`, then saves the
    /// outputs of every configured split (features as `eval.save` says). What a killed process already
    /// did is not done again: the row is recorded first, so that the metrics of features that are not
    /// kept are never lost; saved outputs are read back rather than computed again.
    fn evaluate(&self, model: &Model, epoch: i64, log: &mut RunLog<'_>) -> Result<(), TrainError> {
        let recorded = report::read_metrics(self.dir)?
            .iter()
            .any(|row| row.epoch == epoch);
        let mut outputs = Vec::new();
        for &split in &self.config.eval.splits {
            let path = self.dir.output(split.name(), epoch);
            let saved = path.exists();
            let scores = match (saved, recorded) {
                (true, true) => continue,
                (true, false) => read_scores(&path)?,
                (false, _) => {
                    let what = if epoch == PRETRAINED_EPOCH {
                        format!("{}, pre-trained", split.name())
                    } else {
                        format!("{}, epoch {epoch}", split.name())
                    };
                    let loader = self.eval_loader(split);
                    let features = self.config.eval.ncm;
                    if epoch == PRETRAINED_EPOCH {
                        self.predict(model, loader, features, &what, log)?
                    } else {
                        self.predict_fine_tuned(model, loader, features, &what, log)?
                    }
                }
            };
            outputs.push((split, saved, scores));
        }
        if !recorded {
            let scores_of = |wanted: EvalSplit| {
                outputs
                    .iter()
                    .find(|(split, _, _)| *split == wanted)
                    .map(|(_, _, scores)| scores)
            };
            let test = scores_of(EvalSplit::Test).expect("eval.splits holds test");
            let history = report::training_records(self.dir)?;
            let mut row = report::epoch_metrics(
                epoch,
                test,
                scores_of(EvalSplit::Train),
                &self.data.split,
                &history,
            )?;
            row.head = HeadNorms::of(model, &self.data.split);
            report::record_epoch(self.dir, row)?;
        }
        for (split, saved, scores) in outputs {
            if saved {
                continue;
            }
            let scores = if self.keeps_features(epoch) {
                scores
            } else {
                scores.without_features()
            };
            let path = self.dir.output(split.name(), epoch);
            create_parent(&path)?;
            write_scores_as(&path, &scores, self.config.eval.save.dtype)?;
        }
        Ok(())
    }

    /// A training stage of `settings` on `set`, whose fine-tuning and absent classes `classes` names,
    /// checkpointed in `home` (the run directory, or a shared one); a stage that distils gets the
    /// pre-trained model, built anew.
    #[allow(clippy::too_many_arguments)]
    fn job<'b>(
        &'b self,
        home: &RunDir,
        name: &str,
        settings: &'b TrainingSettings,
        (set, classes): (ImageSet, StageClasses),
        seed: u64,
        stop: Option<usize>,
    ) -> Result<StageJob<'b>, TrainError> {
        let source_model = match settings.active_distillation() {
            Some(_) => Some(self.pretrained_model()?),
            None => None,
        };
        Ok(StageJob {
            name: name.to_string(),
            settings,
            train_set: set,
            pipeline: &self.train_pipeline,
            loader: &self.config.data.loader,
            seed,
            checkpoint: Checkpoint::new(home.checkpoint(name)),
            model_config: &self.model_config,
            stop_after_epoch: stop,
            fine_tuning_classes: classes.fine_tuning,
            absent_classes: classes.absent,
            source_model,
        })
    }

    /// Runs a training stage: the trained model, or where its loss diverged.
    fn train(
        &self,
        job: StageJob<'_>,
        model: Model,
        log: &mut RunLog<'_>,
        after_epoch: &mut dyn FnMut(usize, &Model, &mut RunLog<'_>) -> Result<(), TrainError>,
    ) -> Result<Result<Model, Divergence>, TrainError> {
        let stage = job.name.clone();
        Ok(
            match train_stage(job, model, &self.training_device, log, after_epoch)? {
                StageEnd::Finished(model) => Ok(*model),
                StageEnd::Diverged(at) => Err(Divergence {
                    stage,
                    epoch: at.epoch,
                    iteration: at.iteration,
                }),
            },
        )
    }

    /// The stages in order, each skipped when its results are saved, then the report.
    fn stages(&self, options: &RunOptions, log: &mut RunLog<'_>) -> Result<RunOutcome, TrainError> {
        if let Some(divergence) = self.training_stages(options, log)? {
            let report = report::write_diverged(self.dir, divergence)?;
            log.message(&format!("summary written to {}", self.dir.summary().display()));
            return Ok(RunOutcome::Diverged(report));
        }
        let report = report::evaluate_run(self.dir.root(), EpochRows::Recorded)?;
        log.message(&format!("report written to {}", self.dir.report().display()));
        Ok(RunOutcome::Completed(report))
    }

    /// The stages before the report; where a loss diverged, if it did.
    fn training_stages(
        &self,
        options: &RunOptions,
        log: &mut RunLog<'_>,
    ) -> Result<Option<Divergence>, TrainError> {
        if let Some(divergence) = self.source_stage(log)? {
            return Ok(Some(divergence));
        }
        self.pretrained_stage(log)?;
        if let Some(divergence) = self.fine_tuning_stage(options, log)? {
            return Ok(Some(divergence));
        }
        self.pcv_stage(log)
    }

    /// Trains the source model on every class of `data.source` (when `[source]` is set). With shared
    /// stages, the model is trained (and checkpointed) in the shared directory of its key unless another
    /// run has already, and linked into this run's.
    fn source_stage(&self, log: &mut RunLog<'_>) -> Result<Option<Divergence>, TrainError> {
        let (Some(settings), Some(source)) = (&self.config.source, &self.data.source) else {
            return Ok(None);
        };
        let path = self.dir.source_model();
        if path.exists() {
            return self.finished(self.dir, "source");
        }
        let shared = self.shared_home()?;
        let home = shared.as_ref().map_or(self.dir, |shared| &shared.dir);
        let trained = home.source_model();
        if shared.is_some() && trained.exists() {
            link_or_copy(&trained, &path)?;
            log.message(&format!("source: the shared source model {}", trained.display()));
            return self.finished(self.dir, "source");
        }
        log.message(&format!(
            "source: training on {} ({} images, all {} classes){}",
            source.name,
            source.train.len(),
            source.num_classes,
            match &shared {
                Some(shared) => format!(", shared in {}", shared.dir.root().display()),
                None => String::new(),
            }
        ));
        let all_classes = StageClasses {
            fine_tuning: (0..self.model_config.classes()).collect(),
            absent: Vec::new(),
        };
        let job = self.job(
            home,
            "source",
            settings,
            (source.train.clone(), all_classes),
            self.config.seed,
            None,
        )?;
        let no_evaluation = &mut |_: usize, _: &Model, _: &mut RunLog<'_>| Ok(());
        let model = match self.train(job, self.initial_model()?, log, no_evaluation)? {
            Ok(model) => model,
            Err(divergence) => return Ok(Some(divergence)),
        };
        create_parent(&trained)?;
        model.save(&self.model_config, &trained)?;
        if shared.is_some() {
            self.finished(home, "source")?;
            link_or_copy(&trained, &path)?;
        }
        if let Some(loader) = &self.eval_loaders.source_test {
            let scores = predict(&model, loader, false, self.device, "source test", log)?;
            // Over every class: the source dataset shares the target's class space.
            let accuracy = RankedScores::new(scores.logits(), scores.labels(), &self.data.split, 1)
                .accuracy(0.0, 1)
                .y_y;
            log.message(&format!(
                "source model: {:.2}% top-1 on {} test ({} images); saved to {}",
                accuracy.percent().unwrap_or(0.0),
                source.name,
                scores.len(),
                trained.display()
            ));
        }
        self.finished(self.dir, "source")
    }

    /// The shared directory of this run's source-stage key, locked, when stages are shared.
    fn shared_home(&self) -> Result<Option<SharedHome>, TrainError> {
        self.shared_stages
            .as_ref()
            .map(|shared| shared.home(self.config))
            .transpose()
    }

    /// A stage whose result is saved (a model, or a PCV fold's outputs) keeps only its `state.json`: its
    /// last model and optimizer state are never needed again. Done again when a rerun finds the result,
    /// in case a kill came between.
    fn finished(&self, home: &RunDir, stage: &str) -> Result<Option<Divergence>, TrainError> {
        Checkpoint::new(home.checkpoint(stage)).release()?;
        Ok(None)
    }

    /// Evaluates the pre-trained model (epoch −1). With shared stages, outputs another run saved are
    /// linked in rather than computed, and those computed here are shared.
    fn pretrained_stage(&self, log: &mut RunLog<'_>) -> Result<(), TrainError> {
        if !self.needs_evaluation(PRETRAINED_EPOCH)? {
            return Ok(());
        }
        let shared = self.shared_home()?;
        let mut shared_outputs = Vec::new();
        if let Some(shared) = &shared {
            for &split in &self.config.eval.splits {
                let from = shared.pretrained_output(self.config, split)?;
                let to = self.dir.output(split.name(), PRETRAINED_EPOCH);
                if from.exists() && !to.exists() {
                    link_or_copy(&from, &to)?;
                    log.message(&format!(
                        "pre-trained outputs on {}: the shared {}",
                        split.name(),
                        from.display()
                    ));
                }
                shared_outputs.push((to, from));
            }
        }
        self.evaluate(&self.pretrained_model()?, PRETRAINED_EPOCH, log)?;
        for (own, shared) in shared_outputs {
            link_or_copy(&own, &shared)?;
        }
        Ok(())
    }

    /// Fine-tunes the pre-trained model on S, evaluating every `eval.every` epochs and after the last.
    fn fine_tuning_stage(
        &self,
        options: &RunOptions,
        log: &mut RunLog<'_>,
    ) -> Result<Option<Divergence>, TrainError> {
        let path = self.dir.fine_tuned_model();
        if path.exists() {
            return self.finished(self.dir, "fine_tuning");
        }
        let settings = &self.config.fine_tuning;
        let parts = settings.holistic_transfer_parts();
        log.message(&format!(
            "fine-tuning (method {}{}) on {} images of S for {} epochs",
            config_name(&settings.method),
            if parts.is_empty() {
                String::new()
            } else {
                format!(": {}, {}", parts.join(" + "), crate::holistic::LABEL)
            },
            self.data.fine_tuning_train.len(),
            settings.epochs
        ));
        let job = self.job(
            self.dir,
            "fine_tuning",
            settings,
            (
                self.data.fine_tuning_train.clone(),
                StageClasses {
                    fine_tuning: self.data.split.fine_tuning().to_vec(),
                    absent: self.data.split.absent().to_vec(),
                },
            ),
            self.config.seed,
            options.stop_after_epoch,
        )?;
        let every = self.config.eval.every;
        let last = settings.epochs - 1;
        let mut after_epoch = |epoch: usize, model: &Model, log: &mut RunLog<'_>| {
            let epoch = epoch as i64;
            if ((epoch + 1) % every as i64 == 0 || epoch == last as i64) && self.needs_evaluation(epoch)? {
                self.evaluate(model, epoch, log)?;
            }
            Ok(())
        };
        let model = match self.train(job, self.pretrained_model()?, log, &mut after_epoch)? {
            Ok(model) => model,
            Err(divergence) => return Ok(Some(divergence)),
        };
        create_parent(&path)?;
        model.save(&self.model_config, &path)?;
        log.message(&format!("fine-tuned model saved to {}", path.display()));
        self.finished(self.dir, "fine_tuning")
    }

    /// PCV: K fine-tunings of the pre-trained model on random halves of S, each saving its outputs on
    /// S's training images.
    fn pcv_stage(&self, log: &mut RunLog<'_>) -> Result<Option<Divergence>, TrainError> {
        let folds = self.pcv_folds()?;
        let fold_settings = TrainingSettings {
            epochs: (self.config.eval.pcv_epochs).unwrap_or(self.config.fine_tuning.epochs),
            ..self.config.fine_tuning.clone()
        };
        let count = folds.len();
        for (fold, fold_split, set) in folds {
            let output = self.dir.pcv_output(fold);
            let name = format!("pcv-{fold}");
            if output.exists() {
                self.finished(self.dir, &name)?;
                continue;
            }
            create_parent(&output)?;
            write_json(&self.dir.pcv_split(fold), &fold_split)?;
            log.message(&format!(
                "PCV fold {}/{count}: fine-tuning on {:?}, pseudo-absent {:?}",
                fold + 1,
                fold_split.pseudo_fine_tuning,
                fold_split.pseudo_absent
            ));
            // Each fold's batches differ from the main run's and from the other folds'.
            let fold_seed = self.config.seed ^ (0x7063_7600 + fold as u64);
            let mut absent = self.data.split.absent().to_vec();
            absent.extend(&fold_split.pseudo_absent);
            absent.sort_unstable();
            let classes = StageClasses {
                fine_tuning: fold_split.pseudo_fine_tuning.clone(),
                absent,
            };
            let job = self.job(self.dir, &name, &fold_settings, (set, classes), fold_seed, None)?;
            let no_evaluation = &mut |_: usize, _: &Model, _: &mut RunLog<'_>| Ok(());
            let model = match self.train(job, self.pretrained_model()?, log, no_evaluation)? {
                Ok(model) => model,
                Err(divergence) => return Ok(Some(divergence)),
            };
            // PCV's choice of γ reads the logits only.
            let scores = self.predict_fine_tuned(
                &model,
                &self.eval_loaders.fine_tuning_train,
                false,
                &format!("PCV fold {fold}, S train"),
                log,
            )?;
            write_scores_as(&output, &scores, self.config.eval.save.dtype)?;
            self.finished(self.dir, &name)?;
        }
        Ok(None)
    }
}
