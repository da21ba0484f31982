//! Saved model outputs: a row-major matrix type and the validated (logits, labels, features) triple.

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// A dense row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix<T> {
    rows: usize,
    cols: usize,
    data: Vec<T>,
}

impl<T: Copy> Matrix<T> {
    /// Wraps `data` (row-major, `rows * cols` values); `None` when the length does not match.
    pub fn new(rows: usize, cols: usize, data: Vec<T>) -> Option<Self> {
        (rows.checked_mul(cols) == Some(data.len())).then_some(Matrix { rows, cols, data })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Iterates over the rows.
    pub fn iter_rows(&self) -> impl ExactSizeIterator<Item = &[T]> + '_ {
        // `chunks_exact(0)` panics, and a matrix with no columns has no values to visit.
        (0..self.rows).map(move |i| self.row(i))
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// All values, row-major, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The value at (`row`, `col`).
    pub fn get(&self, row: usize, col: usize) -> T {
        self.data[row * self.cols + col]
    }
}

/// How a scores file stores its floats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 4 bytes a value.
    #[default]
    Float32,
    /// 2 bytes a value (IEEE half precision: 11 significant bits, values up to 65,504).
    Float16,
}

fn round_to_f16(origin: &str, tensor: &'static str, matrix: &mut Matrix<f32>) -> Result<(), EvalError> {
    let cols = matrix.cols();
    for (index, value) in matrix.as_mut_slice().iter_mut().enumerate() {
        let rounded = half::f16::from_f32(*value).to_f32();
        if !rounded.is_finite() {
            return Err(EvalError::Undefined(format!(
                "{origin}: {tensor}[{}, {}] = {value} is beyond float16's range (±65,504); store the outputs as float32",
                index / cols,
                index % cols
            )));
        }
        *value = rounded;
    }
    Ok(())
}

/// One evaluated split of one model: logits [N, C], labels [N] and, optionally, penultimate features [N, D].
///
/// Construction validates everything a metric relies on, so the metrics themselves never fail on data.
#[derive(Clone, Debug)]
pub struct Scores {
    origin: String,
    logits: Matrix<f32>,
    labels: Vec<u32>,
    features: Option<Matrix<f32>>,
}

impl Scores {
    /// Validates and wraps one split's outputs; `origin` (a path, or "train") names them in errors.
    ///
    /// Errors on mismatched row counts, labels outside `0..C`, and NaN or infinite logits or features.
    pub fn new(
        origin: impl Into<String>,
        logits: Matrix<f32>,
        labels: &[i64],
        features: Option<Matrix<f32>>,
    ) -> Result<Self, EvalError> {
        let origin = origin.into();
        if labels.len() != logits.rows() {
            return Err(EvalError::RowCountMismatch {
                origin,
                tensor: "labels",
                expected: logits.rows(),
                found: labels.len(),
            });
        }
        if let Some(features) = &features
            && features.rows() != logits.rows()
        {
            return Err(EvalError::RowCountMismatch {
                origin,
                tensor: "features",
                expected: logits.rows(),
                found: features.rows(),
            });
        }
        let num_classes = logits.cols();
        let mut checked_labels = Vec::with_capacity(labels.len());
        for (row, &label) in labels.iter().enumerate() {
            match u32::try_from(label) {
                Ok(class) if (class as usize) < num_classes => checked_labels.push(class),
                _ => {
                    return Err(EvalError::LabelOutOfRange {
                        origin,
                        row,
                        label,
                        num_classes,
                    });
                }
            }
        }
        check_finite(&origin, "logits", &logits)?;
        if let Some(features) = &features {
            check_finite(&origin, "features", features)?;
        }
        Ok(Scores {
            origin,
            logits,
            labels: checked_labels,
            features,
        })
    }

    /// The rows whose label is one of `classes`, without features (PCV judges on the samples of S).
    pub fn with_labels_in(&self, classes: &[usize]) -> Result<Self, EvalError> {
        let cols = self.num_classes();
        let (mut logits, mut labels) = (Vec::new(), Vec::new());
        for (row, &label) in self.logits.iter_rows().zip(&self.labels) {
            if classes.contains(&(label as usize)) {
                logits.extend_from_slice(row);
                labels.push(i64::from(label));
            }
        }
        let matrix = Matrix::new(labels.len(), cols, logits).expect("rows × cols values");
        Scores::new(self.origin.clone(), matrix, &labels, None)
    }

    /// The same scores without their features (when only the logits are kept).
    pub fn without_features(mut self) -> Self {
        self.features = None;
        self
    }

    /// The same scores with every logit and feature rounded to `precision`, as a file of that precision
    /// stores them. Errors when a value is beyond the precision's range.
    pub fn rounded_to(mut self, precision: Precision) -> Result<Self, EvalError> {
        if precision == Precision::Float16 {
            let origin = self.origin.clone();
            round_to_f16(&origin, "logits", &mut self.logits)?;
            if let Some(features) = &mut self.features {
                round_to_f16(&origin, "features", features)?;
            }
        }
        Ok(self)
    }

    /// Where these scores came from, as used in error messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Logits [N, C].
    pub fn logits(&self) -> &Matrix<f32> {
        &self.logits
    }

    /// Labels [N], each in `0..C`.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Penultimate features [N, D], when saved.
    pub fn features(&self) -> Option<&Matrix<f32>> {
        self.features.as_ref()
    }

    /// Number of samples N.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes C (columns of the logits).
    pub fn num_classes(&self) -> usize {
        self.logits.cols()
    }
}

fn check_finite(origin: &str, tensor: &'static str, matrix: &Matrix<f32>) -> Result<(), EvalError> {
    if let Some(index) = matrix.as_slice().iter().position(|v| !v.is_finite()) {
        let cols = matrix.cols();
        return Err(EvalError::NonFinite {
            origin: origin.to_owned(),
            tensor,
            row: index / cols,
            column: index % cols,
            value: matrix.as_slice()[index],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(rows: usize, cols: usize, values: &[f32]) -> Matrix<f32> {
        Matrix::new(rows, cols, values.to_vec()).unwrap()
    }

    #[test]
    fn matrix_rejects_a_length_that_is_not_rows_times_cols() {
        assert!(Matrix::new(2, 3, vec![0.0f32; 5]).is_none());
        assert!(Matrix::new(2, 3, vec![0.0f32; 6]).is_some());
    }

    #[test]
    fn label_count_must_match_logit_rows() {
        let err = Scores::new("t", logits(2, 2, &[0.0; 4]), &[0], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t: `labels` has 1 rows but `logits` has 2; every tensor needs one row per sample"
        );
    }

    #[test]
    fn feature_rows_must_match_logit_rows() {
        let features = Matrix::new(3, 1, vec![0.0f32; 3]).unwrap();
        let err = Scores::new("t", logits(2, 2, &[0.0; 4]), &[0, 1], Some(features)).unwrap_err();
        assert!(matches!(
            err,
            EvalError::RowCountMismatch {
                tensor: "features",
                found: 3,
                ..
            }
        ));
    }

    #[test]
    fn labels_must_be_inside_the_class_range() {
        for bad in [2, -1] {
            let err = Scores::new("t", logits(2, 2, &[0.0; 4]), &[0, bad], None).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("t: labels[1] = {bad} is outside 0..2")),
                "{err}"
            );
        }
    }

    #[test]
    fn non_finite_logits_name_their_row_and_column() {
        let err = Scores::new(
            "t",
            logits(2, 3, &[0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0]),
            &[0, 1],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("t: logits[1, 1] is NaN"), "{err}");
        let err = Scores::new("t", logits(1, 2, &[0.0, f32::INFINITY]), &[0], None).unwrap_err();
        assert!(err.to_string().starts_with("t: logits[0, 1] is inf"), "{err}");
    }

    #[test]
    fn non_finite_features_are_refused_too() {
        let features = Matrix::new(1, 2, vec![0.0, f32::NEG_INFINITY]).unwrap();
        let err = Scores::new("t", logits(1, 2, &[0.0, 1.0]), &[0], Some(features)).unwrap_err();
        assert!(err.to_string().starts_with("t: features[0, 1] is -inf"), "{err}");
    }
}
