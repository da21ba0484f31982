//! `ftcal run`: the stages of DESIGN.md's data flow, each writing into the run directory so that the
//! same command resumes where an interrupted run stopped.
//!
//! ```text
//! source (train on all classes, or load) → evaluate the pre-trained model (epoch −1)
//!   → fine-tune on S, evaluating every `eval.every` epochs → PCV folds → calibrate and report
//! ```
//!
//! Run directory: `config.toml` (resolved), `log.txt`, `classes.json` (S and U), `models/`,
//! `checkpoints/<stage>/`, `outputs/<split>/<epoch>.safetensors`, `outputs/pcv/<k>/`, then what
//! [`crate::report`] writes: `summary.json`, `metrics.csv`, `report.md` and the plots.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ftcal_data::{ClassSplit, ImageSet, PartialClassData, Pipeline};
use ftcal_eval::{Summary, write_atomic, write_scores};
use ftcal_models::{Model, ModelConfig, ModelSettings};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::checkpoint::Checkpoint;
use crate::config::{CalibrationMethod, EvalSplit, RunConfig, TrainingSettings, config_name};
use crate::outputs::{Evaluator, PRETRAINED_EPOCH, output_path, pcv_dir};
use crate::progress::{Observer, RunLog};
use crate::report::{self, Divergence, RunReport};
use crate::trainer::{StageEnd, StageJob, train_stage};

/// What `ftcal run` was asked beyond the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start over: delete the run directory's earlier contents, even a finished run.
    pub force: bool,
    /// Stop after this fine-tuning epoch (0-based) once its checkpoint is written (a test hook).
    pub stop_after_epoch: Option<usize>,
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
    /// Stopped after a fine-tuning epoch as asked.
    Stopped {
        /// The last completed epoch.
        epoch: usize,
    },
}

/// S and U as the run used them, so that `ftcal eval` needs no dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSplit {
    /// Logit columns.
    pub num_classes: usize,
    /// S.
    pub fine_tuning: Vec<usize>,
    /// U.
    pub absent: Vec<usize>,
    /// Whether classes outside S ∪ U compete in the argmax (false for ImageNet-R's 200-class protocol).
    pub outside_compete: bool,
}

impl SavedSplit {
    /// Captures a split.
    pub fn new(split: &ClassSplit) -> Self {
        Self {
            num_classes: split.num_classes(),
            fine_tuning: split.fine_tuning().to_vec(),
            absent: split.absent().to_vec(),
            outside_compete: split.outside_compete(),
        }
    }

    /// The split again.
    pub fn split(&self) -> Result<ClassSplit, TrainError> {
        let split = ClassSplit::new(self.num_classes, &self.fine_tuning, &self.absent)?;
        Ok(if self.outside_compete {
            split
        } else {
            split.exclude_outside()
        })
    }
}

/// One PCV fold's split of S, saved beside its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcvFoldSplit {
    /// The fold's seed.
    pub seed: u64,
    /// The half of S the fold's model is fine-tuned on.
    pub pseudo_fine_tuning: Vec<usize>,
    /// The other half: absent for the fold's model, present in S's training data.
    pub pseudo_absent: Vec<usize>,
}

impl PcvFoldSplit {
    /// A random half of S (rounded down) becomes pseudo-absent.
    pub fn draw(fine_tuning: &[usize], seed: u64) -> Self {
        let mut classes = fine_tuning.to_vec();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        classes.shuffle(&mut rng);
        let absent_count = classes.len() / 2;
        let mut pseudo_absent = classes[..absent_count].to_vec();
        let mut pseudo_fine_tuning = classes[absent_count..].to_vec();
        pseudo_absent.sort_unstable();
        pseudo_fine_tuning.sort_unstable();
        Self {
            seed,
            pseudo_fine_tuning,
            pseudo_absent,
        }
    }
}

/// The run directory a config writes to: `--out`, or `output_dir/name`.
pub fn run_dir(config: &RunConfig, out: Option<&Path>) -> PathBuf {
    out.map(Path::to_path_buf)
        .unwrap_or_else(|| config.output_dir.join(&config.name))
}

/// The file a run's resolved config is saved in.
pub fn config_path(run_dir: &Path) -> PathBuf {
    run_dir.join("config.toml")
}

/// The resolved config as saved in the run directory.
pub fn config_text(config: &RunConfig) -> String {
    let body = toml::to_string(config).expect("a run config serialises to TOML");
    format!("# Written by ftcal run: the config of this run with every default filled in.\n{body}")
}

fn io_error(path: &Path, error: std::io::Error) -> TrainError {
    TrainError::file(path, error.to_string())
}

/// Prepares the run directory: a new run writes its config; a rerun of the same config resumes; another
/// config in the same directory is an error unless `force`.
fn prepare_dir(config: &RunConfig, dir: &Path, force: bool) -> Result<bool, TrainError> {
    let path = config_path(dir);
    let text = config_text(config);
    if path.exists() {
        if force {
            std::fs::remove_dir_all(dir).map_err(|e| io_error(dir, e))?;
        } else {
            let saved = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
            // A run that stopped before computing anything (e.g. on a wrong dataset root) holds nothing to
            // lose: the corrected config takes its place.
            let computed = ["outputs", "checkpoints", "models"]
                .iter()
                .any(|name| dir.join(name).exists());
            if saved != text && !computed {
                write_atomic(&path, text.as_bytes())?;
                return Ok(false);
            }
            if saved != text {
                let saved_config: Result<RunConfig, _> = toml::from_str(&saved);
                // A run directory written before a key existed lacks it; resolved again, the saved config
                // takes the key's default, which is what that run did. Then it is the same run.
                if let Ok(resolved) = saved_config.as_ref().map(RunConfig::resolve)
                    && resolved.as_ref().ok() == Some(config)
                {
                    write_atomic(&path, text.as_bytes())?;
                    return Ok(true);
                }
                let detail = match saved_config {
                    Ok(saved) => first_difference(&saved, config),
                    Err(_) => "it cannot be read".to_string(),
                };
                return Err(TrainError::file(
                    &path,
                    format!(
                        "this run directory holds a run of another config ({detail}); use --force to start it over, or --out for a new directory"
                    ),
                ));
            }
            return Ok(true);
        }
    } else if dir.exists() && dir.read_dir().map_err(|e| io_error(dir, e))?.next().is_some() {
        return Err(TrainError::file(
            dir,
            "exists, is not empty and holds no ftcal run (no config.toml); choose another --out",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    write_atomic(&path, text.as_bytes())?;
    Ok(false)
}

/// The first top-level table whose values differ, for the "another config" error.
fn first_difference(saved: &RunConfig, current: &RunConfig) -> String {
    let saved = toml::Table::try_from(saved).unwrap_or_default();
    let current = toml::Table::try_from(current).unwrap_or_default();
    let keys: std::collections::BTreeSet<&String> = saved.keys().chain(current.keys()).collect();
    keys.into_iter()
        .find(|key| saved.get(*key) != current.get(*key))
        .map(|key| format!("`{key}` differs"))
        .unwrap_or_else(|| "formatting differs".to_string())
}

/// Everything the stages share.
struct Context<'a> {
    config: &'a RunConfig,
    dir: &'a Path,
    device: &'a Device,
    training_device: Device,
    data: PartialClassData,
    train_pipeline: Pipeline,
    eval_pipeline: Pipeline,
    model_settings: ModelSettings,
    model_config: ModelConfig,
}

impl Context<'_> {
    fn evaluator(&self) -> Evaluator<'_> {
        Evaluator {
            pipeline: &self.eval_pipeline,
            loader: &self.config.data.loader,
            batch_size: self.config.eval.batch_size,
            features: self.config.eval.ncm,
            device: self.device,
        }
    }

    /// The model before any training, on the autodiff device: `[model]`'s weights, or its seeded
    /// initialisation.
    fn initial_model(&self) -> Result<Model, TrainError> {
        self.training_device.seed(self.config.seed);
        let (_, model, _) = self.model_settings.build("model", &self.training_device)?;
        Ok(model)
    }

    fn source_model_path(&self) -> PathBuf {
        self.dir.join("models").join("source.safetensors")
    }

    /// The pre-trained model: the source stage's result when there is one, else [`Self::initial_model`].
    fn pretrained_model(&self) -> Result<Model, TrainError> {
        let model = self.initial_model()?;
        if self.config.source.is_none() {
            return Ok(model);
        }
        let weights = ftcal_models::TensorMap::read(&self.source_model_path())?;
        let (model, _) = model.load_timm(&weights, Default::default(), &self.training_device)?;
        Ok(model)
    }

    /// Evaluates `model` on every configured split and saves the outputs of `epoch`.
    fn evaluate(&self, model: &Model, epoch: i64, log: &mut RunLog<'_>) -> Result<(), TrainError> {
        for split in &self.config.eval.splits {
            let set = match split {
                EvalSplit::Train => &self.data.target.train,
                EvalSplit::Test => &self.data.target.test,
            };
            let label = if epoch == PRETRAINED_EPOCH {
                format!("{}, pre-trained", split.name())
            } else {
                format!("{}, epoch {epoch}", split.name())
            };
            let scores = self.evaluator().predict(model, set, &label, log)?;
            let path = output_path(self.dir, split.name(), epoch);
            create_parent(&path)?;
            write_scores(&path, &scores)?;
        }
        Ok(())
    }

    fn job<'b>(
        &'b self,
        name: &str,
        settings: &'b TrainingSettings,
        set: ImageSet,
        seed: u64,
        stop: Option<usize>,
    ) -> StageJob<'b> {
        StageJob {
            name: name.to_string(),
            settings,
            train_set: set,
            pipeline: &self.train_pipeline,
            loader: &self.config.data.loader,
            seed,
            checkpoint: Checkpoint::new(self.dir.join("checkpoints").join(name)),
            model_config: &self.model_config,
            stop_after_epoch: stop,
        }
    }
}

fn create_parent(path: &Path) -> Result<(), TrainError> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e)),
        None => Ok(()),
    }
}

/// The path of a PCV fold's split.
pub fn pcv_split_path(run_dir: &Path, fold: usize) -> PathBuf {
    pcv_dir(run_dir, fold).join("split.json")
}

/// The path of a PCV fold's outputs: its model on the target's training data of S.
pub fn pcv_output_path(run_dir: &Path, fold: usize) -> PathBuf {
    pcv_dir(run_dir, fold).join("train.safetensors")
}

/// The path of the saved class split.
pub fn classes_path(run_dir: &Path) -> PathBuf {
    run_dir.join("classes.json")
}

/// Runs, or resumes, the whole pipeline of `config` (resolved) in `dir`. `device` is the plain device of
/// the chosen backend; training runs on its autodiff twin.
pub fn run(
    config: &RunConfig,
    dir: &Path,
    device: &Device,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunOutcome, TrainError> {
    let resuming = prepare_dir(config, dir, options.force)?;
    if resuming && let Some(summary) = report::read_summary(dir)? {
        if summary.status == Some(ftcal_eval::RunStatus::Completed) {
            let mut log = RunLog::open(&dir.join("log.txt"), observer)?;
            log.message(&format!(
                "{}: already finished; use --force to run it again",
                dir.display()
            ));
            return Ok(RunOutcome::AlreadyDone(report::evaluate_run(dir)?));
        }
        if summary.status == Some(ftcal_eval::RunStatus::Diverged) {
            return Err(TrainError::file(
                dir.join("summary.json"),
                "this run diverged; change the config (e.g. a lower lr) and use --out, or --force to retry",
            ));
        }
    }
    let mut log = RunLog::open(&dir.join("log.txt"), observer)?;
    log.message(&format!(
        "{} run `{}` in {} on {}",
        if resuming { "resuming" } else { "starting" },
        config.name,
        dir.display(),
        config_name(&config.backend)
    ));

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
    if let ModelConfig::Vit(_) = model_config
        && (height != image_size || width != image_size)
    {
        return Err(TrainError::config(
            "data.transforms",
            format!(
                "the pipelines produce {height}×{width} images but the ViT takes {0}×{0}; set model.image_size or the transforms",
                model_config.image_size()
            ),
        ));
    }
    let split = data.split.clone();
    let saved_split = serde_json::to_string_pretty(&SavedSplit::new(&split)).expect("serialises");
    write_atomic(&classes_path(dir), saved_split.as_bytes())?;
    log.message(&format!(
        "target {}: {} train / {} test images; S = {:?} ({} train images), U = {:?}",
        data.target.name,
        data.target.train.len(),
        data.target.test.len(),
        split.fine_tuning(),
        data.fine_tuning_train.len(),
        split.absent()
    ));

    let context = Context {
        config,
        dir,
        device,
        training_device: device.clone().autodiff(),
        data,
        train_pipeline,
        eval_pipeline,
        model_settings,
        model_config,
    };

    // Source stage.
    if let Some(settings) = &config.source
        && !context.source_model_path().exists()
    {
        let source = context
            .data
            .source
            .as_ref()
            .expect("resolve() checked [data.source]");
        log.message(&format!(
            "source: training on {} ({} images, all {} classes)",
            source.name,
            source.train.len(),
            source.num_classes
        ));
        let job = context.job("source", settings, source.train.clone(), config.seed, None);
        match train_stage(
            job,
            context.initial_model()?,
            &context.training_device,
            &mut log,
            &mut |_, _, _| Ok(()),
        )? {
            StageEnd::Finished(model) => {
                let path = context.source_model_path();
                create_parent(&path)?;
                model.save(&context.model_config, &path)?;
                let scores = context
                    .evaluator()
                    .predict(&model, &source.test, "source test", &mut log)?;
                let correct = scores
                    .logits()
                    .iter_rows()
                    .zip(scores.labels())
                    .filter(|(row, label)| argmax(row) == **label as usize)
                    .count();
                log.message(&format!(
                    "source model: {:.2}% top-1 on {} test ({} images); saved to {}",
                    100.0 * correct as f64 / scores.len().max(1) as f64,
                    source.name,
                    scores.len(),
                    path.display()
                ));
            }
            StageEnd::Diverged(at) => return diverged(dir, "source", at, &mut log),
            StageEnd::Stopped { epoch } => return Ok(RunOutcome::Stopped { epoch }),
        }
    }

    // The pre-trained model, epoch −1.
    let pretrained = context.pretrained_model()?;
    let test_done = output_path(dir, EvalSplit::Test.name(), PRETRAINED_EPOCH).exists();
    if !test_done {
        context.evaluate(&pretrained, PRETRAINED_EPOCH, &mut log)?;
    }

    // Fine-tuning on S.
    let fine_tuned_path = dir.join("models").join("fine_tuned.safetensors");
    if !fine_tuned_path.exists() {
        let settings = &config.fine_tuning;
        log.message(&format!(
            "fine-tuning (method {}) on {} images of S for {} epochs",
            config_name(&settings.method),
            context.data.fine_tuning_train.len(),
            settings.epochs
        ));
        let job = context.job(
            "fine_tuning",
            settings,
            context.data.fine_tuning_train.clone(),
            config.seed,
            options.stop_after_epoch,
        );
        let every = config.eval.every;
        let last = settings.epochs - 1;
        let mut after_epoch = |epoch: usize, model: &Model, log: &mut RunLog<'_>| {
            if (epoch + 1).is_multiple_of(every) || epoch == last {
                context.evaluate(model, epoch as i64, log)?;
                report::write_metrics(dir)?;
            }
            Ok(())
        };
        match train_stage(
            job,
            pretrained.clone(),
            &context.training_device,
            &mut log,
            &mut after_epoch,
        )? {
            StageEnd::Finished(model) => {
                create_parent(&fine_tuned_path)?;
                model.save(&context.model_config, &fine_tuned_path)?;
                log.message(&format!(
                    "fine-tuned model saved to {}",
                    fine_tuned_path.display()
                ));
            }
            StageEnd::Diverged(at) => return diverged(dir, "fine_tuning", at, &mut log),
            StageEnd::Stopped { epoch } => return Ok(RunOutcome::Stopped { epoch }),
        }
    }

    // PCV: K fine-tunings of the pre-trained model on random halves of S.
    if config.eval.calibration.contains(&CalibrationMethod::Pcv) {
        let seeds = config.eval.pcv_seeds.clone().unwrap_or_default();
        let fold_settings = TrainingSettings {
            epochs: config.eval.pcv_epochs.unwrap_or(config.fine_tuning.epochs),
            ..config.fine_tuning.clone()
        };
        for (fold, &seed) in seeds.iter().enumerate() {
            let output = pcv_output_path(dir, fold);
            if output.exists() {
                continue;
            }
            let fold_split = PcvFoldSplit::draw(split.fine_tuning(), seed);
            if fold_split.pseudo_absent.is_empty() {
                return Err(TrainError::config(
                    "eval.calibration",
                    "PCV needs at least two fine-tuning classes to split S in halves",
                ));
            }
            create_parent(&output)?;
            let split_json = serde_json::to_string_pretty(&fold_split).expect("serialises");
            write_atomic(&pcv_split_path(dir, fold), split_json.as_bytes())?;
            let name = format!("pcv-{fold}");
            log.message(&format!(
                "PCV fold {}/{}: fine-tuning on {:?}, pseudo-absent {:?}",
                fold + 1,
                seeds.len(),
                fold_split.pseudo_fine_tuning,
                fold_split.pseudo_absent
            ));
            let set = context.data.target.train.restricted_to(
                &fold_split.pseudo_fine_tuning,
                format!("{} train (PCV fold {fold})", context.data.target.name),
            );
            // Each fold's batches differ from the main run's and from the other folds'.
            let fold_seed = config.seed ^ (0x7063_7600 + fold as u64);
            let job = context.job(&name, &fold_settings, set, fold_seed, None);
            match train_stage(
                job,
                pretrained.clone(),
                &context.training_device,
                &mut log,
                &mut |_, _, _| Ok(()),
            )? {
                StageEnd::Finished(model) => {
                    let scores = context.evaluator().predict(
                        &model,
                        &context.data.fine_tuning_train,
                        &format!("PCV fold {fold}, S train"),
                        &mut log,
                    )?;
                    write_scores(&output, &scores)?;
                }
                StageEnd::Diverged(at) => return diverged(dir, &name, at, &mut log),
                StageEnd::Stopped { epoch } => return Ok(RunOutcome::Stopped { epoch }),
            }
        }
    }

    let report = report::evaluate_run(dir)?;
    log.message(&format!("report written to {}", dir.join("report.md").display()));
    Ok(RunOutcome::Completed(report))
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |best, (i, &v)| if v > best.1 { (i, v) } else { best },
        )
        .0
}

fn diverged(
    dir: &Path,
    stage: &str,
    at: crate::trainer::Divergence,
    log: &mut RunLog<'_>,
) -> Result<RunOutcome, TrainError> {
    let divergence = Divergence {
        stage: stage.to_string(),
        epoch: at.epoch,
        iteration: at.iteration,
    };
    let report = report::write_diverged(dir, divergence)?;
    log.message(&format!(
        "summary written to {}",
        dir.join("summary.json").display()
    ));
    Ok(RunOutcome::Diverged(report))
}

/// A run's summary, for callers that only need the JSON shape.
pub fn summary_of(outcome: &RunOutcome) -> Option<&Summary> {
    match outcome {
        RunOutcome::Completed(report) | RunOutcome::AlreadyDone(report) | RunOutcome::Diverged(report) => {
            Some(&report.summary)
        }
        RunOutcome::Stopped { .. } => None,
    }
}
