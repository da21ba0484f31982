//! The nearest-class-mean (NCM) probe: how good are the features, whatever the classifier head says?
//!
//! Features are L2-normalised; each class mean over a reference set (normally the whole training split,
//! absent classes included, on purpose: it is an analysis probe) is L2-normalised again; a sample's score
//! for a class is the cosine similarity to that mean.

use crate::EvalError;
use crate::scores::Matrix;

/// Below this norm a vector is treated as zero instead of divided by (as `torch.nn.functional.normalize`).
const NORM_EPS: f64 = 1e-12;

/// Class means of L2-normalised features, ready to score samples by cosine similarity.
#[derive(Clone, Debug)]
pub struct NcmProbe {
    num_classes: usize,
    dim: usize,
    means: Vec<f64>,
    classes_without_samples: Vec<usize>,
}

impl NcmProbe {
    /// Fits class means on `features` [N, D] with `labels` (each below `num_classes`).
    ///
    /// A class with no sample has no mean; it scores −∞ (never predicted) and is listed by
    /// [`NcmProbe::classes_without_samples`].
    pub fn fit(features: &Matrix<f32>, labels: &[u32], num_classes: usize) -> Self {
        assert_eq!(features.rows(), labels.len(), "one label per feature row");
        let dim = features.cols();
        let mut means = vec![0.0f64; num_classes * dim];
        let mut counts = vec![0usize; num_classes];
        let mut normalised = vec![0.0f64; dim];
        for (row, &label) in features.iter_rows().zip(labels) {
            copy_normalised(row, &mut normalised);
            let class = label as usize;
            counts[class] += 1;
            for (sum, value) in means[class * dim..(class + 1) * dim].iter_mut().zip(&normalised) {
                *sum += value;
            }
        }
        // The mean's own scale vanishes under normalisation, so normalising the sum is the same.
        if dim > 0 {
            means.chunks_exact_mut(dim).for_each(normalise_in_place);
        }
        let classes_without_samples = (0..num_classes).filter(|&c| counts[c] == 0).collect();
        NcmProbe {
            num_classes,
            dim,
            means,
            classes_without_samples,
        }
    }

    /// The classes the reference set had no sample of.
    pub fn classes_without_samples(&self) -> &[usize] {
        &self.classes_without_samples
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Cosine similarity of each sample of `features` [N, D] to each class mean: [N, C].
    pub fn scores(&self, features: &Matrix<f32>, origin: &str) -> Result<Matrix<f64>, EvalError> {
        if features.cols() != self.dim {
            return Err(EvalError::Incompatible {
                message: format!(
                    "{origin}: features have {} dimensions but the NCM class means have {}",
                    features.cols(),
                    self.dim
                ),
            });
        }
        let rows = features.rows();
        let num_classes = self.num_classes;
        let mut normalised = vec![0.0f64; rows * self.dim];
        if self.dim > 0 {
            for (row, out) in features.iter_rows().zip(normalised.chunks_exact_mut(self.dim)) {
                copy_normalised(row, out);
            }
        }
        let mut scores = vec![0.0f64; rows * num_classes];
        if rows > 0 && num_classes > 0 && self.dim > 0 {
            // SAFETY: `normalised` is rows×dim row-major, `means` is num_classes×dim row-major and read
            // transposed (dim×num_classes: row stride 1, column stride dim), `scores` is rows×num_classes
            // row-major; all three buffers have exactly those lengths.
            unsafe {
                matrixmultiply::dgemm(
                    rows,
                    self.dim,
                    num_classes,
                    1.0,
                    normalised.as_ptr(),
                    self.dim as isize,
                    1,
                    self.means.as_ptr(),
                    1,
                    self.dim as isize,
                    0.0,
                    scores.as_mut_ptr(),
                    num_classes as isize,
                    1,
                );
            }
        }
        if !self.classes_without_samples.is_empty() && num_classes > 0 {
            for row in scores.chunks_exact_mut(num_classes) {
                for &class in &self.classes_without_samples {
                    row[class] = f64::NEG_INFINITY;
                }
            }
        }
        Ok(Matrix::new(rows, num_classes, scores).expect("rows × classes scores"))
    }
}

fn copy_normalised(row: &[f32], out: &mut [f64]) {
    for (slot, &value) in out.iter_mut().zip(row) {
        *slot = f64::from(value);
    }
    normalise_in_place(out);
}

fn normalise_in_place(values: &mut [f64]) {
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt().max(NORM_EPS);
    values.iter_mut().for_each(|v| *v /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_to_normalised_class_means() {
        // Class 0: (1, 0) and (0, 2) → normalised (1, 0), (0, 1) → mean direction (1, 1)/√2.
        // Class 1: (−3, 0) → (−1, 0).
        let features = Matrix::new(3, 2, vec![1.0f32, 0.0, 0.0, 2.0, -3.0, 0.0]).unwrap();
        let probe = NcmProbe::fit(&features, &[0, 0, 1], 2);
        assert!(probe.classes_without_samples().is_empty());
        let query = Matrix::new(1, 2, vec![5.0f32, 5.0]).unwrap();
        let scores = probe.scores(&query, "q").unwrap();
        assert!((scores.get(0, 0) - 1.0).abs() < 1e-12);
        assert!((scores.get(0, 1) + 0.5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn a_class_without_samples_is_reported_and_never_predicted() {
        let features = Matrix::new(2, 2, vec![1.0f32, 0.0, 0.0, 1.0]).unwrap();
        let probe = NcmProbe::fit(&features, &[0, 2], 3);
        assert_eq!(probe.classes_without_samples(), &[1]);
        let scores = probe.scores(&features, "q").unwrap();
        assert_eq!(scores.get(0, 1), f64::NEG_INFINITY);
        assert_eq!(scores.get(1, 2), 1.0);
    }

    #[test]
    fn zero_features_score_zero_instead_of_nan() {
        let features = Matrix::new(1, 2, vec![0.0f32, 0.0]).unwrap();
        let probe = NcmProbe::fit(&Matrix::new(1, 2, vec![1.0f32, 0.0]).unwrap(), &[0], 1);
        assert_eq!(probe.scores(&features, "q").unwrap().get(0, 0), 0.0);
    }

    #[test]
    fn feature_dimensions_must_match() {
        let probe = NcmProbe::fit(&Matrix::new(1, 2, vec![1.0f32, 0.0]).unwrap(), &[0], 1);
        let message = probe
            .scores(&Matrix::new(1, 3, vec![0.0f32; 3]).unwrap(), "test.npz")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "test.npz: features have 3 dimensions but the NCM class means have 2"
        );
    }
}
