//! ftcal's own CPU kernels for burn's `flex` backend (issue 16), reached through burn's backend-extension
//! mechanism so that every other backend (wgpu, cuda) keeps burn's own ops untouched.
//!
//! Each public function takes and returns burn tensors. On a flex device (with or without autodiff) it
//! runs ftcal's kernel, whose backward pass is registered with burn's autodiff; anywhere else, or for a
//! case the kernel does not cover (another dtype, grouped convolutions), it is burn's own op:
//!
//! - [`conv2d`]: the batch folded into one product per pass ([`conv`]);
//! - [`batch_norm_train`]: BatchNorm's training pass fused ([`batch_norm`]);
//! - [`batch_norm_inference`]: its inference pass, one multiply-add per value, in place;
//! - [`update_in_place`]: an optimizer's elementwise step on a parameter and its buffers, in their own
//!   storage, multi-threaded (burn has no such op: on other backends the caller keeps its tensor ops);
//! - [`allocator::retain_freed_memory`]: glibc's malloc set to reuse freed tensor buffers rather than
//!   fault fresh zeroed pages in every step.

pub mod allocator;
#[cfg(feature = "flex")]
pub mod batch_norm;
#[cfg(feature = "flex")]
pub mod conv;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
pub mod in_place;

use burn::tensor::Tensor;
use burn::tensor::module::{
    BatchNormTrainOutput, batch_norm as burn_batch_norm, batch_norm_train as burn_batch_norm_train,
    conv2d as burn_conv2d,
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

/// BatchNorm with given statistics as burn's [`burn::tensor::module::batch_norm`] (running statistics,
/// for inference); on flex outside autodiff, one multiply-add per value in `x`'s own storage, as
/// PyTorch's CPU kernel computes it.
pub fn batch_norm_inference(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    variance: Tensor<1>,
    epsilon: f64,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if flex::runs_batch_norm_inference(&x, [&gamma, &beta, &mean, &variance]) {
        return flex::batch_norm_inference(x, [gamma, beta, mean, variance], epsilon);
    }
    burn_batch_norm(x, gamma, beta, mean, variance, epsilon)
}

/// A parameter, its gradient and its optimizer buffers (empty before the first step), all flat (rank 1).
#[derive(Debug)]
pub struct FlatUpdate {
    /// The parameter.
    pub param: Tensor<1>,
    /// Its gradient.
    pub grad: Tensor<1>,
    /// The optimizer's buffers for it, in the optimizer's order; empty before its first step.
    pub buffers: Vec<Tensor<1>>,
}

/// Runs `update(param, grad, buffers)` over aligned blocks of float32 flex tensors, in parallel, writing
/// the parameter and the buffers in their own storage; returns them. Before the first step (no buffers
/// given) `kept` buffers start as zeros. Anywhere else (another backend or dtype, autodiff tensors) the
/// tensors come back untouched as `Err`, for the caller's tensor-op path.
pub fn update_in_place<F>(
    tensors: FlatUpdate,
    kept: usize,
    update: F,
) -> Result<(Tensor<1>, Vec<Tensor<1>>), Box<FlatUpdate>>
where
    F: Fn(&mut [f32], &[f32], &mut [&mut [f32]]) + Sync,
{
    #[cfg(feature = "flex")]
    if in_place::runs(&tensors.param, &tensors.grad, &tensors.buffers) {
        let FlatUpdate { param, grad, buffers } = tensors;
        return Ok(in_place::update(param, grad, buffers, kept, update));
    }
    #[cfg(not(feature = "flex"))]
    let _ = (kept, update);
    Err(Box::new(tensors))
}
