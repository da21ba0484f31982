//! BatchNorm on contiguous NCHW `f32` slices, fused: in training, the statistics in one read of the
//! input per channel, the output in one write, and the backward pass in one read and one write; in
//! inference, one multiply-add per value, in place.
//!
//! burn's default (which flex keeps) re-lays the input out channel-major twice for the statistics and
//! spends a pass per broadcast operation, forward and backward. The sums here accumulate in `f64`, per
//! channel in a fixed order, so results repeat run to run whatever the thread count.

use rayon::prelude::*;

/// A batch's shape as BatchNorm sees it: `batch` images of `channels` planes of `plane` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchNormShape {
    /// Images in the batch.
    pub batch: usize,
    /// Channels, each normalised on its own.
    pub channels: usize,
    /// Values per channel and image (height × width).
    pub plane: usize,
}

impl BatchNormShape {
    fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// The values of channel `channel` of image `image`.
    fn plane_of<'a>(&self, data: &'a [f32], image: usize, channel: usize) -> &'a [f32] {
        &data[(image * self.channels + channel) * self.plane..][..self.plane]
    }
}

/// What [`forward`] returns: the output and the batch's per-channel mean and biased variance.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormForward {
    /// `(x − mean) / sqrt(variance + ε) · γ + β`, in the input's layout.
    pub output: Vec<f32>,
    /// The batch mean of each channel.
    pub mean: Vec<f32>,
    /// The batch variance of each channel, biased (divided by the count), as burn's.
    pub variance: Vec<f32>,
}

/// BatchNorm in training mode: normalise each channel by the batch's own statistics.
pub fn forward(
    shape: &BatchNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> BatchNormForward {
    assert_eq!(x.len(), shape.len(), "BatchNorm input's length for {shape:?}");
    assert!(
        gamma.len() == shape.channels && beta.len() == shape.channels,
        "BatchNorm's γ and β for {shape:?}"
    );
    let count = (shape.batch * shape.plane) as f64;
    let (mean, variance): (Vec<f32>, Vec<f32>) = (0..shape.channels)
        .into_par_iter()
        .map(|channel| {
            let planes = || (0..shape.batch).map(|image| shape.plane_of(x, image, channel));
            let mean = planes().map(|plane| lane_sum(plane, |x| x)).sum::<f64>() / count;
            let variance = planes()
                .map(|plane| lane_sum(plane, |x| (x - mean).powi(2)))
                .sum::<f64>()
                / count;
            (mean as f32, variance as f32)
        })
        .unzip();
    let (scale, shift) = scale_and_shift(gamma, beta, &mean, &variance, epsilon);
    let mut output = vec![0.0; x.len()];
    output
        .par_chunks_mut(shape.plane.max(1))
        .zip(x.par_chunks(shape.plane.max(1)))
        .enumerate()
        .for_each(|(index, (out, x))| {
            let channel = index % shape.channels;
            let (scale, shift) = (scale[channel], shift[channel]);
            out.iter_mut()
                .zip(x)
                .for_each(|(out, &x)| *out = x * scale + shift);
        });
    BatchNormForward {
        output,
        mean,
        variance,
    }
}

/// BatchNorm in inference mode, in place: each channel normalised by the given statistics (the running
/// ones), as one multiply-add per value, `x · scale + shift` with `scale = γ / sqrt(variance + ε)` and
/// `shift = β − mean · scale`: PyTorch's own CPU inference kernel computes it this way, where burn's
/// default spends a pass on each of `− mean`, `/ std`, `· γ` and `+ β`.
pub fn inference_in_place(
    shape: &BatchNormShape,
    x: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    variance: &[f32],
    epsilon: f64,
) {
    assert_eq!(x.len(), shape.len(), "BatchNorm input's length for {shape:?}");
    assert!(
        [gamma, beta, mean, variance]
            .iter()
            .all(|values| values.len() == shape.channels),
        "BatchNorm's γ, β, mean and variance for {shape:?}"
    );
    let (scale, shift) = scale_and_shift(gamma, beta, mean, variance, epsilon);
    x.par_chunks_mut(shape.plane.max(1))
        .enumerate()
        .for_each(|(index, plane)| {
            let channel = index % shape.channels;
            let (scale, shift) = (scale[channel], shift[channel]);
            plane.iter_mut().for_each(|value| *value = *value * scale + shift);
        });
}

/// Each channel's `γ / sqrt(variance + ε)` and `β − mean · scale`, computed in `f64`.
fn scale_and_shift(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    variance: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>) {
    (0..gamma.len())
        .map(|channel| {
            let scale = f64::from(gamma[channel]) / (f64::from(variance[channel]) + epsilon).sqrt();
            let shift = f64::from(beta[channel]) - f64::from(mean[channel]) * scale;
            (scale as f32, shift as f32)
        })
        .unzip()
}

/// What [`backward`] returns: the gradients of the input, γ and β.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormGrads {
    /// The input's gradient.
    pub x: Vec<f32>,
    /// γ's gradient, `Σ dy · x̂` per channel.
    pub gamma: Vec<f32>,
    /// β's gradient, `Σ dy` per channel.
    pub beta: Vec<f32>,
}

/// The gradients of [`forward`] given the output's gradient, with `mean` and `variance` the statistics
/// it returned (through which the input's gradient flows too).
pub fn backward(
    shape: &BatchNormShape,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    variance: &[f32],
    epsilon: f64,
    output_grad: &[f32],
) -> BatchNormGrads {
    assert_eq!(x.len(), shape.len(), "BatchNorm input's length for {shape:?}");
    assert_eq!(
        output_grad.len(),
        shape.len(),
        "BatchNorm output gradient's length for {shape:?}"
    );
    let count = (shape.batch * shape.plane) as f64;
    let inverse_std: Vec<f64> = variance
        .iter()
        .map(|&variance| 1.0 / (f64::from(variance) + epsilon).sqrt())
        .collect();
    let (beta_grad, gamma_grad): (Vec<f64>, Vec<f64>) = (0..shape.channels)
        .into_par_iter()
        .map(|channel| {
            let (mean, inverse_std) = (f64::from(mean[channel]), inverse_std[channel]);
            let (mut sum, mut sum_centered) = (0.0, 0.0);
            for image in 0..shape.batch {
                let grad = shape.plane_of(output_grad, image, channel);
                sum += lane_sum(grad, |grad| grad);
                let x = shape.plane_of(x, image, channel);
                sum_centered += lane_sum_pairs(grad, x, |grad, x| grad * (x - mean));
            }
            (sum, sum_centered * inverse_std)
        })
        .unzip();
    // dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy · x̂)), as an affine map of (dy, x) per channel.
    let coefficients: Vec<[f32; 3]> = (0..shape.channels)
        .map(|channel| {
            let (inverse_std, gamma) = (inverse_std[channel], f64::from(gamma[channel]));
            let grad_scale = gamma * inverse_std;
            let x_scale = -grad_scale * inverse_std * gamma_grad[channel] / count;
            let offset = -grad_scale * beta_grad[channel] / count - x_scale * f64::from(mean[channel]);
            [grad_scale as f32, x_scale as f32, offset as f32]
        })
        .collect();
    let mut input_grad = vec![0.0; x.len()];
    let plane = shape.plane.max(1);
    input_grad
        .par_chunks_mut(plane)
        .zip(x.par_chunks(plane).zip(output_grad.par_chunks(plane)))
        .enumerate()
        .for_each(|(index, (out, (x, grad)))| {
            let [grad_scale, x_scale, offset] = coefficients[index % shape.channels];
            for ((out, &x), &grad) in out.iter_mut().zip(x).zip(grad) {
                *out = grad * grad_scale + x * x_scale + offset;
            }
        });
    BatchNormGrads {
        x: input_grad,
        gamma: gamma_grad.into_iter().map(|value| value as f32).collect(),
        beta: beta_grad.into_iter().map(|value| value as f32).collect(),
    }
}

/// Lanes of the sums below: eight independent running sums let the compiler vectorise them, and their
/// fixed order keeps the result the same run to run.
const LANES: usize = 8;

/// `Σ term(x)` over `values`, in float64.
#[inline]
fn lane_sum(values: &[f32], term: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&value| term(f64::from(value)))
        .sum();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane += term(f64::from(value));
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// `Σ term(a, b)` over the pairs of `first` and `second`, in float64.
#[inline]
fn lane_sum_pairs(first: &[f32], second: &[f32], term: impl Fn(f64, f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let (first_chunks, second_chunks) = (first.chunks_exact(LANES), second.chunks_exact(LANES));
    let tail: f64 = (first_chunks.remainder().iter().zip(second_chunks.remainder()))
        .map(|(&a, &b)| term(f64::from(a), f64::from(b)))
        .sum();
    for (a, b) in first_chunks.zip(second_chunks) {
        for ((lane, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
            *lane += term(f64::from(a), f64::from(b));
        }
    }
    lanes.iter().sum::<f64>() + tail
}
