//! A regulariser against the collapse of the features' rank, HT-style ("disentangling domain gradients
//! from classification gradients" may not mean this at all: it is off unless asked for). Fine-tuning on
//! S alone pulls the penultimate features into the few directions S needs; rewarding the nuclear norm of
//! the batch's L2-normalised features keeps them spread:
//!
//! L_rank = −λ_r · ‖F̂‖_* / B.
//!
//! The nuclear norm's gradient is U Vᵀ of F̂'s SVD, computed (by burn-linalg, on the host) from detached
//! factors: the surrogate Σ (U Vᵀ ⊙ F̂) has the norm's value and that gradient.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// `[fine_tuning.rank_regularization]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankRegularizationSettings {
    /// Whether the term is added (default true once the table is written; not part of
    /// `method = "holistic_transfer"`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// λ_r (not known from HT; 0.1 keeps the term, at most λ_r in size, below the cross-entropy).
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn yes() -> bool {
    true
}
fn default_weight() -> f64 {
    0.1
}

impl Default for RankRegularizationSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: default_weight(),
        }
    }
}

impl RankRegularizationSettings {
    /// Checks the values; errors name `key.<field>`.
    pub fn validate(&self, key: &str) -> Result<(), TrainError> {
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return Err(TrainError::config(
                format!("{key}.weight"),
                format!("must be a number ≥ 0, not {}", self.weight),
            ));
        }
        Ok(())
    }

    /// The term for a batch's penultimate `features` `[B, D]`.
    pub fn loss(&self, features: Tensor<2>) -> Tensor<1> {
        let [rows, _] = features.dims();
        normalized_nuclear_norm(features).mul_scalar(-self.weight / rows.max(1) as f64)
    }
}

/// The QR sweeps burn-linalg's SVD may take per singular value before it gives up (LAPACK's default
/// budget is 6 per value; the batches here are small and well conditioned after normalisation).
const SVD_SWEEPS: usize = 30;

/// ‖F̂‖_* of the rows of `features` scaled to unit L2 norm (torch's `F.normalize`, eps 1e-12), with the
/// nuclear norm's gradient.
pub fn normalized_nuclear_norm(features: Tensor<2>) -> Tensor<1> {
    let norms = features.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    let normalized = features / norms;
    let (u, _, v_t) = burn::linalg::svd::<2, 1>(normalized.clone().detach().inner(), SVD_SWEEPS);
    let direction = Tensor::from_inner(u.matmul(v_t));
    (direction * normalized).sum()
}
