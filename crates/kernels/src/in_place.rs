//! Elementwise updates of flat float32 flex tensors in their own storage: an optimizer step reads a
//! parameter, its gradient and its buffers once and writes the parameter and buffers back where they
//! were, block by block on every rayon thread, instead of one full-size temporary per tensor operation.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::flex::contiguous;

/// Elements per block handed to the update: 16 KiB per tensor, so that a rule's few temporaries of one
/// block stay in L1 and L2 while the block is worked on.
pub const BLOCK: usize = 4096;

/// Below this many elements a tensor is updated on the calling thread: BatchNorm's vectors and biases
/// are not worth a rayon task each.
const PARALLEL_FROM: usize = 4 * BLOCK;

/// Whether every tensor is a float32 flex tensor outside autodiff, of one length.
pub(crate) fn runs(param: &Tensor<1>, grad: &Tensor<1>, buffers: &[Tensor<1>]) -> bool {
    let length = param.dims()[0];
    std::iter::once(param)
        .chain(std::iter::once(grad))
        .chain(buffers)
        .all(|tensor| {
            tensor.dtype() == DType::F32
                && tensor.device() == Device::flex()
                && !tensor.is_autodiff()
                && tensor.dims()[0] == length
        })
}

/// Runs `update(param, grad, buffers)` over aligned blocks of the tensors, writing `param` and the
/// buffers in place (a storage shared with another tensor is copied once first, as flex's own in-place
/// operations do). With no buffers given, `kept` new ones start as zeros.
pub(crate) fn update<F>(
    param: Tensor<1>,
    grad: Tensor<1>,
    buffers: Vec<Tensor<1>>,
    kept: usize,
    update: F,
) -> (Tensor<1>, Vec<Tensor<1>>)
where
    F: Fn(&mut [f32], &[f32], &mut [&mut [f32]]) + Sync,
{
    let length = param.dims()[0];
    let primitive = |tensor: Tensor<1>| {
        tensor
            .try_into_primitive::<Flex>()
            .expect("a float32 flex tensor outside autodiff has a flex primitive")
    };
    let mut param = primitive(param);
    let grad = primitive(grad);
    let mut buffers: Vec<FlexTensor> = if buffers.is_empty() {
        (0..kept)
            .map(|_| FlexTensor::zeros([length].into(), DType::F32))
            .collect()
    } else {
        buffers.into_iter().map(primitive).collect()
    };

    let grad_values = contiguous(&grad);
    let param_values = contiguous_mut(&mut param);
    let mut buffer_values: Vec<&mut [f32]> = buffers.iter_mut().map(contiguous_mut).collect();
    if length < PARALLEL_FROM {
        update(param_values, &grad_values, &mut buffer_values);
    } else {
        // One work item per block: the block of each tensor, its buffers' blocks gathered beside it.
        let mut buffer_blocks: Vec<Vec<&mut [f32]>> =
            (0..length.div_ceil(BLOCK)).map(|_| Vec::new()).collect();
        for values in buffer_values {
            for (blocks, block) in buffer_blocks.iter_mut().zip(values.chunks_mut(BLOCK)) {
                blocks.push(block);
            }
        }
        param_values
            .par_chunks_mut(BLOCK)
            .zip(grad_values.par_chunks(BLOCK))
            .zip(buffer_blocks.par_iter_mut())
            .for_each(|((param, grad), buffers)| update(param, grad, buffers));
    }
    (
        Tensor::from_primitive::<Flex>(param),
        buffers.into_iter().map(Tensor::from_primitive::<Flex>).collect(),
    )
}

/// The tensor's values, writable in its own storage (made contiguous, and unshared, first if need be).
pub(crate) fn contiguous_mut(tensor: &mut FlexTensor) -> &mut [f32] {
    if tensor.layout().contiguous_offsets().is_none() {
        *tensor = tensor.to_contiguous();
    }
    let (start, end) = tensor
        .layout()
        .contiguous_offsets()
        .expect("a tensor made contiguous has contiguous offsets");
    &mut tensor.storage_mut::<f32>()[start..end]
}
