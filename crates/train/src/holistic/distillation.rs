//! Distillation of the source model, HT-style: the fine-tuned model's predictions on the absent classes
//! are pulled towards the frozen source model's on the same augmented batch, so that fine-tuning on S
//! does not erase what the source knew of U (docs/science.md §Holistic Transfer, "preserving class
//! relationships"; the exact form is not public):
//!
//! L = CE(z, y) + λ · T² · KL(softmax(z_src[U] / T) ‖ softmax(z[U] / T)), averaged over the batch.

use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ftcal_models::Model;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Which logits the distillation compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistilledClasses {
    /// The absent classes U of the stage (the classes it does not fine-tune on).
    #[default]
    Absent,
    /// Every class.
    All,
}

/// `[fine_tuning.distillation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillationSettings {
    /// Whether the loss is added (default true once the table is written; `method = "holistic_transfer"`
    /// enables it without one).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The loss's weight λ (suggested 1).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// The softmax temperature T (suggested 2); the loss is scaled by T² as in Hinton et al.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// `"absent"` (default) or `"all"`.
    #[serde(default)]
    pub classes: DistilledClasses,
}

fn yes() -> bool {
    true
}
fn default_weight() -> f64 {
    1.0
}
fn default_temperature() -> f64 {
    2.0
}

impl Default for DistillationSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: default_weight(),
            temperature: default_temperature(),
            classes: DistilledClasses::default(),
        }
    }
}

impl DistillationSettings {
    /// Checks the values; errors name `key.<field>`.
    pub fn validate(&self, key: &str) -> Result<(), TrainError> {
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return Err(TrainError::config(
                format!("{key}.weight"),
                format!("must be a number ≥ 0, not {}", self.weight),
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(TrainError::config(
                format!("{key}.temperature"),
                format!("must be a positive number, not {}", self.temperature),
            ));
        }
        Ok(())
    }
}

/// T² · KL(softmax(teacher / T) ‖ softmax(student / T)), summed over classes and averaged over rows
/// (torch's `kl_div(log_softmax(student / T), log_softmax(teacher / T), log_target=True,
/// reduction="batchmean") · T²`). The teacher gets no gradient.
pub fn distillation_loss(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let [rows, _] = student.dims();
    let teacher = teacher.detach().div_scalar(temperature);
    let teacher_log = log_softmax(teacher.clone(), 1);
    let teacher_probabilities = softmax(teacher, 1);
    let student_log = log_softmax(student.div_scalar(temperature), 1);
    (teacher_probabilities * (teacher_log - student_log))
        .sum()
        .mul_scalar(temperature * temperature / rows.max(1) as f64)
}

/// The distillation term of a stage: the frozen source model and the classes it is distilled on.
pub struct Distillation {
    /// The source model on the plain device, in evaluation mode (BatchNorm uses its running statistics).
    source: Model,
    /// The distilled classes' columns, on the training device; `None` for every class.
    columns: Option<Tensor<1, Int>>,
    settings: DistillationSettings,
}

impl Distillation {
    /// Distils `source` (the pre-trained model) on the classes the settings name: the stage's
    /// `absent_classes`, or all. `device` is the training (autodiff) device.
    pub fn new(
        settings: &DistillationSettings,
        source: &Model,
        absent_classes: &[usize],
        device: &Device,
    ) -> Self {
        let columns = match settings.classes {
            DistilledClasses::All => None,
            DistilledClasses::Absent => {
                let indices: Vec<i64> = absent_classes.iter().map(|&c| c as i64).collect();
                Some(Tensor::from_data(
                    TensorData::new(indices, [absent_classes.len()]),
                    device,
                ))
            }
        };
        Self {
            source: source.valid(),
            columns,
            settings: settings.clone(),
        }
    }

    /// λ · the distillation loss of `logits`, the model's on the batch `images`; zero when the stage has
    /// no absent class to distil.
    pub fn loss(&self, logits: Tensor<2>, images: &Tensor<4>) -> Option<Tensor<1>> {
        if self.columns.as_ref().is_some_and(|c| c.dims()[0] == 0) {
            return None;
        }
        // The source runs without autodiff: no graph is kept of it.
        let source_logits = Tensor::from_inner(self.source.forward(images.clone().inner()));
        let (student, teacher) = match &self.columns {
            None => (logits, source_logits),
            Some(columns) => (
                logits.select(1, columns.clone()),
                source_logits.select(1, columns.clone()),
            ),
        };
        Some(distillation_loss(student, teacher, self.settings.temperature).mul_scalar(self.settings.weight))
    }
}
