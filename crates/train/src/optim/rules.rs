//! The update rules, one function per optimizer: torch's single-tensor (`foreach=False`) code path,
//! operation by operation, in `f32`, with the scalar coefficients computed in `f64` as Python does.
//! `addcmul`/`addcdiv` are written `self + (value·t1)·t2` and `self + (value·t1)/t2`, `add(other, alpha)`
//! as `self + alpha·other`. Parameters and buffers are flat (rank 1).
//!
//! Each rule is written once over [`Elementwise`] values: whole tensors on any backend, or, on flex, the
//! blocks of ftcal-kernels' in-place step; the two give bit-identical results.

use super::elementwise::Elementwise;
use super::settings::{AdaBelief, Adadelta, Adagrad, Adam, AdamW, OptimizerSettings, Rmsprop, Sgd};

/// What a rule sees of one step besides the parameter and its gradient.
pub(super) struct Step<T> {
    /// The parameter's learning rate.
    pub(super) lr: f64,
    /// This step's number, from 1 (torch's `state["step"]` after its increment).
    pub(super) count: f64,
    /// The buffers after the previous step, in [`OptimizerSettings::buffer_names`]' order; empty before
    /// the first.
    pub(super) previous: Vec<T>,
}

impl<T: Elementwise> Step<T> {
    /// The previous buffer at `index`, or zeros like `like` before the first step.
    fn buffer_or_zeros(&self, index: usize, like: &T) -> T {
        self.previous
            .get(index)
            .cloned()
            .unwrap_or_else(|| like.zeros_like())
    }
}

/// One parameter's update under `settings`: the parameter after the step and the buffers to keep, in
/// [`OptimizerSettings::buffer_names`]' order.
pub(super) fn update<T: Elementwise>(
    settings: &OptimizerSettings,
    step: &Step<T>,
    param: T,
    grad: T,
) -> Updated<T> {
    match settings {
        OptimizerSettings::Sgd(options) => sgd(options, step, param, grad),
        OptimizerSettings::Adam(options) => adam(options, step, param, grad),
        OptimizerSettings::Adamw(options) => adamw(options, step, param, grad),
        OptimizerSettings::Adagrad(options) => adagrad(options, step, param, grad),
        OptimizerSettings::Rmsprop(options) => rmsprop(options, step, param, grad),
        OptimizerSettings::Adabelief(options) => adabelief(options, step, param, grad),
        OptimizerSettings::Adadelta(options) => adadelta(options, step, param, grad),
    }
}

/// The parameter after the step and the buffers to keep.
pub(super) type Updated<T> = (T, Vec<T>);

/// L2 weight decay: `grad + wd·param` (skipped at 0, as torch skips it, so that no rounding is added).
fn l2<T: Elementwise>(grad: T, param: &T, weight_decay: f64) -> T {
    if weight_decay != 0.0 {
        grad + param.clone().mul_scalar(weight_decay)
    } else {
        grad
    }
}

/// torch's `lerp_` with a scalar weight: `start + w·(end − start)` for w < 0.5, else
/// `end − (1 − w)·(end − start)`, the two forms its kernel picks between for accuracy.
fn lerp<T: Elementwise>(start: T, end: T, weight: f64) -> T {
    let difference = end.clone() - start.clone();
    if weight.abs() < 0.5 {
        start + difference.mul_scalar(weight)
    } else {
        end + difference.mul_scalar(weight - 1.0)
    }
}

/// `torch.optim.SGD`.
fn sgd<T: Elementwise>(options: &Sgd, step: &Step<T>, param: T, grad: T) -> Updated<T> {
    let mut grad = l2(grad, &param, options.weight_decay);
    let mut buffers = Vec::new();
    if options.momentum != 0.0 {
        // The first step's buffer is the gradient itself, not a damped one.
        let buffer = match step.previous.first() {
            Some(previous) => {
                previous.clone().mul_scalar(options.momentum)
                    + grad.clone().mul_scalar(1.0 - options.dampening)
            }
            None => grad.clone(),
        };
        grad = if options.nesterov {
            grad + buffer.clone().mul_scalar(options.momentum)
        } else {
            buffer.clone()
        };
        buffers.push(buffer);
    }
    (param + grad.mul_scalar(-step.lr), buffers)
}

/// Adam's moments and step (torch's `_single_tensor_adam`, shared by Adam and AdamW).
fn adam_step<T: Elementwise>(betas: [f64; 2], eps: f64, step: &Step<T>, param: T, grad: T) -> Updated<T> {
    let [beta1, beta2] = betas;
    let exp_avg = lerp(step.buffer_or_zeros(0, &grad), grad.clone(), 1.0 - beta1);
    let exp_avg_sq =
        step.buffer_or_zeros(1, &grad).mul_scalar(beta2) + grad.clone().mul_scalar(1.0 - beta2) * grad;
    let bias_correction1 = 1.0 - beta1.powf(step.count);
    let bias_correction2 = 1.0 - beta2.powf(step.count);
    let step_size = step.lr / bias_correction1;
    let denom = exp_avg_sq
        .clone()
        .sqrt()
        .div_scalar(bias_correction2.powf(0.5))
        .add_scalar(eps);
    let param = param + exp_avg.clone().mul_scalar(-step_size) / denom;
    (param, vec![exp_avg, exp_avg_sq])
}

/// `torch.optim.Adam`: L2 weight decay on the gradient.
fn adam<T: Elementwise>(options: &Adam, step: &Step<T>, param: T, grad: T) -> Updated<T> {
    let grad = l2(grad, &param, options.weight_decay);
    adam_step(options.betas, options.eps, step, param, grad)
}

/// `torch.optim.AdamW`: the parameter shrinks by `lr·wd` before Adam's step.
fn adamw<T: Elementwise>(options: &AdamW, step: &Step<T>, param: T, grad: T) -> Updated<T> {
    let param = if options.weight_decay != 0.0 {
        param.mul_scalar(1.0 - step.lr * options.weight_decay)
    } else {
        param
    };
    adam_step(options.betas, options.eps, step, param, grad)
}

/// `torch.optim.Adagrad`.
fn adagrad<T: Elementwise>(options: &Adagrad, step: &Step<T>, param: T, grad: T) -> Updated<T> {
    let grad = l2(grad, &param, options.weight_decay);
    let clr = step.lr / (1.0 + (step.count - 1.0) * options.lr_decay);
    let previous =
        (step.previous.first().cloned()).unwrap_or_else(|| grad.full_like(options.initial_accumulator_value));
    let sum = previous + grad.clone() * grad.clone();
    let std = sum.clone().sqrt().add_scalar(options.eps);
    (param + grad.mul_scalar(-clr) / std, vec![sum])
}

/// `torch.optim.RMSprop`; its buffers are `square_avg`, then `momentum_buffer` and `grad_avg` when kept.
fn rmsprop<T: Elementwise>(options: &Rmsprop, step: &Step<T>, param: T, grad: T) -> Updated<T> {
    let alpha = options.alpha;
    let grad = l2(grad, &param, options.weight_decay);
    let mut previous = step.previous.iter().cloned();
    let mut next = || previous.next().unwrap_or_else(|| grad.zeros_like());
    let square_avg = next().mul_scalar(alpha) + grad.clone().mul_scalar(1.0 - alpha) * grad.clone();
    let momentum_buffer = (options.momentum > 0.0).then(&mut next);
    let grad_avg = options.centered.then(|| lerp(next(), grad.clone(), 1.0 - alpha));
    let avg = match &grad_avg {
        Some(grad_avg) => (square_avg.clone() - grad_avg.clone() * grad_avg.clone()).sqrt(),
        None => square_avg.clone().sqrt(),
    }
    .add_scalar(options.eps);
    let mut buffers = vec![square_avg];
    let param = match momentum_buffer {
        Some(buffer) => {
            let buffer = buffer.mul_scalar(options.momentum) + grad / avg;
            buffers.push(buffer.clone());
            param + buffer.mul_scalar(-step.lr)
        }
        None => param + grad.mul_scalar(-step.lr) / avg,
    };
    buffers.extend(grad_avg);
    (param, buffers)
}

/// `torch.optim.Adadelta`.
fn adadelta<T: Elementwise>(options: &Adadelta, step: &Step<T>, param: T, grad: T) -> Updated<T> {
    let (rho, eps) = (options.rho, options.eps);
    let grad = l2(grad, &param, options.weight_decay);
    let square_avg =
        step.buffer_or_zeros(0, &grad).mul_scalar(rho) + grad.clone().mul_scalar(1.0 - rho) * grad.clone();
    let acc_delta = step.buffer_or_zeros(1, &grad);
    let std = square_avg.clone().add_scalar(eps).sqrt();
    let delta = acc_delta.clone().add_scalar(eps).sqrt() / std * grad;
    let acc_delta = acc_delta.mul_scalar(rho) + delta.clone().mul_scalar(1.0 - rho) * delta.clone();
    (param + delta.mul_scalar(-step.lr), vec![square_avg, acc_delta])
}

/// AdaBelief as `adabelief-pytorch` 0.2.x: decoupled decay, rectified, degenerating to SGD with momentum.
fn adabelief<T: Elementwise>(options: &AdaBelief, step: &Step<T>, param: T, grad: T) -> Updated<T> {
    let [beta1, beta2] = options.betas;
    let (eps, lr) = (options.eps, step.lr);
    // weight_decouple=True, fixed_decay=False: p *= 1 − lr·wd before anything else.
    let param = if options.weight_decay != 0.0 {
        param.mul_scalar(1.0 - lr * options.weight_decay)
    } else {
        param
    };
    let exp_avg = step.buffer_or_zeros(0, &grad).mul_scalar(beta1) + grad.clone().mul_scalar(1.0 - beta1);
    let residual = grad.clone() - exp_avg.clone();
    // The package adds ε to the stored variance in place every step (`exp_avg_var.add_(eps)`).
    let exp_avg_var = (step.buffer_or_zeros(1, &grad).mul_scalar(beta2)
        + residual.clone().mul_scalar(1.0 - beta2) * residual)
        .add_scalar(eps);
    // Rectification (RAdam's), degenerating to SGD with momentum while N_sma < 5.
    let beta2_t = beta2.powf(step.count);
    let n_sma_max = 2.0 / (1.0 - beta2) - 1.0;
    let n_sma = n_sma_max - 2.0 * step.count * beta2_t / (1.0 - beta2_t);
    let param = if n_sma >= 5.0 {
        let step_size = ((1.0 - beta2_t) * (n_sma - 4.0) / (n_sma_max - 4.0) * (n_sma - 2.0) / n_sma
            * n_sma_max
            / (n_sma_max - 2.0))
            .sqrt()
            / (1.0 - beta1.powf(step.count));
        let denom = exp_avg_var.clone().sqrt().add_scalar(eps);
        param + exp_avg.clone().mul_scalar(-step_size * lr) / denom
    } else {
        let step_size = 1.0 / (1.0 - beta1.powf(step.count));
        param + exp_avg.clone().mul_scalar(-step_size * lr)
    };
    (param, vec![exp_avg, exp_avg_var])
}
