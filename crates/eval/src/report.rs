//! One model's full evaluation, its calibration, and the `summary.json` shape they are reported in.

use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::classes::ClassSplit;
use crate::curve::SeenUnseenCurve;
use crate::gamma::alg_gamma;
use crate::ncm::NcmProbe;
use crate::pcv::{MeasuredFold, pcv_choice};
use crate::ranking::{AccuracyTable, RankedScores};
use crate::scores::Scores;

/// The k of the `acc_top5` tables.
pub const TOP5: usize = 5;

/// Acc_{X/Z} in percent under the paper's names; an absent key means "no sample to measure it on".
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyPercent {
    /// Acc_{Y/Y}, overall.
    #[serde(rename = "Y/Y", default, skip_serializing_if = "Option::is_none")]
    pub y_y: Option<f64>,
    /// Acc_{S/Y}.
    #[serde(rename = "S/Y", default, skip_serializing_if = "Option::is_none")]
    pub s_y: Option<f64>,
    /// Acc_{U/Y}.
    #[serde(rename = "U/Y", default, skip_serializing_if = "Option::is_none")]
    pub u_y: Option<f64>,
    /// Acc_{S/S}.
    #[serde(rename = "S/S", default, skip_serializing_if = "Option::is_none")]
    pub s_s: Option<f64>,
    /// Acc_{U/U}.
    #[serde(rename = "U/U", default, skip_serializing_if = "Option::is_none")]
    pub u_u: Option<f64>,
}

impl From<AccuracyTable> for AccuracyPercent {
    fn from(table: AccuracyTable) -> Self {
        AccuracyPercent {
            y_y: table.y_y.percent(),
            s_y: table.s_y.percent(),
            u_y: table.u_y.percent(),
            s_s: table.s_s.percent(),
            u_u: table.u_u.percent(),
        }
    }
}

/// A model's metrics at γ = 0 (the `M` of `summary.json`, docs/design.md §summary.json).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMetrics {
    /// Top-1 accuracies.
    pub acc: AccuracyPercent,
    /// Top-5 accuracies.
    pub acc_top5: AccuracyPercent,
    /// Top-1 accuracies of the NCM probe on the penultimate features, when features were saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncm: Option<AccuracyPercent>,
    /// Area under the seen–unseen curve, in [0, 1], when the test split has samples of both S and U.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ausuc: Option<f64>,
}

/// A model's accuracies after adding γ to the absent-class logits (the `C` of `summary.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedMetrics {
    /// The γ applied.
    pub gamma: f64,
    /// Top-1 accuracies at γ.
    pub acc: AccuracyPercent,
    /// Top-5 accuracies at γ.
    pub acc_top5: AccuracyPercent,
}

/// The calibrations that were run; an absent key means "not run".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibrations {
    /// γ by the average logit gap on the fine-tuning training data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<CalibratedMetrics>,
    /// γ by pseudo cross-validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcv: Option<CalibratedMetrics>,
    /// The oracle γ\*, best Acc_{Y/Y} on the test curve: an upper bound, not a method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle: Option<CalibratedMetrics>,
}

/// How a run ended (`summary.json`'s `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every stage ran.
    Completed,
    /// A training loss became NaN or infinite; `diverged` says where.
    Diverged,
}

/// Where a run's training loss stopped being finite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Divergence {
    /// The training stage: `source`, `fine_tuning` or `pcv-<k>`.
    pub stage: String,
    /// 0-based epoch.
    pub epoch: usize,
    /// 1-based iteration within the epoch.
    pub iteration: usize,
}

/// How a run fine-tuned: the config's `fine_tuning.method` and the Holistic Transfer parts it ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FineTuningMethod {
    /// `full`, `frozen_classifier`, `linear_probe` or `holistic_transfer`.
    pub name: String,
    /// `frozen_classifier`, `lolsgd`, `distillation`, `rank_regularization`, `ensemble_logits`,
    /// `ensemble_weights`: those the run used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holistic_transfer_parts: Vec<String>,
    /// `HT-style (ftcal)` when a part of Holistic Transfer ran (none is a confirmed reproduction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `summary.json`: `{"pretrained": M, "finetuned": M, "calibrated": {"alg": C, "pcv": C, "oracle": C}}`,
/// with a run's `status` (and `diverged`, where it stopped) and `method` when it comes from `ftcal run`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// How the run ended; absent for a run still in progress and for `ftcal calibrate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    /// How the run fine-tuned; absent for `ftcal calibrate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<FineTuningMethod>,
    /// Where the loss became NaN or infinite, when `status` is `diverged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<Divergence>,
    /// The pre-trained model (epoch −1), when evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<ModelMetrics>,
    /// The fine-tuned model, when evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetuned: Option<ModelMetrics>,
    /// Calibrations of the fine-tuned model.
    #[serde(default)]
    pub calibrated: Calibrations,
}

/// Everything computed from one model's outputs on one evaluated split.
#[derive(Clone, Debug)]
pub struct ModelEvaluation {
    ranked: RankedScores,
    curve: SeenUnseenCurve,
    metrics: ModelMetrics,
    ncm_classes_without_samples: Vec<usize>,
}

impl ModelEvaluation {
    /// Ranks `scores` under `split`, traces the seen–unseen curve, and, when `ncm_reference` and `scores`
    /// both carry features, runs the NCM probe with class means from `ncm_reference`.
    pub fn new(
        scores: &Scores,
        split: &ClassSplit,
        ncm_reference: Option<&Scores>,
    ) -> Result<Self, EvalError> {
        split.check_columns(scores)?;
        let ranked = RankedScores::new(scores.logits(), scores.labels(), split, TOP5);
        let curve = SeenUnseenCurve::new(&ranked);
        let mut ncm_classes_without_samples = Vec::new();
        let ncm = match (ncm_reference, scores.features()) {
            (Some(reference), Some(features)) => {
                split.check_columns(reference)?;
                let Some(reference_features) = reference.features() else {
                    return Err(EvalError::Incompatible {
                        message: format!(
                            "{}: the NCM probe needs `features` in its reference set",
                            reference.origin()
                        ),
                    });
                };
                let probe = NcmProbe::fit(reference_features, reference.labels(), split.num_classes());
                ncm_classes_without_samples = probe.classes_without_samples().to_vec();
                let cosine = probe.scores(features, scores.origin())?;
                let ranked_ncm = RankedScores::new(&cosine, scores.labels(), split, 1);
                Some(ranked_ncm.accuracy(0.0, 1).into())
            }
            _ => None,
        };
        let metrics = ModelMetrics {
            acc: ranked.accuracy(0.0, 1).into(),
            acc_top5: ranked.accuracy(0.0, TOP5).into(),
            ncm,
            ausuc: curve.ausuc(),
        };
        Ok(ModelEvaluation {
            ranked,
            curve,
            metrics,
            ncm_classes_without_samples,
        })
    }

    /// The metrics at γ = 0.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// The exact seen–unseen curve.
    pub fn curve(&self) -> &SeenUnseenCurve {
        &self.curve
    }

    /// The per-sample rankings, for accuracies at any γ.
    pub fn ranked(&self) -> &RankedScores {
        &self.ranked
    }

    /// Classes the NCM reference set had no sample of (they are never predicted by the probe).
    pub fn ncm_classes_without_samples(&self) -> &[usize] {
        &self.ncm_classes_without_samples
    }

    /// Accuracies after adding `gamma` to the absent-class logits.
    pub fn calibrated(&self, gamma: f64) -> CalibratedMetrics {
        CalibratedMetrics {
            gamma,
            acc: self.ranked.accuracy(gamma, 1).into(),
            acc_top5: self.ranked.accuracy(gamma, TOP5).into(),
        }
    }

    /// Calibrated at the oracle γ\* of this split's curve.
    pub fn oracle(&self) -> CalibratedMetrics {
        self.calibrated(self.curve.oracle().gamma)
    }
}

/// A fine-tuned model evaluated on test, calibrated by ALG (training data) and the oracle (test curve).
#[derive(Clone, Debug)]
pub struct CalibrationReport {
    /// The test-split evaluation at γ = 0.
    pub test: ModelEvaluation,
    /// Test accuracies at γ_ALG, computed on the training samples of S.
    pub alg: CalibratedMetrics,
    /// Test accuracies at γ_PCV, when PCV folds were measured ([`CalibrationReport::with_pcv`]).
    pub pcv: Option<CalibratedMetrics>,
    /// Test accuracies at the oracle γ\*.
    pub oracle: CalibratedMetrics,
}

impl CalibrationReport {
    /// Adds test accuracies at γ_PCV of `folds`, each measured on the training samples of S.
    pub fn with_pcv(mut self, folds: &[MeasuredFold]) -> Result<Self, EvalError> {
        let choice = pcv_choice(folds)?;
        self.pcv = Some(self.test.calibrated(choice.gamma));
        Ok(self)
    }

    /// The report in `summary.json`'s shape (the model is the fine-tuned one; nothing pre-trained).
    pub fn summary(&self) -> Summary {
        Summary {
            status: None,
            method: None,
            diverged: None,
            pretrained: None,
            finetuned: Some(self.test.metrics().clone()),
            calibrated: Calibrations {
                alg: Some(self.alg.clone()),
                pcv: self.pcv.clone(),
                oracle: Some(self.oracle.clone()),
            },
        }
    }
}

/// Post-hoc calibration of saved outputs: metrics on `test`, γ by ALG on `train`, the oracle γ\* on `test`,
/// and the NCM probe with class means from `train` when both carry features.
pub fn calibrate(train: &Scores, test: &Scores, split: &ClassSplit) -> Result<CalibrationReport, EvalError> {
    if train.num_classes() != test.num_classes() {
        return Err(EvalError::Incompatible {
            message: format!(
                "{} has {} classes but {} has {}; both must come from the same head",
                train.origin(),
                train.num_classes(),
                test.origin(),
                test.num_classes()
            ),
        });
    }
    let ncm_reference = train.features().is_some().then_some(train);
    let evaluation = ModelEvaluation::new(test, split, ncm_reference)?;
    let alg = evaluation.calibrated(alg_gamma(train, split)?);
    let oracle = evaluation.oracle();
    Ok(CalibrationReport {
        test: evaluation,
        alg,
        pcv: None,
        oracle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::Matrix;

    fn scores(values: &[f32], cols: usize, labels: &[i64], features: Option<&[f32]>) -> Scores {
        let logits = Matrix::new(labels.len(), cols, values.to_vec()).unwrap();
        let features =
            features.map(|f| Matrix::new(labels.len(), f.len() / labels.len(), f.to_vec()).unwrap());
        Scores::new("s", logits, labels, features).unwrap()
    }

    #[test]
    fn summary_json_has_the_design_shape_and_omits_what_is_undefined() {
        // S = {0, 1}, U = {2}. Train: two S samples. Test: one S sample, one U sample.
        let train = scores(&[4.0, 1.0, 0.0, 1.0, 4.0, 0.0], 3, &[0, 1], None);
        let test = scores(&[3.0, 0.0, 1.0, 2.0, 0.0, 1.5], 3, &[0, 2], None);
        let split = ClassSplit::from_absent(3, &[2]).unwrap();
        let report = calibrate(&train, &test, &split).unwrap();
        // ALG: mean over S \ {y} is 1 in both rows, mean over U is 0: γ = 1.
        assert_eq!(report.alg.gamma, 1.0);
        let json = serde_json::to_value(report.summary()).unwrap();
        assert_eq!(json["finetuned"]["acc"]["S/Y"], 100.0);
        assert_eq!(json["finetuned"]["acc"]["U/Y"], 0.0);
        assert_eq!(json["calibrated"]["alg"]["acc"]["U/Y"], 100.0, "1.5 + 1 beats 2");
        assert!(json.get("pretrained").is_none(), "not run: absent, not null");
        assert!(json["finetuned"].get("ncm").is_none(), "no features: no NCM");
        assert!(json["calibrated"].get("pcv").is_none());
        let back: Summary = serde_json::from_value(json).unwrap();
        assert_eq!(back, report.summary());
    }

    #[test]
    fn ncm_runs_when_train_and_test_carry_features() {
        let train = scores(&[0.0; 6], 3, &[0, 2], Some(&[1.0, 0.0, 0.0, 1.0]));
        let test = scores(&[0.0; 6], 3, &[0, 2], Some(&[2.0, 0.1, 0.1, 3.0]));
        let split = ClassSplit::from_absent(3, &[2]).unwrap();
        let report = calibrate(&train, &test, &split).unwrap();
        let ncm = report.test.metrics().ncm.unwrap();
        assert_eq!((ncm.y_y, ncm.u_y), (Some(100.0), Some(100.0)));
        assert_eq!(report.test.ncm_classes_without_samples(), &[1]);
    }

    #[test]
    fn train_and_test_must_share_the_class_count() {
        let train = scores(&[0.0; 4], 2, &[0, 1], None);
        let test = scores(&[0.0; 3], 3, &[0], None);
        let split = ClassSplit::from_absent(3, &[2]).unwrap();
        let message = calibrate(&train, &test, &split).unwrap_err().to_string();
        assert_eq!(
            message,
            "s has 2 classes but s has 3; both must come from the same head"
        );
    }
}
