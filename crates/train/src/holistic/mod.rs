//! Holistic Transfer (Tu et al., NeurIPS 2023), the baseline the calibration paper compares against, as
//! independent options of a fine-tuning stage. HT has no public code and its body could not be read
//! (docs/science.md §Holistic Transfer), so every part is "HT-style (ftcal)": what the paper's public
//! record names, with each unconfirmed choice a config key.
//!
//! - [`lolsgd`]: leave-out local SGD, `[fine_tuning.lolsgd]`;
//! - [`distillation`]: distillation of the source model on the absent classes, `[fine_tuning.distillation]`;
//! - [`rank`]: a regulariser against the collapse of the features' rank, `[fine_tuning.rank_regularization]`;
//! - [`ensemble`]: the fine-tuned model combined with the source model at evaluation, `[fine_tuning.ensemble]`.
//!
//! `method = "holistic_transfer"` is the frozen classifier with LOLSGD and absent-class distillation, each
//! still switchable by its table's `enabled`.

pub mod distillation;
pub mod ensemble;
pub mod lolsgd;
pub mod rank;

use std::collections::BTreeMap;

use ftcal_models::TensorMap;
use ftcal_models::weights::{HostData, HostTensor};

/// The label results of HT's parts carry: an implementation of the paper's text, not a reproduction.
pub const LABEL: &str = "HT-style (ftcal)";

/// `Σ weight · map` over maps with the same keys and shapes, in f64, rounded once to f32. Integer tensors
/// (BatchNorm's `num_batches_tracked`) are rounded to the nearest integer.
pub(crate) fn weighted_sum(terms: &[(f64, &TensorMap)]) -> TensorMap {
    let (_, first) = terms[0];
    let mut tensors = BTreeMap::new();
    for (key, tensor) in &first.tensors {
        let data = match &tensor.data {
            HostData::Float(values) => {
                let mut sum = vec![0f64; values.len()];
                for (weight, map) in terms {
                    let HostData::Float(other) = &map.tensors[key].data else {
                        panic!("`{key}` is a float tensor in one map and not in another");
                    };
                    for (total, value) in sum.iter_mut().zip(other) {
                        *total += weight * f64::from(*value);
                    }
                }
                HostData::Float(sum.into_iter().map(|total| total as f32).collect())
            }
            HostData::Int(values) => {
                let mut sum = vec![0f64; values.len()];
                for (weight, map) in terms {
                    let HostData::Int(other) = &map.tensors[key].data else {
                        panic!("`{key}` is an integer tensor in one map and not in another");
                    };
                    for (total, value) in sum.iter_mut().zip(other) {
                        *total += weight * *value as f64;
                    }
                }
                HostData::Int(sum.into_iter().map(|total| total.round() as i64).collect())
            }
        };
        tensors.insert(
            key.clone(),
            HostTensor {
                shape: tensor.shape.clone(),
                data,
            },
        );
    }
    TensorMap {
        tensors,
        origin: Default::default(),
    }
}
