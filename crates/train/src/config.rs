//! The run config: one TOML file from the source model to the report (the tables of `configs/`).

use serde::{Deserialize, Serialize};

/// Which burn backend runs the tensors; the binary must have been built with it (cli features).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's `flex`, the CPU backend (the default).
    #[default]
    Flex,
    /// burn's `wgpu` (Vulkan, Metal, DX12; also Mesa's software Vulkan).
    Wgpu,
    /// burn's `cuda` (NVIDIA).
    Cuda,
}

use std::path::PathBuf;

use ftcal_data::DataConfig;
use ftcal_models::{ModelSettings, Precision};

use crate::TrainError;
use crate::holistic::distillation::DistillationSettings;
use crate::holistic::ensemble::EnsembleSettings;
use crate::holistic::lolsgd::LolsgdSettings;
use crate::holistic::rank::RankRegularizationSettings;
use crate::optim::OptimizerSettings;

/// A config enum's name as written in the config (`"sgd"`, `"linear_probe"`), for messages.
pub(crate) fn config_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A whole run: `ftcal run CONFIG.toml`. Every table but `[source]` and `[eval]` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The run's name: its directory under `output_dir`.
    pub name: String,
    /// Seeds data order, augmentation, initialisation and the PCV splits.
    #[serde(default)]
    pub seed: u64,
    /// `"flex"` (CPU, the default), `"wgpu"` or `"cuda"`.
    #[serde(default)]
    pub backend: Backend,
    /// `"f32"` (the default) or `"bf16"`: the dtype of the model's products, float32 master weights and
    /// optimizer state either way (PyTorch's autocast).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// Where run directories go (default `runs`); `--out` names the run directory itself.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// `[model]`: the architecture and its pre-trained weights.
    pub model: ModelSettings,
    /// `[data]`: source and target datasets, the class split, transforms, loader.
    pub data: DataConfig,
    /// `[source]`: train the source model on `data.source` with all classes, starting from `[model]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TrainingSettings>,
    /// `[fine_tuning]`: fine-tuning on the target's training data of S.
    pub fine_tuning: TrainingSettings,
    /// `[eval]`: what is evaluated, when, and how it is calibrated.
    #[serde(default)]
    pub eval: EvalSettings,
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// The fine-tuning methods of the paper's appendix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Every parameter trains (the paper's subject).
    #[default]
    Full,
    /// The head keeps its pre-trained weights; the backbone trains.
    FrozenClassifier,
    /// Only the head trains; the backbone, BatchNorm statistics included, stays as it was.
    LinearProbe,
    /// Holistic Transfer, HT-style (ftcal): the frozen classifier with LOLSGD and absent-class
    /// distillation enabled, each with its table's defaults unless the table says otherwise.
    HolisticTransfer,
}

impl Method {
    /// Whether the head keeps its pre-trained weights.
    pub fn freezes_head(self) -> bool {
        matches!(self, Method::FrozenClassifier | Method::HolisticTransfer)
    }
}

/// The learning-rate schedules, stepped every iteration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Cosine decay from the base rate to `min_lr` over all iterations (the paper's).
    #[default]
    Cosine,
    /// The base rate throughout.
    Constant,
}

/// `[fine_tuning.schedule]`: the learning rate per iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// `"cosine"` or `"constant"`.
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Iterations of linear warm-up before the schedule (default 0, the paper's): torch's
    /// `LinearLR(start_factor = 1/(w+1), total_iters = w)`, so that no step has a rate of 0.
    #[serde(default)]
    pub warmup_iterations: usize,
    /// The rate cosine decay ends at, as a fraction of the base rate (default 0).
    #[serde(default)]
    pub min_lr_fraction: f64,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Cosine,
            warmup_iterations: 0,
            min_lr_fraction: 0.0,
        }
    }
}

impl ScheduleSettings {
    /// The multiplier of the base rate at `iteration` (0-based) of `total`: torch's
    /// `SequentialLR([LinearLR(1/(w+1), total_iters = w), CosineAnnealingLR(T_max = total − w)],
    /// milestones = [w])` stepped every iteration, for `w` warm-up iterations.
    pub fn factor(&self, iteration: usize, total: usize) -> f64 {
        if iteration < self.warmup_iterations {
            return (iteration + 1) as f64 / (self.warmup_iterations + 1) as f64;
        }
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Cosine => {
                let span = total.saturating_sub(self.warmup_iterations).max(1) as f64;
                let t = (iteration - self.warmup_iterations) as f64;
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * t / span).cos());
                self.min_lr_fraction + (1.0 - self.min_lr_fraction) * cosine
            }
        }
    }
}

/// `[fine_tuning]` and `[source]`: one training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSettings {
    /// `"full"`, `"frozen_classifier"`, `"linear_probe"` or `"holistic_transfer"` (fine-tuning only; the
    /// source stage is full).
    #[serde(default)]
    pub method: Method,
    /// Epochs.
    pub epochs: usize,
    /// Iterations per epoch (the paper: 500); default one pass over the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations_per_epoch: Option<usize>,
    /// Images per batch (shuffled, last incomplete batch dropped).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The head's learning rate.
    pub lr: f64,
    /// The backbone's learning rate as a multiple of `lr` (default 0.1 for fine-tuning, 1 for the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_lr_multiplier: Option<f64>,
    /// `[…optimizer]` (default SGD, momentum 0.9, Nesterov, no weight decay).
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerSettings,
    /// `[…schedule]`.
    #[serde(default)]
    pub schedule: ScheduleSettings,
    /// Normalise with the running statistics and never update them (the paper's "frozen BatchNorm").
    #[serde(default)]
    pub freeze_batch_norm: bool,
    /// Clip gradients to this global L2 norm, as `torch.nn.utils.clip_grad_norm_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip_norm: Option<f64>,
    /// `[fine_tuning.lolsgd]`: Holistic Transfer's leave-out local SGD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lolsgd: Option<LolsgdSettings>,
    /// `[fine_tuning.distillation]`: distillation of the source model on the absent classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distillation: Option<DistillationSettings>,
    /// `[fine_tuning.rank_regularization]`: a reward for the rank of the batch's features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_regularization: Option<RankRegularizationSettings>,
    /// `[fine_tuning.ensemble]`: evaluation combines the fine-tuned and the source model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<EnsembleSettings>,
}

fn default_batch_size() -> usize {
    64
}

fn default_optimizer() -> OptimizerSettings {
    OptimizerSettings::sgd(0.9, true, 0.0)
}

/// The training stages of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Training the source model on all classes of `data.source`.
    Source,
    /// Fine-tuning on S.
    FineTuning,
}

impl Stage {
    /// The config table.
    pub fn key(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::FineTuning => "fine_tuning",
        }
    }
}

impl TrainingSettings {
    /// The settings with defaults filled in and every value checked; errors name `stage.<key>`.
    pub fn resolve(&self, stage: Stage) -> Result<Self, TrainError> {
        let key = stage.key();
        let mut resolved = self.clone();
        if stage == Stage::Source && self.method != Method::Full {
            return Err(TrainError::config(
                format!("{key}.method"),
                "the source model is trained with every parameter; `method` is a fine-tuning option",
            ));
        }
        if self.epochs == 0 {
            return Err(TrainError::config(format!("{key}.epochs"), "must be at least 1"));
        }
        if self.iterations_per_epoch == Some(0) {
            return Err(TrainError::config(
                format!("{key}.iterations_per_epoch"),
                "must be at least 1 (leave it out for one pass over the data per epoch)",
            ));
        }
        if self.batch_size == 0 {
            return Err(TrainError::config(
                format!("{key}.batch_size"),
                "must be at least 1",
            ));
        }
        positive(self.lr, &format!("{key}.lr"))?;
        let multiplier = self.backbone_lr_multiplier.unwrap_or(match stage {
            Stage::Source => 1.0,
            Stage::FineTuning => 0.1,
        });
        if !(multiplier.is_finite() && multiplier >= 0.0) {
            return Err(TrainError::config(
                format!("{key}.backbone_lr_multiplier"),
                format!("must be a number ≥ 0, not {multiplier}"),
            ));
        }
        resolved.backbone_lr_multiplier = Some(multiplier);
        if let Some(norm) = self.grad_clip_norm {
            positive(norm, &format!("{key}.grad_clip_norm"))?;
        }
        let fraction = self.schedule.min_lr_fraction;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(TrainError::config(
                format!("{key}.schedule.min_lr_fraction"),
                format!("must be in [0, 1], not {fraction}"),
            ));
        }
        self.optimizer.validate(&format!("{key}.optimizer"))?;
        let parts = [
            ("lolsgd", self.lolsgd.is_some()),
            ("distillation", self.distillation.is_some()),
            ("rank_regularization", self.rank_regularization.is_some()),
            ("ensemble", self.ensemble.is_some()),
        ];
        if stage == Stage::Source
            && let Some((part, _)) = parts.iter().find(|(_, set)| *set)
        {
            return Err(TrainError::config(
                format!("{key}.{part}"),
                "Holistic Transfer's parts are fine-tuning options",
            ));
        }
        if self.method == Method::HolisticTransfer {
            resolved.lolsgd.get_or_insert_with(LolsgdSettings::default);
            resolved
                .distillation
                .get_or_insert_with(DistillationSettings::default);
        }
        if let Some(lolsgd) = &resolved.lolsgd {
            lolsgd.validate(&format!("{key}.lolsgd"))?;
        }
        if let Some(distillation) = &resolved.distillation {
            distillation.validate(&format!("{key}.distillation"))?;
        }
        if let Some(rank) = &resolved.rank_regularization {
            rank.validate(&format!("{key}.rank_regularization"))?;
        }
        if let Some(ensemble) = &resolved.ensemble {
            ensemble.validate(&format!("{key}.ensemble"))?;
        }
        Ok(resolved)
    }

    /// LOLSGD's settings when it runs.
    pub fn active_lolsgd(&self) -> Option<&LolsgdSettings> {
        self.lolsgd.as_ref().filter(|part| part.enabled)
    }

    /// Distillation's settings when it runs.
    pub fn active_distillation(&self) -> Option<&DistillationSettings> {
        self.distillation.as_ref().filter(|part| part.enabled)
    }

    /// The rank regulariser's settings when it runs.
    pub fn active_rank_regularization(&self) -> Option<&RankRegularizationSettings> {
        self.rank_regularization.as_ref().filter(|part| part.enabled)
    }

    /// The ensemble's settings when evaluation uses it.
    pub fn active_ensemble(&self) -> Option<&EnsembleSettings> {
        self.ensemble.as_ref().filter(|part| part.enabled)
    }

    /// The Holistic Transfer parts the stage runs, by their config names (`ensemble_logits` and
    /// `ensemble_weights` for the two kinds of ensemble). The frozen classifier counts as one under
    /// `method = "holistic_transfer"` or beside another part; alone it is the appendix's method, not HT.
    pub fn holistic_transfer_parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if self.active_lolsgd().is_some() {
            parts.push("lolsgd".into());
        }
        if self.active_distillation().is_some() {
            parts.push("distillation".into());
        }
        if self.active_rank_regularization().is_some() {
            parts.push("rank_regularization".into());
        }
        if let Some(ensemble) = self.active_ensemble() {
            parts.push(format!("ensemble_{}", config_name(&ensemble.kind)));
        }
        let frozen_part = self.method == Method::HolisticTransfer
            || (self.method == Method::FrozenClassifier && !parts.is_empty());
        if frozen_part {
            parts.insert(0, "frozen_classifier".to_string());
        }
        parts
    }

    /// The backbone's learning rate multiplier (after [`TrainingSettings::resolve`]).
    pub fn backbone_multiplier(&self) -> f64 {
        self.backbone_lr_multiplier.unwrap_or(1.0)
    }
}

fn positive(value: f64, key: &str) -> Result<(), TrainError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(TrainError::config(
            key,
            format!("must be a positive number, not {value}"),
        ))
    }
}

/// The splits of the target dataset that are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSplit {
    /// The target's training split, all classes (for ALG, PCV and the NCM class means).
    Train,
    /// The target's test split, all classes.
    Test,
}

impl EvalSplit {
    /// The folder name under `outputs/`.
    pub fn name(self) -> &'static str {
        match self {
            EvalSplit::Train => "train",
            EvalSplit::Test => "test",
        }
    }
}

/// The ways of choosing γ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// Average logit gap on the fine-tuning training data.
    Alg,
    /// Pseudo cross-validation: `pcv_folds` extra fine-tunings on random halves of S.
    Pcv,
    /// The oracle γ\* on the test curve (an upper bound, not a method).
    Oracle,
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSettings {
    /// Splits evaluated each time (default both; `test` is required, `train` for ALG, PCV and NCM).
    #[serde(default = "default_splits")]
    pub splits: Vec<EvalSplit>,
    /// Evaluate every this many epochs (the pre-trained model and the last epoch always).
    #[serde(default = "one")]
    pub every: usize,
    /// Images per evaluation batch.
    #[serde(default = "default_eval_batch_size")]
    pub batch_size: usize,
    /// Which top-k tables the report shows: 1, 5 or both (summary.json always holds both).
    #[serde(default = "default_top_k")]
    pub top_k: Vec<usize>,
    /// Save penultimate features and report the NCM probe.
    #[serde(default = "yes")]
    pub ncm: bool,
    /// How γ is chosen (default all three; PCV costs `pcv_folds` extra fine-tunings).
    #[serde(default = "default_calibration")]
    pub calibration: Vec<CalibrationMethod>,
    /// PCV folds K (the reference code: 3).
    #[serde(default = "default_pcv_folds")]
    pub pcv_folds: usize,
    /// The seed of each PCV fold's random half of S (default 0, 1, …, K − 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcv_seeds: Option<Vec<u64>>,
    /// Epochs of each PCV fine-tuning (default `fine_tuning.epochs`); the schedule spans them as it spans
    /// the main run's, so a shorter PCV budget still ends at the same final learning rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcv_epochs: Option<usize>,
    /// `[eval.save]`: what each evaluation keeps on disk.
    #[serde(default)]
    pub save: SaveSettings,
}

/// Which evaluated epochs keep their penultimate features on disk (their NCM metrics are in `metrics.csv`
/// either way: they are computed before the features are dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureEpochs {
    /// The pre-trained model and the last epoch: what the report's NCM rows need.
    #[default]
    Ends,
    /// Every evaluated epoch (`ftcal eval` can then recompute every epoch's NCM metrics).
    All,
    /// None (the report then has no NCM rows).
    None,
}

/// `[eval.save]`: the outputs kept of each evaluation. Logits and labels are always kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveSettings {
    /// `"ends"` (default), `"all"` or `"none"`.
    #[serde(default)]
    pub features: FeatureEpochs,
    /// `"float32"` (default) or `"float16"`: half the disk; every metric is computed from the rounded
    /// values, so a run and `ftcal eval` agree (the effect on the metrics: BENCHMARKS.md).
    #[serde(default)]
    pub dtype: ftcal_eval::Precision,
}

fn default_splits() -> Vec<EvalSplit> {
    vec![EvalSplit::Train, EvalSplit::Test]
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_eval_batch_size() -> usize {
    256
}
fn default_top_k() -> Vec<usize> {
    vec![1, 5]
}
fn default_calibration() -> Vec<CalibrationMethod> {
    vec![
        CalibrationMethod::Alg,
        CalibrationMethod::Pcv,
        CalibrationMethod::Oracle,
    ]
}
fn default_pcv_folds() -> usize {
    3
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            splits: default_splits(),
            every: 1,
            batch_size: default_eval_batch_size(),
            top_k: default_top_k(),
            ncm: true,
            calibration: default_calibration(),
            pcv_folds: default_pcv_folds(),
            pcv_seeds: None,
            pcv_epochs: None,
            save: SaveSettings::default(),
        }
    }
}

impl EvalSettings {
    /// The settings with defaults filled in and checked against each other.
    pub fn resolve(&self) -> Result<Self, TrainError> {
        let mut resolved = self.clone();
        resolved.splits.sort();
        resolved.splits.dedup();
        resolved.calibration.sort();
        resolved.calibration.dedup();
        if !resolved.splits.contains(&EvalSplit::Test) {
            return Err(TrainError::config(
                "eval.splits",
                "must include \"test\": every metric of the report is measured on it",
            ));
        }
        let needs_train = resolved
            .calibration
            .iter()
            .any(|m| matches!(m, CalibrationMethod::Alg | CalibrationMethod::Pcv));
        if needs_train && !resolved.splits.contains(&EvalSplit::Train) {
            return Err(TrainError::config(
                "eval.splits",
                "ALG and PCV choose γ on the training split: add \"train\", or drop them from eval.calibration",
            ));
        }
        if resolved.every == 0 {
            return Err(TrainError::config("eval.every", "must be at least 1"));
        }
        if resolved.batch_size == 0 {
            return Err(TrainError::config("eval.batch_size", "must be at least 1"));
        }
        if let Some(k) = resolved.top_k.iter().find(|k| !matches!(k, 1 | 5)) {
            return Err(TrainError::config(
                "eval.top_k",
                format!("{k} is not offered; use 1, 5 or [1, 5]"),
            ));
        }
        if resolved.calibration.contains(&CalibrationMethod::Pcv) {
            if resolved.pcv_folds == 0 {
                return Err(TrainError::config("eval.pcv_folds", "must be at least 1"));
            }
            let seeds = resolved
                .pcv_seeds
                .clone()
                .unwrap_or_else(|| (0..resolved.pcv_folds as u64).collect());
            if seeds.len() != resolved.pcv_folds {
                return Err(TrainError::config(
                    "eval.pcv_seeds",
                    format!("has {} seeds for {} folds", seeds.len(), resolved.pcv_folds),
                ));
            }
            resolved.pcv_seeds = Some(seeds);
            if resolved.pcv_epochs == Some(0) {
                return Err(TrainError::config(
                    "eval.pcv_epochs",
                    "must be at least 1 (leave it out to use fine_tuning.epochs)",
                ));
            }
        }
        Ok(resolved)
    }
}

impl RunConfig {
    /// The config with every default filled in and every value checked (what `config.toml` of a run
    /// directory holds).
    pub fn resolve(&self) -> Result<Self, TrainError> {
        let mut resolved = self.clone();
        if self.name.trim().is_empty() {
            return Err(TrainError::config("name", "must not be empty"));
        }
        resolved.source = match &self.source {
            Some(source) => {
                if self.data.source.is_none() {
                    return Err(TrainError::config(
                        "source",
                        "training a source model needs a source dataset: add [data.source]",
                    ));
                }
                Some(source.resolve(Stage::Source)?)
            }
            None => None,
        };
        resolved.fine_tuning = self.fine_tuning.resolve(Stage::FineTuning)?;
        resolved.eval = self.eval.resolve()?;
        if resolved.eval.calibration.contains(&CalibrationMethod::Pcv) {
            resolved
                .eval
                .pcv_epochs
                .get_or_insert(resolved.fine_tuning.epochs);
        }
        if resolved.eval.ncm && !resolved.eval.splits.contains(&EvalSplit::Train) {
            return Err(TrainError::config(
                "eval.ncm",
                "the NCM probe takes its class means from the training split: add \"train\" to eval.splits",
            ));
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_follows_torch_cosine_annealing_stepped_per_iteration() {
        let cosine = ScheduleSettings::default();
        // torch: lr_t = η_min + (η_0 − η_min)(1 + cos(π t / T_max)) / 2, t = steps taken before.
        assert_eq!(cosine.factor(0, 100), 1.0);
        assert!((cosine.factor(50, 100) - 0.5).abs() < 1e-12);
        assert!((cosine.factor(25, 100) - (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0).abs() < 1e-12);
        let floor = ScheduleSettings {
            min_lr_fraction: 0.1,
            ..ScheduleSettings::default()
        };
        assert!((floor.factor(100, 100) - 0.1).abs() < 1e-12);
        let constant = ScheduleSettings {
            kind: ScheduleKind::Constant,
            ..ScheduleSettings::default()
        };
        assert_eq!(constant.factor(99, 100), 1.0);
    }

    #[test]
    fn warm_up_is_torchs_linear_lr_then_the_cosine_over_the_rest() {
        let (warmup, total) = (3, 13);
        let warm = ScheduleSettings {
            warmup_iterations: warmup,
            min_lr_fraction: 0.1,
            ..ScheduleSettings::default()
        };
        // torch's LinearLR in its chainable form: each step multiplies the previous factor by
        // 1 + (end − start) / (total_iters·start + (i − 1)·(end − start)).
        let start = 1.0 / (warmup + 1) as f64;
        let mut torch = start;
        for iteration in 0..warmup {
            if iteration > 0 {
                torch *=
                    1.0 + (1.0 - start) / (warmup as f64 * start + (iteration - 1) as f64 * (1.0 - start));
            }
            assert!(
                (warm.factor(iteration, total) - torch).abs() < 1e-12,
                "iteration {iteration}"
            );
            assert!(warm.factor(iteration, total) > 0.0, "no step has a rate of 0");
        }
        // Then the schedule of a run without warm-up over the remaining iterations.
        let cosine = ScheduleSettings {
            min_lr_fraction: 0.1,
            ..ScheduleSettings::default()
        };
        for step in 0..total - warmup {
            assert_eq!(
                warm.factor(warmup + step, total),
                cosine.factor(step, total - warmup)
            );
        }
    }

    fn stage(toml: &str) -> TrainingSettings {
        toml::from_str(&format!("epochs = 1\nlr = 0.1\n{toml}")).unwrap()
    }

    #[test]
    fn holistic_transfer_is_a_preset_that_a_config_takes_apart_part_by_part() {
        let preset = stage("method = \"holistic_transfer\"")
            .resolve(Stage::FineTuning)
            .unwrap();
        assert_eq!(preset.lolsgd, Some(LolsgdSettings::default()));
        assert_eq!(preset.distillation, Some(DistillationSettings::default()));
        assert_eq!(preset.rank_regularization, None);
        assert_eq!(
            preset.holistic_transfer_parts(),
            ["frozen_classifier", "lolsgd", "distillation"]
        );
        let without_distillation = stage(
            "method = \"holistic_transfer\"\n[distillation]\nenabled = false\n[lolsgd]\ncopies = 2\n\
             [ensemble]\nkind = \"weights\"",
        )
        .resolve(Stage::FineTuning)
        .unwrap();
        assert_eq!(without_distillation.lolsgd.as_ref().unwrap().copies, 2);
        assert_eq!(
            without_distillation.holistic_transfer_parts(),
            ["frozen_classifier", "lolsgd", "ensemble_weights"]
        );
        // The frozen classifier alone is the appendix's method, not HT; beside a part of HT, it is one.
        let frozen = stage("method = \"frozen_classifier\"");
        assert!(frozen.holistic_transfer_parts().is_empty());
        let frozen_distilled = stage("method = \"frozen_classifier\"\n[distillation]");
        assert_eq!(
            frozen_distilled.holistic_transfer_parts(),
            ["frozen_classifier", "distillation"]
        );
        assert!(stage("").holistic_transfer_parts().is_empty());
    }

    #[test]
    fn holistic_transfer_settings_are_checked_by_key() {
        let error = |toml: &str, stage_of: Stage| stage(toml).resolve(stage_of).unwrap_err().to_string();
        assert!(error("[lolsgd]", Stage::Source).starts_with("source.lolsgd: "));
        assert!(
            error("[lolsgd]\nleave_out = 1.0", Stage::FineTuning)
                .starts_with("fine_tuning.lolsgd.leave_out: must be a fraction of S in [0, 1)")
        );
        assert!(error("[lolsgd]\ncopies = 0", Stage::FineTuning).starts_with("fine_tuning.lolsgd.copies: "));
        assert!(
            error("[distillation]\ntemperature = 0.0", Stage::FineTuning)
                .starts_with("fine_tuning.distillation.temperature: ")
        );
        assert!(
            error("[ensemble]\nalpha = 1.5", Stage::FineTuning).starts_with("fine_tuning.ensemble.alpha: ")
        );
        assert!(
            error("[rank_regularization]\nweight = -1.0", Stage::FineTuning)
                .starts_with("fine_tuning.rank_regularization.weight: ")
        );
        let unknown = toml::from_str::<TrainingSettings>("epochs = 1\nlr = 0.1\n[lolsgd]\ncopy = 2");
        assert!(unknown.unwrap_err().to_string().contains("unknown field `copy`"));
    }

    #[test]
    fn eval_settings_are_checked_against_each_other() {
        let no_train = EvalSettings {
            splits: vec![EvalSplit::Test],
            ..EvalSettings::default()
        };
        let error = no_train.resolve().unwrap_err().to_string();
        assert!(error.starts_with("eval.splits: ALG and PCV"), "{error}");
        let seeds = EvalSettings {
            pcv_seeds: Some(vec![1, 2]),
            ..EvalSettings::default()
        };
        assert_eq!(
            seeds.resolve().unwrap_err().to_string(),
            "eval.pcv_seeds: has 2 seeds for 3 folds"
        );
        let resolved = EvalSettings::default().resolve().unwrap();
        assert_eq!(resolved.pcv_seeds, Some(vec![0, 1, 2]));
        let no_epochs = EvalSettings {
            pcv_epochs: Some(0),
            ..EvalSettings::default()
        };
        assert!(
            no_epochs
                .resolve()
                .unwrap_err()
                .to_string()
                .starts_with("eval.pcv_epochs: must be at least 1"),
        );
        let top = EvalSettings {
            top_k: vec![3],
            ..EvalSettings::default()
        };
        assert!(
            top.resolve()
                .unwrap_err()
                .to_string()
                .contains("3 is not offered")
        );
    }
}
