//! Choosing γ, the one scalar added to every absent-class logit: ALG, PCV's selection rule, and applying it.
//!
//! The oracle γ\* is [`SeenUnseenCurve::oracle`]: it reads the test curve, so it is an upper bound, never a
//! method.

use crate::EvalError;
use crate::classes::{ClassSplit, Group};
use crate::curve::{CurvePoint, SeenUnseenCurve};
use crate::ranking::Accuracy;
use crate::scores::{Matrix, Scores};

/// ALG, the average logit gap:
/// `γ = mean_i mean_{c ∈ S, c ≠ y_i} z_c(x_i) − mean_i mean_{c ∈ U} z_c(x_i)`, over the samples of S.
///
/// Samples whose label is not in S are skipped, so `scores` may be a whole training split. Run it on
/// training data: computing it on the test split (as the reference code does) leaks test labels.
pub fn alg_gamma(scores: &Scores, split: &ClassSplit) -> Result<f64, EvalError> {
    let num_fine_tuning = split.fine_tuning().len();
    if split.absent().is_empty() {
        return Err(EvalError::Undefined(
            "ALG needs absent classes: U is empty, so there is nothing to calibrate".into(),
        ));
    }
    if num_fine_tuning < 2 {
        return Err(EvalError::Undefined(
            "ALG needs at least two fine-tuning classes: with one, no class c ≠ y is left in S".into(),
        ));
    }
    split.check_columns(scores)?;
    let groups = split.groups();
    let (mut fine_tuning_sum, mut absent_sum, mut samples) = (0.0f64, 0.0f64, 0usize);
    for (row, &label) in scores.logits().iter_rows().zip(scores.labels()) {
        if groups[label as usize] != Group::FineTuning {
            continue;
        }
        let (mut row_fine_tuning, mut row_absent) = (0.0f64, 0.0f64);
        for (&z, &group) in row.iter().zip(groups) {
            match group {
                Group::FineTuning => row_fine_tuning += f64::from(z),
                Group::Absent => row_absent += f64::from(z),
                Group::Outside => {}
            }
        }
        row_fine_tuning -= f64::from(row[label as usize]);
        fine_tuning_sum += row_fine_tuning / (num_fine_tuning - 1) as f64;
        absent_sum += row_absent / split.absent().len() as f64;
        samples += 1;
    }
    if samples == 0 {
        return Err(EvalError::Undefined(format!(
            "{}: no sample has a fine-tuning-class (S) label, so ALG has nothing to average",
            scores.origin()
        )));
    }
    Ok((fine_tuning_sum - absent_sum) / samples as f64)
}

/// Adds `gamma` to every absent-class logit: the whole of post-hoc calibration.
pub fn apply_gamma(logits: &Matrix<f32>, split: &ClassSplit, gamma: f64) -> Matrix<f32> {
    let mut calibrated = logits.clone();
    let cols = calibrated.cols();
    if cols == 0 {
        return calibrated;
    }
    for row in calibrated.as_mut_slice().chunks_exact_mut(cols) {
        for &class in split.absent() {
            row[class] = (f64::from(row[class]) + gamma) as f32;
        }
    }
    calibrated
}

/// One PCV fold: the curve of a model fine-tuned on the pseudo-fine-tuning half of S, traced on the
/// training samples of S with U = the pseudo-absent half (plus the real U), and the pre-trained model's
/// accuracy on the pseudo-absent samples (Acc_{U/Y} at γ = 0, same samples).
#[derive(Clone, Copy, Debug)]
pub struct PcvFold<'a> {
    /// The fold's seen–unseen curve.
    pub curve: &'a SeenUnseenCurve,
    /// The pre-trained model's Acc_{U/Y} on the fold's pseudo-absent samples.
    pub pretrained_absent: Accuracy,
}

/// The γ one PCV fold chose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PcvFoldChoice {
    /// The chosen point of the fold's curve.
    pub point: CurvePoint,
    /// False when no γ reached the pre-trained pseudo-absent accuracy; the point is then the one with the
    /// best pseudo-absent accuracy.
    pub constraint_met: bool,
}

/// PCV's γ: the mean of the folds' choices, with each fold's choice.
#[derive(Clone, Debug, PartialEq)]
pub struct PcvChoice {
    /// γ_PCV, the mean over folds.
    pub gamma: f64,
    /// Each fold's choice, in the order given.
    pub folds: Vec<PcvFoldChoice>,
}

/// PCV's selection rule: in each fold, the γ with the best overall accuracy among those whose pseudo-absent
/// accuracy is at least the pre-trained model's; γ_PCV is the mean over folds.
pub fn pcv_gamma(folds: &[PcvFold<'_>]) -> Result<PcvChoice, EvalError> {
    if folds.is_empty() {
        return Err(EvalError::Undefined("PCV needs at least one fold".into()));
    }
    let mut choices = Vec::with_capacity(folds.len());
    for (index, fold) in folds.iter().enumerate() {
        let threshold = fold.pretrained_absent;
        if threshold.total == 0 {
            return Err(EvalError::Undefined(format!(
                "PCV fold {index}: the pre-trained model was measured on no pseudo-absent sample"
            )));
        }
        // Exact rational comparison: correct/total ≥ threshold.correct/threshold.total.
        let meets = |p: &CurvePoint| p.u_y.correct * threshold.total >= threshold.correct * p.u_y.total;
        let choice = match fold.curve.best_point(meets, |p| p.y_y.correct) {
            Some(point) => PcvFoldChoice {
                point: *point,
                constraint_met: true,
            },
            None => PcvFoldChoice {
                point: *fold
                    .curve
                    .best_point(|_| true, |p| p.u_y.correct)
                    .expect("a curve always has at least one point"),
                constraint_met: false,
            },
        };
        if choice.point.u_y.total == 0 {
            return Err(EvalError::Undefined(format!(
                "PCV fold {index}: the curve has no pseudo-absent sample"
            )));
        }
        choices.push(choice);
    }
    let gamma = choices.iter().map(|c| c.point.gamma).sum::<f64>() / choices.len() as f64;
    Ok(PcvChoice {
        gamma,
        folds: choices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranking::RankedScores;

    fn scores(values: &[f32], cols: usize, labels: &[i64]) -> Scores {
        let logits = Matrix::new(labels.len(), cols, values.to_vec()).unwrap();
        Scores::new("test", logits, labels, None).unwrap()
    }

    #[test]
    fn alg_matches_a_hand_computation() {
        // S = {0, 1, 2}, U = {3}.
        // Row 0, label 0: mean over S \ {0} = (2 + 4) / 2 = 3; mean over U = 1.
        // Row 1, label 2: mean over S \ {2} = (0 + 6) / 2 = 3; mean over U = −1.
        // Row 2, label 3 (U): skipped.
        // γ = mean(3, 3) − mean(1, −1) = 3.
        let s = scores(
            &[9.0, 2.0, 4.0, 1.0, 0.0, 6.0, 8.0, -1.0, 5.0, 5.0, 5.0, 5.0],
            4,
            &[0, 2, 3],
        );
        let split = ClassSplit::from_absent(4, &[3]).unwrap();
        assert_eq!(alg_gamma(&s, &split).unwrap(), 3.0);
    }

    #[test]
    fn alg_ignores_outside_classes() {
        // S = {0, 1}, U = {2}, class 3 outside. Row, label 0: S \ {0} = {1}: 4; U: 1; γ = 3.
        let s = scores(&[7.0, 4.0, 1.0, 100.0], 4, &[0]);
        let split = ClassSplit::new(4, &[0, 1], &[2]).unwrap();
        assert_eq!(alg_gamma(&s, &split).unwrap(), 3.0);
    }

    #[test]
    fn alg_is_undefined_without_samples_of_s_with_one_class_in_s_or_without_u() {
        let s = scores(&[0.0, 1.0, 2.0], 3, &[2]);
        let message = alg_gamma(&s, &ClassSplit::from_absent(3, &[2]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(message.contains("no sample has a fine-tuning-class"), "{message}");
        let message = alg_gamma(&s, &ClassSplit::from_absent(3, &[1, 2]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(message.contains("at least two fine-tuning classes"), "{message}");
        let message = alg_gamma(&s, &ClassSplit::from_absent(3, &[]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(message.contains("U is empty"), "{message}");
    }

    #[test]
    fn applying_gamma_shifts_only_absent_columns() {
        let logits = Matrix::new(2, 3, vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let split = ClassSplit::from_absent(3, &[1]).unwrap();
        let calibrated = apply_gamma(&logits, &split, 0.5);
        assert_eq!(calibrated.as_slice(), &[1.0, 2.5, 3.0, 4.0, 5.5, 6.0]);
    }

    fn fold_curve(values: &[f32], cols: usize, labels: &[u32], absent: &[usize]) -> SeenUnseenCurve {
        let matrix = Matrix::new(labels.len(), cols, values.to_vec()).unwrap();
        let split = ClassSplit::from_absent(cols, absent).unwrap();
        SeenUnseenCurve::new(&RankedScores::new(&matrix, labels, &split, 1))
    }

    #[test]
    fn pcv_picks_the_best_overall_accuracy_that_keeps_the_pseudo_absent_accuracy() {
        // Class 0 plays pseudo-S, class 1 pseudo-U. Gaps: S samples 1 and 3, U samples 2 and 4 (see curve.rs).
        // Intervals (Y/Y, U/Y): (−∞,1) 2/4, 0/2; (1,2) 1/4, 0/2; (2,3) 2/4, 1/2; (3,4) 1/4, 1/2; (4,∞) 2/4, 2/2.
        let curve = fold_curve(&[1.0, 0.0, 3.0, 0.0, 2.0, 0.0, 4.0, 0.0], 2, &[0, 0, 1, 1], &[1]);
        // Pre-trained pseudo-absent accuracy 1/2: allowed are (2,3), (3,4), (4,∞); best Y/Y 2/4 at γ 2.5 and 5.
        let fold = PcvFold {
            curve: &curve,
            pretrained_absent: Accuracy { correct: 1, total: 2 },
        };
        let choice = pcv_gamma(&[fold]).unwrap();
        assert_eq!(choice.gamma, 2.5);
        assert!(choice.folds[0].constraint_met);
        // Requiring 2/2 leaves only (4,∞), γ = 5; two folds average to 3.75.
        let strict = PcvFold {
            curve: &curve,
            pretrained_absent: Accuracy { correct: 2, total: 2 },
        };
        assert_eq!(pcv_gamma(&[fold, strict]).unwrap().gamma, 3.75);
    }

    #[test]
    fn pcv_falls_back_to_the_best_pseudo_absent_accuracy_and_says_so() {
        // S = {0}, U = {1, 2}. The S sample has gap 2; the U sample (label 1) loses to class 2 inside U,
        // so no γ makes it right and the pre-trained 1/1 is out of reach.
        let curve = fold_curve(&[2.0, 0.0, 0.0, 1.0, 0.0, 0.5], 3, &[0, 1], &[1, 2]);
        let fold = PcvFold {
            curve: &curve,
            pretrained_absent: Accuracy { correct: 1, total: 1 },
        };
        let choice = pcv_gamma(&[fold]).unwrap();
        assert!(!choice.folds[0].constraint_met);
        assert_eq!(choice.folds[0].point.u_y, Accuracy { correct: 0, total: 1 });
        assert_eq!(
            choice.gamma, 1.0,
            "every point ties at 0/1; γ = 1 (below the gap 2) is nearest 0"
        );
    }

    #[test]
    fn pcv_needs_folds() {
        assert!(pcv_gamma(&[]).is_err());
    }
}
