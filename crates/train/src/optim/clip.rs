//! Global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`, without reading anything back to
//! the host.

use std::collections::HashSet;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Scales `grads` so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)`: the norm is taken over every float
/// parameter of `module` that has a gradient in `grads` (each counted once), and every such gradient is
/// multiplied by `min(1, max_norm / (norm + 1e-6))`. Returns the gradients and the norm before clipping,
/// as a one-element tensor on the gradients' device (`None` when no parameter has a gradient). Nothing is
/// read back to the host, as in torch: the coefficient stays on the device. NaN or infinite gradients
/// make the norm non-finite, and the gradients then come out scaled by NaN or 0, as in torch.
///
/// Takes the module instead of a list of ids: gradients can only be read at their rank, which the
/// module's parameters carry.
pub fn clip_grad_norm<M: Module>(
    module: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, Option<Tensor<1>>) {
    let mut norms = GradNorms {
        grads: &grads,
        seen: HashSet::new(),
        norms: Vec::new(),
    };
    module.visit(&mut norms);
    let norms = norms.norms;
    if norms.is_empty() {
        return (grads, None);
    }
    // The norm of the per-tensor norms, as torch stacks them.
    let total = Tensor::cat(norms, 0).square().sum().sqrt();
    // torch: `max_norm / (total + 1e-6)` in f32, where a float over a tensor is `reciprocal() * max_norm`,
    // then clamped to 1 (multiplying by exactly 1 changes no value).
    let coefficient = total
        .clone()
        .add_scalar(1e-6f32)
        .recip()
        .mul_scalar(max_norm as f32)
        .clamp_max(1.0f32);
    let mut grads = grads;
    let mut scale = ScaleGrads {
        grads: &mut grads,
        seen: HashSet::new(),
        coefficient,
    };
    module.visit(&mut scale);
    (grads, Some(total))
}

/// Collects the L2 norm of each parameter's gradient, on the gradients' device.
struct GradNorms<'a> {
    grads: &'a GradientsParams,
    seen: HashSet<ParamId>,
    norms: Vec<Tensor<1>>,
}

impl ModuleVisitor for GradNorms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.seen.insert(param.id) {
            return;
        }
        if let Some(grad) = self.grads.get::<D>(param.id) {
            self.norms.push(grad.square().sum().sqrt());
        }
    }
}

/// Multiplies each parameter's gradient by the clipping coefficient (a one-element tensor).
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    seen: HashSet<ParamId>,
    coefficient: Tensor<1>,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.seen.insert(param.id) {
            return;
        }
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let coefficient = self.coefficient.clone().reshape([1; D]);
            self.grads.register(param.id, grad.mul(coefficient));
        }
    }
}
