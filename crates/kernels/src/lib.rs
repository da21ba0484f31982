//! ftcal's own CPU kernels for burn's `flex` backend (issue 16), reached through burn's backend-extension
//! mechanism so that every other backend (wgpu, cuda) keeps burn's own ops untouched.
//!
//! Each public function takes and returns burn tensors. On a flex device (with or without autodiff) it
//! runs ftcal's kernel, whose backward pass is registered with burn's autodiff; anywhere else, or for a
//! case the kernel does not cover (another dtype, grouped convolutions), it is burn's own op:
//!
//! - [`conv2d`]: the batch folded into one product per pass ([`conv`]);
//! - [`batch_norm_train`]: BatchNorm's training pass fused ([`batch_norm`]).

#[cfg(feature = "flex")]
pub mod batch_norm;
#[cfg(feature = "flex")]
pub mod conv;
#[cfg(feature = "flex")]
mod flex;

use burn::tensor::Tensor;
use burn::tensor::module::{
    BatchNormTrainOutput, batch_norm_train as burn_batch_norm_train, conv2d as burn_conv2d,
};
use burn::tensor::ops::ConvOptions;

/// `conv2d(x, weight, bias)` as burn's [`burn::tensor::module::conv2d`], batch-folded on flex.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if flex::runs_conv2d(&x, &weight, &options) {
        let out = flex::conv2d(x, weight, options);
        return match bias {
            Some(bias) => {
                let channels = bias.dims()[0];
                out + bias.reshape([1, channels, 1, 1])
            }
            None => out,
        };
    }
    burn_conv2d(x, weight, bias, options)
}

/// BatchNorm's training pass as burn's [`burn::tensor::module::batch_norm_train`]: the output, and the
/// batch's mean and biased variance (detached); fused into two passes forward and two backward on flex.
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> BatchNormTrainOutput<4> {
    #[cfg(feature = "flex")]
    if flex::runs_batch_norm(&x, &gamma) {
        return flex::batch_norm_train(x, gamma, beta, epsilon);
    }
    burn_batch_norm_train(x, gamma, beta, epsilon)
}
