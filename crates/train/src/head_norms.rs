//! The classifier's weight norms by class group: the mean L2 norm of the head's rows of S and of U, and
//! their mean biases, recorded at every evaluated epoch. Fine-tuning on S alone grows S's logits against
//! U's; the paper's appendix shows it in these norms, the cause of the logit-scale gap that γ closes.

use ftcal_eval::ClassSplit;
use ftcal_models::Model;

/// The head's row norms and biases averaged over S and over U; `None` for an empty group or a head
/// without bias.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HeadNorms {
    /// Mean ‖w_c‖ over c in S.
    pub fine_tuning: Option<f64>,
    /// Mean ‖w_c‖ over c in U.
    pub absent: Option<f64>,
    /// Mean b_c over c in S.
    pub fine_tuning_bias: Option<f64>,
    /// Mean b_c over c in U.
    pub absent_bias: Option<f64>,
}

impl HeadNorms {
    /// The norms of `model`'s head under `split`.
    pub fn of(model: &Model, split: &ClassSplit) -> Self {
        let head = model.head();
        let [d_in, d_out] = head.weight.shape().dims();
        let weight: Vec<f32> = head
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("a float tensor reads as f32");
        let bias: Option<Vec<f32>> = head.bias.as_ref().map(|bias| {
            bias.val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("a float tensor reads as f32")
        });
        Self::from_weight(&weight, (d_in, d_out), bias.as_deref(), split)
    }

    /// From a weight in burn's layout (`[d_in, d_out]`, row-major: class c is column c) and its bias.
    fn from_weight(
        weight: &[f32],
        (d_in, d_out): (usize, usize),
        bias: Option<&[f32]>,
        split: &ClassSplit,
    ) -> Self {
        let norm = |class: usize| {
            (0..d_in)
                .map(|row| f64::from(weight[row * d_out + class]).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let mean = |classes: &[usize], value: &dyn Fn(usize) -> f64| {
            (!classes.is_empty())
                .then(|| classes.iter().map(|&c| value(c)).sum::<f64>() / classes.len() as f64)
        };
        let bias_of = |bias: &[f32], classes: &[usize]| mean(classes, &|c| f64::from(bias[c]));
        Self {
            fine_tuning: mean(split.fine_tuning(), &norm),
            absent: mean(split.absent(), &norm),
            fine_tuning_bias: bias.and_then(|bias| bias_of(bias, split.fine_tuning())),
            absent_bias: bias.and_then(|bias| bias_of(bias, split.absent())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_are_means_over_each_groups_columns() {
        // d_in = 2, d_out = 3 (burn's [in, out]): class 0 = (3, 4), class 1 = (0, 1), class 2 = (6, 8).
        let weight = [3.0, 0.0, 6.0, 4.0, 1.0, 8.0];
        let split = ClassSplit::from_absent(3, &[2]).unwrap();
        let norms = HeadNorms::from_weight(&weight, (2, 3), Some(&[0.5, -0.5, 2.0]), &split);
        assert_eq!(norms.fine_tuning, Some((5.0 + 1.0) / 2.0));
        assert_eq!(norms.absent, Some(10.0));
        assert_eq!(norms.fine_tuning_bias, Some(0.0));
        assert_eq!(norms.absent_bias, Some(2.0));
        let every_class = ClassSplit::from_absent(3, &[]).unwrap();
        let norms = HeadNorms::from_weight(&weight, (2, 3), None, &every_class);
        assert_eq!((norms.absent, norms.fine_tuning_bias), (None, None));
        assert_eq!(norms.fine_tuning, Some(16.0 / 3.0));
    }
}
