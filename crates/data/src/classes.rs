//! `[data.classes]`: which classes are fine-tuning classes S and which are absent classes U.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use ftcal_eval::ClassSplit;

use crate::DataError;
use crate::presets::{ClassPreset, class_preset};

/// The fine-tuning classes: a list, or a count drawn at random with `seed`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum FineTuningClasses {
    /// This many classes, drawn uniformly with `seed`; every other class is absent.
    Count(usize),
    /// These classes.
    List(Vec<usize>),
}

/// The class split in a config: a preset, explicit lists, or a random draw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassesConfig {
    /// A preset of `datasets/class-orders.toml`, e.g. `office_home.source_art`, `imagenet_r`.
    pub preset: Option<String>,
    /// S: a list of classes, or a number of classes drawn with `seed`.
    pub fine_tuning: Option<FineTuningClasses>,
    /// U: a list of classes (default: every class not in S).
    pub absent: Option<Vec<usize>>,
    /// Seed of the random draw of S (default 0).
    pub seed: Option<u64>,
    /// Predict among S ∪ U only (ImageNet-R's 200-class evaluation); by default every class of the
    /// space competes, as in the reference code.
    #[serde(default)]
    pub exclude_outside: bool,
}

impl ClassesConfig {
    /// The preset this config names, if any.
    pub fn preset(&self, key: &str) -> Result<Option<ClassPreset>, DataError> {
        self.preset
            .as_deref()
            .map(|name| class_preset(name, &format!("{key}.preset")))
            .transpose()
    }

    /// Resolves S and U in a space of `num_classes` classes; `key` is the config table (`data.classes`).
    pub fn resolve(&self, num_classes: usize, key: &str) -> Result<ClassSplit, DataError> {
        let wrap = |field: &str| {
            let key = format!("{key}.{field}");
            move |error: ftcal_eval::EvalError| DataError::config(key.clone(), error.to_string())
        };
        let split = if let Some(preset) = self.preset(key)? {
            if self.fine_tuning.is_some() || self.absent.is_some() || self.seed.is_some() {
                return Err(DataError::config(
                    format!("{key}.preset"),
                    "a preset fixes S and U; remove fine_tuning, absent and seed, or remove the preset",
                ));
            }
            if preset.num_classes != num_classes {
                return Err(DataError::config(
                    format!("{key}.preset"),
                    format!(
                        "preset {} has {} classes but the dataset has {num_classes}",
                        preset.name, preset.num_classes
                    ),
                ));
            }
            ClassSplit::new(num_classes, &preset.fine_tuning, &preset.absent).map_err(wrap("preset"))?
        } else {
            match (&self.fine_tuning, &self.absent) {
                (Some(FineTuningClasses::Count(count)), absent) => {
                    if absent.is_some() {
                        return Err(DataError::config(
                            format!("{key}.absent"),
                            "with a random S (fine_tuning = N), U is every other class; remove absent",
                        ));
                    }
                    if *count == 0 || *count > num_classes {
                        return Err(DataError::config(
                            format!("{key}.fine_tuning"),
                            format!(
                                "{count} fine-tuning classes of {num_classes}: S needs 1 to {num_classes} classes"
                            ),
                        ));
                    }
                    let mut classes: Vec<usize> = (0..num_classes).collect();
                    classes.shuffle(&mut ChaCha8Rng::seed_from_u64(self.seed.unwrap_or(0)));
                    ClassSplit::new(num_classes, &classes[..*count], &classes[*count..])
                        .map_err(wrap("fine_tuning"))?
                }
                (Some(FineTuningClasses::List(fine_tuning)), Some(absent)) => {
                    ClassSplit::new(num_classes, fine_tuning, absent).map_err(wrap("fine_tuning"))?
                }
                (Some(FineTuningClasses::List(fine_tuning)), None) => {
                    let in_s = membership(num_classes, fine_tuning);
                    let absent: Vec<usize> = (0..num_classes).filter(|c| !in_s[*c]).collect();
                    ClassSplit::new(num_classes, fine_tuning, &absent).map_err(wrap("fine_tuning"))?
                }
                (None, Some(absent)) => {
                    ClassSplit::from_absent(num_classes, absent).map_err(wrap("absent"))?
                }
                (None, None) => {
                    return Err(DataError::config(
                        key,
                        "no class split: set preset, fine_tuning (a list or a count) or absent",
                    ));
                }
            }
        };
        if self.seed.is_some() && !matches!(self.fine_tuning, Some(FineTuningClasses::Count(_))) {
            return Err(DataError::config(
                format!("{key}.seed"),
                "seed only applies to a random S (fine_tuning = N); remove it",
            ));
        }
        Ok(if self.exclude_outside {
            split.exclude_outside()
        } else {
            split
        })
    }
}

fn membership(num_classes: usize, classes: &[usize]) -> Vec<bool> {
    let mut member = vec![false; num_classes];
    for class in classes {
        if let Some(flag) = member.get_mut(*class) {
            *flag = true;
        }
    }
    member
}
