//! Per-sample top-k of each class group: the one pass over the scores that every metric is read from.
//!
//! Adding γ to the absent-class scores shifts all of U by the same amount, so it never reorders classes
//! *within* a group. The top-k of the calibrated scores over any candidate set is therefore contained in
//! the union of the per-group top-k lists, shifted. One O(N·C) pass keeps those lists; after it, the
//! accuracy at any γ, over any candidate set, costs O(N·k).
//!
//! Tie rule, everywhere in ftcal-eval: among equal scores the lowest class index ranks first (as
//! `numpy.argmax` and a stable descending sort do).

use crate::classes::{ClassSplit, Group};
use crate::scores::Matrix;

/// The top-k scores of each class group, for every sample, with the label's own score.
#[derive(Clone, Debug)]
pub struct RankedScores {
    max_k: usize,
    labels: Vec<u32>,
    label_scores: Vec<f64>,
    label_groups: Vec<Group>,
    tops: [GroupTop; 3],
    split: ClassSplit,
}

/// The top `width` (score, class) pairs of one group for every row, best first; row-major.
#[derive(Clone, Debug)]
struct GroupTop {
    width: usize,
    scores: Vec<f64>,
    classes: Vec<u32>,
}

impl GroupTop {
    fn row(&self, row: usize) -> (&[f64], &[u32]) {
        let range = row * self.width..(row + 1) * self.width;
        (&self.scores[range.clone()], &self.classes[range])
    }
}

/// Correct predictions out of the rows considered; the percent is undefined without rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accuracy {
    /// Rows whose label is among the top-k predictions.
    pub correct: usize,
    /// Rows considered.
    pub total: usize,
}

impl Accuracy {
    /// Accuracy in percent; `None` when no row was considered.
    pub fn percent(self) -> Option<f64> {
        (self.total > 0).then(|| 100.0 * self.correct as f64 / self.total as f64)
    }

    /// Accuracy as a fraction in [0, 1]; `None` when no row was considered.
    pub fn fraction(self) -> Option<f64> {
        (self.total > 0).then(|| self.correct as f64 / self.total as f64)
    }

    fn add(&mut self, correct: bool) {
        self.total += 1;
        self.correct += usize::from(correct);
    }
}

/// Acc_{X/Z} for the five (rows X, candidates Z) pairs of the paper, at one k and one γ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccuracyTable {
    /// All samples, argmax over all classes.
    pub y_y: Accuracy,
    /// Samples of S, argmax over all classes.
    pub s_y: Accuracy,
    /// Samples of U, argmax over all classes.
    pub u_y: Accuracy,
    /// Samples of S, argmax over S only.
    pub s_s: Accuracy,
    /// Samples of U, argmax over U only.
    pub u_u: Accuracy,
}

impl RankedScores {
    /// Ranks `scores` (rows = samples, columns = classes of `split`) keeping the top `max_k` of each group.
    ///
    /// Panics if the shapes disagree or `max_k` is 0; [`crate::Scores`] and [`ClassSplit`] validate
    /// user input before it gets here.
    pub fn new<T: Copy + Into<f64>>(
        scores: &Matrix<T>,
        labels: &[u32],
        split: &ClassSplit,
        max_k: usize,
    ) -> Self {
        assert!(max_k >= 1, "top-k needs k ≥ 1");
        assert_eq!(
            scores.cols(),
            split.num_classes(),
            "score columns must match the class split"
        );
        assert_eq!(scores.rows(), labels.len(), "one label per score row");
        let rows = scores.rows();
        let groups = split.groups();
        let group_sizes = Group::ALL.map(|g| groups.iter().filter(|&&x| x == g).count());
        let widths = group_sizes.map(|size| size.min(max_k));
        let mut tops = widths.map(|width| GroupTop {
            width,
            scores: Vec::with_capacity(rows * width),
            classes: Vec::with_capacity(rows * width),
        });
        let group_index: Vec<u8> = groups.iter().map(|g| g.index() as u8).collect();
        let mut label_scores = Vec::with_capacity(rows);

        // Per-row insertion buffers; each row also tracks its fill and k-th best (the entry threshold).
        let mut best_scores: [Vec<f64>; 3] = widths.map(|w| vec![0.0; w]);
        let mut best_classes: [Vec<u32>; 3] = widths.map(|w| vec![0; w]);
        for (row_index, row) in scores.iter_rows().enumerate() {
            let mut len = [0usize; 3];
            let mut threshold = [f64::NEG_INFINITY; 3];
            for (class, (&value, &group)) in row.iter().zip(&group_index).enumerate() {
                let value: f64 = value.into();
                let g = group as usize;
                let width = widths[g];
                // A later column only enters when strictly better: ties keep the lower class index first.
                if len[g] == width && value <= threshold[g] {
                    continue;
                }
                let (values, classes) = (&mut best_scores[g], &mut best_classes[g]);
                let mut position = len[g].min(width - 1);
                if len[g] < width {
                    len[g] += 1;
                }
                while position > 0 && values[position - 1] < value {
                    values[position] = values[position - 1];
                    classes[position] = classes[position - 1];
                    position -= 1;
                }
                values[position] = value;
                classes[position] = class as u32;
                if len[g] == width {
                    threshold[g] = values[width - 1];
                }
            }
            for g in 0..3 {
                tops[g].scores.extend_from_slice(&best_scores[g]);
                tops[g].classes.extend_from_slice(&best_classes[g]);
            }
            label_scores.push(row[labels[row_index] as usize].into());
        }
        RankedScores {
            max_k,
            labels: labels.to_vec(),
            label_scores,
            label_groups: labels.iter().map(|&y| groups[y as usize]).collect(),
            tops,
            split: split.clone(),
        }
    }

    /// The class split the scores were ranked under.
    pub fn split(&self) -> &ClassSplit {
        &self.split
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The largest k these rankings can answer.
    pub fn max_k(&self) -> usize {
        self.max_k
    }

    /// The group of each sample's label.
    pub fn label_groups(&self) -> &[Group] {
        &self.label_groups
    }

    /// The five Acc_{X/Z} at top-`k` after adding `gamma` to every absent-class score.
    ///
    /// Top-k over a candidate set with fewer than k classes counts every sample of that set as correct.
    pub fn accuracy(&self, gamma: f64, k: usize) -> AccuracyTable {
        assert!(
            (1..=self.max_k).contains(&k),
            "top-{k} asked of rankings kept to top-{}",
            self.max_k
        );
        let overall = self.split.overall_candidates();
        let mut table = AccuracyTable::default();
        for row in 0..self.len() {
            let label_group = self.label_groups[row];
            let correct_overall = self.beaten_by(row, overall, gamma, k) < k;
            table.y_y.add(correct_overall);
            match label_group {
                Group::FineTuning => {
                    table.s_y.add(correct_overall);
                    table
                        .s_s
                        .add(self.beaten_by(row, &[Group::FineTuning], 0.0, k) < k);
                }
                Group::Absent => {
                    table.u_y.add(correct_overall);
                    table.u_u.add(self.beaten_by(row, &[Group::Absent], 0.0, k) < k);
                }
                Group::Outside => {}
            }
        }
        table
    }

    /// How many candidates outrank the label of `row` after the γ shift, counted up to `limit`.
    ///
    /// When the label's own group is not a candidate it can never be predicted: returns `limit`.
    pub(crate) fn beaten_by(&self, row: usize, candidates: &[Group], gamma: f64, limit: usize) -> usize {
        let label_group = self.label_groups[row];
        if !candidates.contains(&label_group) {
            return limit;
        }
        let label = self.labels[row];
        let shift = |g: Group| if g == Group::Absent { gamma } else { 0.0 };
        // Compare in the calibrated frame, z_c + γ·1(c ∈ U), exactly as argmax over calibrated logits would.
        let label_score = self.label_scores[row] + shift(label_group);
        let mut count = 0;
        for &group in candidates {
            let group_shift = shift(group);
            let (scores, classes) = self.tops[group.index()].row(row);
            for (&score, &class) in scores.iter().zip(classes) {
                let score = score + group_shift;
                if score > label_score || (score == label_score && class < label) {
                    count += 1;
                    if count >= limit {
                        return limit;
                    }
                } else {
                    // Lists are sorted best first: nothing further down can outrank the label.
                    break;
                }
            }
        }
        count
    }

    /// The best (score, class) of `group` for `row`, if the group has any class.
    pub(crate) fn group_best(&self, row: usize, group: Group) -> Option<(f64, u32)> {
        let (scores, classes) = self.tops[group.index()].row(row);
        scores.first().map(|&s| (s, classes[0]))
    }

    /// The best (score, class) over several groups for `row` (lowest class on ties).
    pub(crate) fn best_of(&self, row: usize, groups: &[Group]) -> Option<(f64, u32)> {
        groups
            .iter()
            .filter_map(|&g| self.group_best(row, g))
            .reduce(|a, b| {
                if b.0 > a.0 || (b.0 == a.0 && b.1 < a.1) {
                    b
                } else {
                    a
                }
            })
    }

    /// The label's own score for `row`.
    pub(crate) fn label_score(&self, row: usize) -> f64 {
        self.label_scores[row]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(values: &[f32], cols: usize, labels: &[u32], absent: &[usize], k: usize) -> RankedScores {
        let matrix = Matrix::new(labels.len(), cols, values.to_vec()).unwrap();
        let split = ClassSplit::from_absent(cols, absent).unwrap();
        RankedScores::new(&matrix, labels, &split, k)
    }

    fn pct(a: Accuracy) -> Option<f64> {
        a.percent()
    }

    #[test]
    fn hand_computed_table_with_three_samples() {
        // Classes 0, 1 are S; 2, 3 are U.
        //   row 0, label 0: argmax overall 0 ✓; over S 0 ✓.
        //   row 1, label 1: overall argmax 2 ✗ (absent class wins); over S 1 ✓.
        //   row 2, label 3: overall argmax 0 ✗; over U 3 ✓.
        let r = ranked(
            &[
                5.0, 1.0, 2.0, 0.0, //
                0.0, 3.0, 4.0, 1.0, //
                6.0, 0.0, 1.0, 2.0,
            ],
            4,
            &[0, 1, 3],
            &[2, 3],
            2,
        );
        let t = r.accuracy(0.0, 1);
        assert_eq!(t.y_y, Accuracy { correct: 1, total: 3 });
        assert_eq!(t.s_y, Accuracy { correct: 1, total: 2 });
        assert_eq!(t.u_y, Accuracy { correct: 0, total: 1 });
        assert_eq!(t.s_s, Accuracy { correct: 2, total: 2 });
        assert_eq!(t.u_u, Accuracy { correct: 1, total: 1 });
        // γ = 5 lifts U above everything in rows 1 and 2: row 2 becomes right, row 0 wrong (2+5 > 5).
        let t = r.accuracy(5.0, 1);
        assert_eq!((t.s_y.correct, t.u_y.correct, t.y_y.correct), (0, 1, 1));
        // Top-2 at γ = 0: row 1's label 1 is second (after 2); row 2's label 3 is second (after 0).
        let t = r.accuracy(0.0, 2);
        assert_eq!((t.y_y.correct, t.s_y.correct, t.u_y.correct), (3, 2, 1));
        // Top-2 over a two-class candidate set is always right.
        assert_eq!((t.s_s.correct, t.u_u.correct), (2, 1));
    }

    #[test]
    fn ties_go_to_the_lowest_class_index() {
        // All four scores equal: the prediction is class 0.
        let r = ranked(&[1.0; 8], 4, &[0, 2], &[2, 3], 1);
        let t = r.accuracy(0.0, 1);
        assert_eq!(t.s_y.correct, 1, "label 0 wins the four-way tie");
        assert_eq!(t.u_y.correct, 0, "label 2 loses to class 0");
        assert_eq!(t.u_u.correct, 1, "over U alone, 2 beats 3 on the tie");
        // Lifting U by any γ > 0 breaks the tie in U's favour; class 2 is U's lowest index.
        let t = r.accuracy(1e-3, 1);
        assert_eq!((t.s_y.correct, t.u_y.correct), (0, 1));
    }

    #[test]
    fn an_absent_label_tied_with_a_higher_s_class_wins() {
        // Class 1 is U, class 3 is S; equal scores: the lower index (1) wins.
        let r = ranked(&[0.0, 2.0, 0.0, 2.0], 4, &[1], &[1], 1);
        assert_eq!(r.accuracy(0.0, 1).u_y.correct, 1);
    }

    #[test]
    fn a_single_sample_gives_zero_or_hundred_percent() {
        let r = ranked(&[0.1, 0.9], 2, &[1], &[1], 1);
        let t = r.accuracy(0.0, 1);
        assert_eq!(pct(t.y_y), Some(100.0));
        assert_eq!(pct(t.s_y), None, "no sample of S: undefined, not 0");
        assert_eq!(pct(t.u_u), Some(100.0));
        assert_eq!(pct(r.accuracy(-1.0, 1).y_y), Some(0.0));
    }

    #[test]
    fn when_every_sample_is_in_s_the_absent_columns_are_undefined() {
        let r = ranked(&[3.0, 1.0, 2.0, 1.0, 3.0, 2.0], 3, &[0, 0], &[2], 1);
        let t = r.accuracy(0.0, 1);
        assert_eq!(pct(t.s_y), Some(50.0));
        assert_eq!(pct(t.u_y), None);
        assert_eq!(pct(t.u_u), None);
        assert_eq!(t.y_y, t.s_y);
    }

    #[test]
    fn a_class_missing_from_the_test_set_still_competes() {
        // S = {0, 1, 2}, U = {3}; no test sample is of class 2, yet it wins row 1 and makes it wrong.
        let r = ranked(&[3.0, 1.0, 0.0, 2.0, 1.0, 2.0, 5.0, 0.0], 4, &[0, 1], &[3], 1);
        let t = r.accuracy(0.0, 1);
        assert_eq!(t.s_y, Accuracy { correct: 1, total: 2 });
        assert_eq!(t.s_s, Accuracy { correct: 1, total: 2 });
        assert_eq!(t.u_y.total, 0);
    }

    #[test]
    fn outside_classes_compete_unless_excluded() {
        // Class 2 is outside S = {0} and U = {1}; it has the highest score.
        let matrix = Matrix::new(1, 3, vec![1.0f32, 0.0, 2.0]).unwrap();
        let split = ClassSplit::new(3, &[0], &[1]).unwrap();
        let t = RankedScores::new(&matrix, &[0], &split, 1).accuracy(0.0, 1);
        assert_eq!(t.s_y.correct, 0);
        assert_eq!(t.s_s.correct, 1);
        let t = RankedScores::new(&matrix, &[0], &split.exclude_outside(), 1).accuracy(0.0, 1);
        assert_eq!(t.s_y.correct, 1);
    }

    #[test]
    fn top_k_lists_keep_the_best_in_order() {
        let r = ranked(&[3.0, 9.0, 1.0, 9.0, 5.0, 0.0], 6, &[0], &[5], 3);
        let (scores, classes) = r.tops[Group::FineTuning.index()].row(0);
        assert_eq!(scores, &[9.0, 9.0, 5.0]);
        assert_eq!(classes, &[1, 3, 4]);
        assert_eq!(r.beaten_by(0, &[Group::FineTuning], 0.0, 5), 3);
    }
}
