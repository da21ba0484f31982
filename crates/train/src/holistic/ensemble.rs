//! The fine-tuned model combined with the source model at evaluation, HT-style: by their logits,
//! α · z_ft + (1 − α) · z_src, or by their weights (WiSE-FT, Wortsman et al. 2022), α · θ_ft +
//! (1 − α) · θ_src, BatchNorm's running statistics included. The combined model's outputs are what a run
//! saves, so every metric and every calibration sees them.

use ftcal_eval::{Matrix, Scores};
use ftcal_models::TensorMap;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// How the two models are combined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnsembleKind {
    /// A weighted sum of the two models' logits (two forward passes per image).
    #[default]
    Logits,
    /// One model whose every tensor is the weighted sum of the two models' (WiSE-FT).
    Weights,
}

/// `[fine_tuning.ensemble]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleSettings {
    /// Whether evaluation combines the models (default true once the table is written).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `"logits"` (default) or `"weights"`.
    #[serde(default)]
    pub kind: EnsembleKind,
    /// α, the fine-tuned model's share (suggested 0.5).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

fn yes() -> bool {
    true
}
fn default_alpha() -> f64 {
    0.5
}

impl Default for EnsembleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            kind: EnsembleKind::default(),
            alpha: default_alpha(),
        }
    }
}

impl EnsembleSettings {
    /// Checks the values; errors name `key.<field>`.
    pub fn validate(&self, key: &str) -> Result<(), TrainError> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(TrainError::config(
                format!("{key}.alpha"),
                format!("must be in [0, 1], not {}", self.alpha),
            ));
        }
        Ok(())
    }

    /// α · `fine_tuned` + (1 − α) · `source`, row by row: the logits combined, the labels and the
    /// fine-tuned model's features kept (the NCM probe then measures the fine-tuned backbone).
    pub fn combine_logits(&self, fine_tuned: Scores, source: &Scores) -> Result<Scores, TrainError> {
        let (fine_tuned_logits, source_logits) = (fine_tuned.logits(), source.logits());
        let shape = (fine_tuned_logits.rows(), fine_tuned_logits.cols());
        assert_eq!(
            shape,
            (source_logits.rows(), source_logits.cols()),
            "both models are evaluated on the same images"
        );
        let alpha = self.alpha;
        let values = (fine_tuned_logits.as_slice().iter())
            .zip(source_logits.as_slice())
            .map(|(&tuned, &pretrained)| {
                (alpha * f64::from(tuned) + (1.0 - alpha) * f64::from(pretrained)) as f32
            })
            .collect();
        let logits = Matrix::new(shape.0, shape.1, values).expect("same shape");
        let labels: Vec<i64> = fine_tuned
            .labels()
            .iter()
            .map(|&label| i64::from(label))
            .collect();
        Ok(Scores::new(
            fine_tuned.origin(),
            logits,
            &labels,
            fine_tuned.features().cloned(),
        )?)
    }

    /// α · `fine_tuned` + (1 − α) · `source`, tensor by tensor (timm-named maps of one architecture).
    pub fn combine_weights(&self, fine_tuned: &TensorMap, source: &TensorMap) -> TensorMap {
        super::weighted_sum(&[(self.alpha, fine_tuned), (1.0 - self.alpha, source)])
    }
}
