//! Pseudo cross-validation, the protocol around PCV's selection rule ([`crate::pcv_gamma`]): each fold
//! splits S at random into a pseudo-fine-tuning half and a pseudo-absent half; a model fine-tuned on the
//! first half is judged on the training samples of S alone, the pseudo-absent half playing U. Only S's data
//! is used (the released code measures on the real U, which leaks).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::classes::ClassSplit;
use crate::curve::SeenUnseenCurve;
use crate::gamma::{PcvChoice, PcvFold, pcv_gamma};
use crate::ranking::RankedScores;
use crate::scores::Scores;

/// One fold's split of S.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcvFoldSplit {
    /// The fold's seed.
    pub seed: u64,
    /// The half of S the fold's model is fine-tuned on.
    pub pseudo_fine_tuning: Vec<usize>,
    /// The other half: absent for the fold's model, present in S's training data.
    pub pseudo_absent: Vec<usize>,
}

impl PcvFoldSplit {
    /// A random half of S (rounded down) becomes pseudo-absent; `seed` fixes which.
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

    /// A fold of given halves (as another framework's PCV run chose them); the pseudo-absent classes must
    /// be fine-tuning classes of `split`, and the rest of S is the pseudo-fine-tuning half.
    pub fn with_pseudo_absent(split: &ClassSplit, pseudo_absent: &[usize]) -> Result<Self, EvalError> {
        if let Some(class) = pseudo_absent.iter().find(|c| !split.fine_tuning().contains(c)) {
            return Err(EvalError::ClassSplit(format!(
                "pseudo-absent class {class} is not a fine-tuning class: a PCV fold splits S"
            )));
        }
        let mut pseudo_absent = pseudo_absent.to_vec();
        pseudo_absent.sort_unstable();
        pseudo_absent.dedup();
        let pseudo_fine_tuning: Vec<usize> = (split.fine_tuning().iter())
            .filter(|c| !pseudo_absent.contains(c))
            .copied()
            .collect();
        if pseudo_absent.is_empty() || pseudo_fine_tuning.is_empty() {
            return Err(EvalError::ClassSplit(
                "a PCV fold needs classes of S on both sides: pseudo-absent and pseudo-fine-tuning".into(),
            ));
        }
        Ok(Self {
            seed: 0,
            pseudo_fine_tuning,
            pseudo_absent,
        })
    }

    /// The fold's class split: the pseudo-fine-tuning half is S; the pseudo-absent half joins the real U
    /// (so that they compete as absent classes); outside classes as in `split`.
    pub fn classes(&self, split: &ClassSplit) -> Result<ClassSplit, EvalError> {
        let mut absent = self.pseudo_absent.clone();
        absent.extend_from_slice(split.absent());
        absent.sort_unstable();
        let classes = ClassSplit::new(split.num_classes(), &self.pseudo_fine_tuning, &absent)?;
        Ok(if split.outside_compete() {
            classes
        } else {
            classes.exclude_outside()
        })
    }
}

/// One fold measured: its model's seen–unseen curve on the training samples of S, and the pre-trained
/// model's accuracy on the pseudo-absent samples among them (the constraint of the selection rule).
#[derive(Debug, Clone)]
pub struct MeasuredFold {
    /// The fold's split of S.
    pub split: PcvFoldSplit,
    /// The fold model's curve.
    pub curve: SeenUnseenCurve,
    /// The pre-trained model's Acc_{U/Y} on the pseudo-absent samples, at γ = 0.
    pub pretrained_absent: crate::ranking::Accuracy,
}

impl MeasuredFold {
    /// Measures a fold from its model's scores and the pre-trained model's on the training split; rows
    /// whose label is not in S are left out of both, so whole training splits may be given.
    pub fn new(
        fold: PcvFoldSplit,
        fold_scores: &Scores,
        pretrained_train: &Scores,
        split: &ClassSplit,
    ) -> Result<Self, EvalError> {
        let classes = fold.classes(split)?;
        let of_s = |scores: &Scores| scores.with_labels_in(split.fine_tuning());
        let (fold_s, pretrained_s) = (of_s(fold_scores)?, of_s(pretrained_train)?);
        classes.check_columns(&fold_s)?;
        classes.check_columns(&pretrained_s)?;
        let curve = SeenUnseenCurve::new(&RankedScores::new(fold_s.logits(), fold_s.labels(), &classes, 1));
        let pretrained_absent = RankedScores::new(pretrained_s.logits(), pretrained_s.labels(), &classes, 1)
            .accuracy(0.0, 1)
            .u_y;
        Ok(Self {
            split: fold,
            curve,
            pretrained_absent,
        })
    }
}

/// γ_PCV of measured folds: each fold's choice by PCV's selection rule, and their mean.
pub fn pcv_choice(folds: &[MeasuredFold]) -> Result<PcvChoice, EvalError> {
    let folds: Vec<PcvFold<'_>> = folds
        .iter()
        .map(|fold| PcvFold {
            curve: &fold.curve,
            pretrained_absent: fold.pretrained_absent,
        })
        .collect();
    pcv_gamma(&folds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_fold_splits_s_into_two_halves() {
        let fine_tuning = [1, 3, 4, 7, 9];
        let fold = PcvFoldSplit::draw(&fine_tuning, 11);
        assert_eq!(fold.pseudo_absent.len(), 2);
        assert_eq!(fold.pseudo_fine_tuning.len(), 3);
        let mut all = fold.pseudo_absent.clone();
        all.extend(&fold.pseudo_fine_tuning);
        all.sort_unstable();
        assert_eq!(all, fine_tuning);
        assert_eq!(
            PcvFoldSplit::draw(&fine_tuning, 11),
            fold,
            "the seed fixes the halves"
        );
    }

    #[test]
    fn the_pseudo_absent_half_joins_u() {
        let split = ClassSplit::new(6, &[0, 1, 2, 3], &[4, 5]).unwrap();
        let fold = PcvFoldSplit::with_pseudo_absent(&split, &[3, 1]).unwrap();
        assert_eq!(fold.pseudo_fine_tuning, [0, 2]);
        let classes = fold.classes(&split).unwrap();
        assert_eq!(classes.fine_tuning(), [0, 2]);
        assert_eq!(classes.absent(), [1, 3, 4, 5]);
        let error = PcvFoldSplit::with_pseudo_absent(&split, &[4])
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a fine-tuning class"), "{error}");
        assert!(PcvFoldSplit::with_pseudo_absent(&split, &[0, 1, 2, 3]).is_err());
    }
}
