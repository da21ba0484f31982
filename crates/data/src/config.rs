//! `[data]` of a run config: the source and target datasets, the class split, transforms and loader.

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::classes::{ClassSplit, ClassesConfig};
use crate::dataset::{Dataset, ImageSet, ProblemKind};
use crate::loader::LoaderSettings;
use crate::sources::DatasetConfig;
use crate::transforms::{Pipeline, TransformSpec};

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The source dataset (all classes), for a source model trained by ftcal; optional.
    pub source: Option<DatasetConfig>,
    /// The target dataset: fine-tuned on its training split restricted to S, tested on every class.
    pub target: DatasetConfig,
    /// S and U.
    pub classes: ClassesConfig,
    /// Training and evaluation pipelines.
    #[serde(default)]
    pub transforms: TransformsConfig,
    /// Worker threads, prefetching, caching, corrupt images.
    #[serde(default)]
    pub loader: LoaderSettings,
}

/// `[data.transforms]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformsConfig {
    /// Training pipeline: a preset name or a list of steps (default `paper_train`).
    #[serde(default = "default_train_transform")]
    pub train: TransformSpec,
    /// Evaluation pipeline (default `paper_eval`).
    #[serde(default = "default_eval_transform")]
    pub eval: TransformSpec,
}

impl Default for TransformsConfig {
    fn default() -> Self {
        Self {
            train: default_train_transform(),
            eval: default_eval_transform(),
        }
    }
}

fn default_train_transform() -> TransformSpec {
    TransformSpec::Preset("paper_train".into())
}
fn default_eval_transform() -> TransformSpec {
    TransformSpec::Preset("paper_eval".into())
}

impl TransformsConfig {
    /// The two pipelines, validated; `key` is the config table (`data.transforms`).
    pub fn pipelines(&self, key: &str) -> Result<(Pipeline, Pipeline), DataError> {
        let train = Pipeline::from_spec(&self.train, &format!("{key}.train"))?;
        let eval = Pipeline::from_spec(&self.eval, &format!("{key}.eval"))?;
        if train.output_size() != eval.output_size() {
            return Err(DataError::config(
                key,
                format!(
                    "train produces {:?} images but eval produces {:?}; a model needs one input size",
                    train.output_size(),
                    eval.output_size()
                ),
            ));
        }
        Ok((train, eval))
    }
}

/// The data of one partial-class setting, listed and validated.
#[derive(Debug, Clone)]
pub struct PartialClassData {
    /// The source dataset with all its classes, if configured.
    pub source: Option<Dataset>,
    /// The target dataset (train and test with every class).
    pub target: Dataset,
    /// S and U in the target's class space.
    pub split: ClassSplit,
    /// The target's training split restricted to S: what fine-tuning sees.
    pub fine_tuning_train: ImageSet,
}

impl DataConfig {
    /// Lists every configured dataset and resolves the class split, keeping listing problems in the
    /// datasets for the caller to report or turn into errors (see [`PartialClassData::first_error`]).
    pub fn open(&self, key: &str) -> Result<PartialClassData, DataError> {
        self.transforms.pipelines(&format!("{key}.transforms"))?;
        let classes_key = format!("{key}.classes");
        let preset = self.classes.preset(&classes_key)?;
        let preset_classes = preset.as_ref().map(|preset| preset.num_classes);
        let target = self.target.open(&format!("{key}.target"), preset_classes)?;
        let split = self.classes.resolve(target.num_classes, &classes_key)?;
        let source = match &self.source {
            Some(config) => {
                let source = config.open(&format!("{key}.source"), Some(target.num_classes))?;
                if source.num_classes != target.num_classes {
                    return Err(DataError::config(
                        format!("{key}.source"),
                        format!(
                            "the source dataset has {} classes and the target {}; they must share one class space",
                            source.num_classes, target.num_classes
                        ),
                    ));
                }
                Some(source)
            }
            None => None,
        };
        let fine_tuning_train = target
            .train
            .restricted_to(split.fine_tuning(), format!("{} train (S only)", target.name));
        Ok(PartialClassData {
            source,
            target,
            split,
            fine_tuning_train,
        })
    }
}

impl PartialClassData {
    /// The first listing problem that stops training, if any; with `skip_unreadable`, missing and corrupt
    /// files are left out (and counted) instead.
    pub fn first_error(&self, skip_unreadable: bool) -> Option<DataError> {
        self.source
            .iter()
            .chain(std::iter::once(&self.target))
            .flat_map(|dataset| dataset.problems.iter())
            .find(|problem| {
                problem.kind.is_fatal()
                    && !(skip_unreadable
                        && matches!(problem.kind, ProblemKind::MissingFile | ProblemKind::CorruptImage))
            })
            .map(|problem| problem.to_error())
    }
}
