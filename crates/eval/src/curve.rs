//! The exact seen–unseen curve (Chao et al. 2016) traced by γ, and the area under it (AUSUC).
//!
//! With γ added to every absent-class score, a sample of S is predicted right iff its label is the best
//! unshifted candidate *and* γ < g, and a sample of U iff its label is the best of U *and* γ > g, where
//! g = max over unshifted candidates − max over U is the sample's gap. So accuracies change only where γ
//! crosses some sample's gap: sorting the gaps (O(N log N)) and reading the counts between consecutive
//! distinct gaps gives every point of the curve, each interval included (the reference code skips the
//! one holding γ = 0).

use crate::classes::Group;
use crate::ranking::{Accuracy, RankedScores};

/// One interval of γ on which every prediction is constant, and the accuracies on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// A representative γ strictly inside the interval: its middle, or 1 beyond the last gap at the two
    /// unbounded ends.
    pub gamma: f64,
    /// Lower end of the interval (exclusive), −∞ for the first.
    pub gamma_low: f64,
    /// Upper end of the interval (exclusive), +∞ for the last.
    pub gamma_high: f64,
    /// Acc_{S/Y} on the interval.
    pub s_y: Accuracy,
    /// Acc_{U/Y} on the interval.
    pub u_y: Accuracy,
    /// Acc_{Y/Y} on the interval.
    pub y_y: Accuracy,
}

/// The seen–unseen curve: points in increasing γ, so Acc_{S/Y} falls and Acc_{U/Y} rises along it.
#[derive(Clone, Debug, PartialEq)]
pub struct SeenUnseenCurve {
    points: Vec<CurvePoint>,
}

impl SeenUnseenCurve {
    /// Traces the exact curve of `ranked` over all γ.
    pub fn new(ranked: &RankedScores) -> Self {
        let split = ranked.split();
        let unshifted = split.unshifted_candidates();
        let (mut s_total, mut u_total) = (0, 0);
        // (gap, group of the label) of every sample that some γ makes right.
        let mut gaps: Vec<(f64, Group)> = Vec::with_capacity(ranked.len());
        for (row, &group) in ranked.label_groups().iter().enumerate() {
            match group {
                Group::FineTuning => s_total += 1,
                Group::Absent => u_total += 1,
                Group::Outside => {}
            }
            let (Some((best_unshifted, _)), Some((best_absent, _))) = (
                ranked.best_of(row, unshifted),
                ranked.group_best(row, Group::Absent),
            ) else {
                continue;
            };
            let eligible = match group {
                Group::Absent => ranked.beaten_by(row, &[Group::Absent], 0.0, 1) == 0,
                _ => ranked.beaten_by(row, unshifted, 0.0, 1) == 0,
            };
            if eligible {
                debug_assert!(ranked.label_score(row) == best_unshifted || group == Group::Absent);
                gaps.push((best_unshifted - best_absent, group));
            }
        }
        gaps.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));

        let y_total = ranked.len();
        let count = |g: Group| gaps.iter().filter(|(_, x)| *x == g).count();
        // Below every gap: all eligible unshifted-label samples are right, no absent one is.
        let mut s_correct = count(Group::FineTuning);
        let mut outside_correct = count(Group::Outside);
        let mut u_correct = 0;
        let mut points = Vec::with_capacity(gaps.len() + 1);
        let mut low = f64::NEG_INFINITY;
        let mut i = 0;
        loop {
            let high = gaps.get(i).map_or(f64::INFINITY, |g| g.0);
            let gamma = match (low.is_finite(), high.is_finite()) {
                (true, true) => low + (high - low) / 2.0,
                (false, true) => high - 1.0,
                (true, false) => low + 1.0,
                (false, false) => 0.0,
            };
            points.push(CurvePoint {
                gamma,
                gamma_low: low,
                gamma_high: high,
                s_y: Accuracy {
                    correct: s_correct,
                    total: s_total,
                },
                u_y: Accuracy {
                    correct: u_correct,
                    total: u_total,
                },
                y_y: Accuracy {
                    correct: s_correct + u_correct + outside_correct,
                    total: y_total,
                },
            });
            if i == gaps.len() {
                break;
            }
            // Crossing this gap value flips every sample that has it.
            while i < gaps.len() && gaps[i].0 == high {
                match gaps[i].1 {
                    Group::FineTuning => s_correct -= 1,
                    Group::Outside => outside_correct -= 1,
                    Group::Absent => u_correct += 1,
                }
                i += 1;
            }
            low = high;
        }
        SeenUnseenCurve { points }
    }

    /// The points in increasing γ; the first is γ → −∞, the last γ → +∞.
    pub fn points(&self) -> &[CurvePoint] {
        &self.points
    }

    /// The point whose interval holds `gamma`; at a gap value itself (a boundary) the interval above it.
    pub fn point_at(&self, gamma: f64) -> &CurvePoint {
        let index = self.points.partition_point(|p| p.gamma_high <= gamma);
        &self.points[index.min(self.points.len() - 1)]
    }

    /// Whether the samples hold both S and U; without either there is no curve to measure or draw.
    pub fn is_defined(&self) -> bool {
        (self.points.first()).is_some_and(|first| first.s_y.total > 0 && first.u_y.total > 0)
    }

    /// Area under the curve of (Acc_{S/Y}, Acc_{U/Y}) as fractions, by the trapezoid rule over the points
    /// sorted by Acc_{S/Y}; in [0, 1]. `None` when the curve is not [defined](Self::is_defined).
    pub fn ausuc(&self) -> Option<f64> {
        if !self.is_defined() {
            return None;
        }
        // Increasing γ means decreasing Acc_{S/Y}: walking the points backwards sorts them by Acc_{S/Y}.
        let mut area = 0.0;
        for pair in self.points.windows(2).rev() {
            let (right, left) = (&pair[0], &pair[1]);
            let (x0, y0) = (left.s_y.fraction()?, left.u_y.fraction()?);
            let (x1, y1) = (right.s_y.fraction()?, right.u_y.fraction()?);
            area += (x1 - x0) * (y0 + y1) / 2.0;
        }
        Some(area)
    }

    /// The oracle γ\*: the point with the best Acc_{Y/Y}; among equally good points, the one with the
    /// representative γ nearest 0 (the smallest change to the model that reaches the best accuracy).
    pub fn oracle(&self) -> &CurvePoint {
        self.best_point(|_| true, |p| p.y_y.correct)
            .expect("a curve always has at least one point")
    }

    /// The point maximising `score` among those that pass `allowed`, ties broken toward γ = 0.
    pub(crate) fn best_point(
        &self,
        allowed: impl Fn(&CurvePoint) -> bool,
        score: impl Fn(&CurvePoint) -> usize,
    ) -> Option<&CurvePoint> {
        self.points.iter().filter(|p| allowed(p)).min_by(|a, b| {
            score(b)
                .cmp(&score(a))
                .then(a.gamma.abs().total_cmp(&b.gamma.abs()))
                .then(a.gamma.total_cmp(&b.gamma))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classes::ClassSplit;
    use crate::scores::Matrix;

    fn curve(values: &[f32], cols: usize, labels: &[u32], absent: &[usize]) -> SeenUnseenCurve {
        let matrix = Matrix::new(labels.len(), cols, values.to_vec()).unwrap();
        let split = ClassSplit::from_absent(cols, absent).unwrap();
        SeenUnseenCurve::new(&RankedScores::new(&matrix, labels, &split, 1))
    }

    #[test]
    fn hand_computed_curve_of_two_samples() {
        // Class 0 is S, class 1 is U; gap = max_S − max_U.
        // Sample 0: scores (2, 0), label 0, gap 2. Sample 1: scores (1, 0), label 1, gap 1.
        let c = curve(&[2.0, 0.0, 1.0, 0.0], 2, &[0, 1], &[1]);
        let p = c.points();
        assert_eq!(p.len(), 3);
        // γ < 1: S right, U wrong. 1 < γ < 2: both right. γ > 2: only U right.
        assert_eq!((p[0].s_y.correct, p[0].u_y.correct), (1, 0));
        assert_eq!((p[1].s_y.correct, p[1].u_y.correct), (1, 1));
        assert_eq!((p[2].s_y.correct, p[2].u_y.correct), (0, 1));
        assert_eq!((p[0].gamma, p[1].gamma, p[2].gamma), (0.0, 1.5, 3.0));
        assert_eq!((p[1].gamma_low, p[1].gamma_high), (1.0, 2.0));
        // Points by Acc_{S/Y}: (0, 1), (1, 1), (1, 0): the unit square.
        assert_eq!(c.ausuc(), Some(1.0));
        assert_eq!(c.oracle().gamma, 1.5);
        assert_eq!(c.oracle().y_y.correct, 2);
    }

    #[test]
    fn hand_computed_area_of_a_crossing_curve() {
        // S = {0}, U = {1}. Two S samples with gaps 1 and 3, two U samples with gaps 2 and 4.
        // γ intervals: (−∞,1): S 2/2, U 0/2; (1,2): 1/2, 0/2; (2,3): 1/2, 1/2; (3,4): 0/2, 1/2; (4,∞): 0/2, 2/2.
        // Sorted by S: (0,1), (0,.5), (.5,.5), (.5,0), (1,0); area = 0 + .5·.5 + 0 + 0 = 0.25.
        let c = curve(&[1.0, 0.0, 3.0, 0.0, 2.0, 0.0, 4.0, 0.0], 2, &[0, 0, 1, 1], &[1]);
        assert_eq!(c.points().len(), 5);
        assert_eq!(c.ausuc(), Some(0.25));
        // Best Acc_{Y/Y} is 2/4 on (−∞,1), (2,3) and (4,∞), whose representative γ are 0, 2.5 and 5:
        // the tie goes to the γ nearest 0.
        assert_eq!(c.oracle().gamma, 0.0);
    }

    #[test]
    fn samples_never_right_add_no_gap() {
        // Label 0 (S) is beaten by S class 1 at every γ; label 2 (U) is beaten by U class 3 at every γ.
        let c = curve(&[0.0, 5.0, 1.0, 1.0, 0.0, 0.0, 1.0, 2.0], 4, &[0, 2], &[2, 3]);
        assert_eq!(c.points().len(), 1);
        assert_eq!(c.points()[0].y_y.correct, 0);
        assert_eq!(c.ausuc(), Some(0.0));
    }

    #[test]
    fn ausuc_is_undefined_without_absent_samples() {
        let c = curve(&[1.0, 0.0], 2, &[0], &[1]);
        assert_eq!(c.ausuc(), None);
    }

    #[test]
    fn equal_gaps_flip_together() {
        // Two S samples and one U sample share gap 1.
        let c = curve(&[1.0, 0.0, 2.0, 1.0, 1.0, 0.0], 2, &[0, 0, 1], &[1]);
        let p = c.points();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].s_y.correct, p[0].u_y.correct), (2, 0));
        assert_eq!((p[1].s_y.correct, p[1].u_y.correct), (0, 1));
        assert_eq!(
            c.point_at(1.0).gamma,
            p[1].gamma,
            "a boundary belongs to the interval above"
        );
        assert_eq!(c.point_at(0.5).gamma, p[0].gamma);
    }
}
