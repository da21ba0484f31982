//! The flex side of the kernels: the backend extension, its flex implementation on contiguous slices,
//! and its autodiff implementation with a handwritten backward pass.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::module::BatchNormTrainOutput;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::batch_norm::{self, BatchNormShape};
use crate::conv::{self, Conv2dGeometry};

/// ftcal's kernels as operations of a burn backend. Only flex implements them: [`crate::conv2d`] and
/// [`crate::batch_norm_train`] call them for flex tensors only, so other backends never reach the
/// generated dispatch.
#[backend_extension(Flex, Autodiff)]
pub trait Kernels: Backend {
    /// A convolution without bias, groups 1, batch-folded.
    fn folded_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// BatchNorm's training pass, fused: (output, batch mean, biased batch variance).
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Whether [`conv2d`] covers this call: float32 tensors on the flex device, ungrouped.
pub(crate) fn runs_conv2d(x: &Tensor<4>, weight: &Tensor<4>, options: &ConvOptions<2>) -> bool {
    options.groups == 1
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && x.device() == Device::flex()
}

/// Whether [`batch_norm_train`] covers this call: float32 tensors on the flex device.
pub(crate) fn runs_batch_norm(x: &Tensor<4>, gamma: &Tensor<1>) -> bool {
    x.dtype() == DType::F32 && gamma.dtype() == DType::F32 && x.device() == Device::flex()
}

/// Whether [`batch_norm_inference`] covers this call: float32 tensors on the flex device, outside
/// autodiff (a frozen BatchNorm inside a training graph needs burn's differentiable op).
pub(crate) fn runs_batch_norm_inference(x: &Tensor<4>, statistics: [&Tensor<1>; 4]) -> bool {
    x.dtype() == DType::F32
        && x.device() == Device::flex()
        && !x.is_autodiff()
        && statistics
            .iter()
            .all(|tensor| tensor.dtype() == DType::F32 && !tensor.is_autodiff())
}

/// BatchNorm's inference pass in `x`'s own storage (copied first if another tensor shares it).
pub(crate) fn batch_norm_inference(
    x: Tensor<4>,
    [gamma, beta, mean, variance]: [Tensor<1>; 4],
    epsilon: f64,
) -> Tensor<4> {
    let host = |tensor: Tensor<1>| {
        tensor
            .into_data()
            .try_into_vec::<f32>()
            .expect("a float32 tensor reads as f32")
    };
    let (gamma, beta, mean, variance) = (host(gamma), host(beta), host(mean), host(variance));
    let mut x = x
        .try_into_primitive::<Flex>()
        .expect("a float32 flex tensor outside autodiff has a flex primitive");
    let shape = batch_norm_shape(&x);
    let values = crate::in_place::contiguous_mut(&mut x);
    batch_norm::inference_in_place(&shape, values, &gamma, &beta, &mean, &variance, epsilon);
    Tensor::from_primitive::<Flex>(x)
}

/// BatchNorm's fused training pass, differentiable in `x`, `gamma` and `beta`; the statistics detached.
pub(crate) fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> BatchNormTrainOutput<4> {
    let (output, mean, variance) = Dispatch::fused_batch_norm_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    BatchNormTrainOutput {
        output: Tensor::from_dispatch(output),
        mean: Tensor::from_dispatch(mean),
        variance: Tensor::from_dispatch(variance),
    }
}

/// The batch-folded convolution of `x` with `weight`, differentiable when `x` or `weight` is tracked.
pub(crate) fn conv2d(x: Tensor<4>, weight: Tensor<4>, options: ConvOptions<2>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::folded_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        options,
    ))
}

impl Kernels for Flex {
    fn folded_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        let geometry = geometry(&x, &weight, &options);
        let [out_height, out_width] = geometry.output();
        let out = conv::forward(&geometry, &contiguous(&x), &contiguous(&weight));
        let shape = [geometry.batch, geometry.channels_out, out_height, out_width];
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn fused_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = batch_norm_shape(&x);
        let result = batch_norm::forward(
            &shape,
            &contiguous(&x),
            &contiguous(&gamma),
            &contiguous(&beta),
            epsilon,
        );
        let channels = [shape.channels];
        (
            FlexTensor::from_data(TensorData::new(result.output, x.shape())),
            FlexTensor::from_data(TensorData::new(result.mean, channels)),
            FlexTensor::from_data(TensorData::new(result.variance, channels)),
        )
    }
}

impl<C: CheckpointStrategy> Kernels for Autodiff<Flex, C> {
    fn folded_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match FoldedConv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = Flex::folded_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                prep.finish((x_state, weight_state, options), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::folded_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // The statistics leave the graph, as burn's own batch_norm_train returns them.
        let detached = <Self as AutodiffBackend>::from_inner;
        match FusedBatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (output, mean, variance) = Flex::fused_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                let state = (x_state, gamma_state, mean.clone(), variance.clone(), epsilon);
                (prep.finish(state, output), detached(mean), detached(variance))
            }
            OpsKind::UnTracked(prep) => {
                let (output, mean, variance) = Flex::fused_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                (prep.finish(output), detached(mean), detached(variance))
            }
        }
    }
}

/// The backward pass of [`Kernels::fused_batch_norm_train`]: the gradients of x, γ and β in one pass.
#[derive(Debug)]
struct FusedBatchNormBackward;

impl Backward<Flex, 3> for FusedBatchNormBackward {
    type State = (NodeId, NodeId, FlexTensor, FlexTensor, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let output_grad = grads.consume::<Flex>(&ops.node);
        let (x_state, gamma_state, mean, variance, epsilon) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let gamma: FlexTensor = checkpointer.retrieve_node_output(gamma_state);
        let shape = batch_norm_shape(&x);
        let result = batch_norm::backward(
            &shape,
            &contiguous(&x),
            &contiguous(&gamma),
            &contiguous(&mean),
            &contiguous(&variance),
            epsilon,
            &contiguous(&output_grad),
        );
        let channels = [shape.channels];
        if let Some(node) = x_node {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(result.x, x.shape())),
            );
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(result.gamma, channels)),
            );
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(result.beta, channels)),
            );
        }
    }
}

fn batch_norm_shape(x: &FlexTensor) -> BatchNormShape {
    let dims = x.shape();
    BatchNormShape {
        batch: dims[0],
        channels: dims[1],
        plane: dims.iter().skip(2).product(),
    }
}

/// The backward pass of [`Kernels::folded_conv2d`]: both gradients from one re-layout of the output's.
#[derive(Debug)]
struct FoldedConv2dBackward;

impl Backward<Flex, 2> for FoldedConv2dBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [x_node, weight_node] = ops.parents;
        let output_grad = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let weight: FlexTensor = checkpointer.retrieve_node_output(weight_state);
        let geometry = geometry(&x, &weight, &options);
        let (input_grad, weight_grad) = conv::backward(
            &geometry,
            &contiguous(&x),
            &contiguous(&weight),
            &contiguous(&output_grad),
            [x_node.is_some(), weight_node.is_some()],
        );
        if let (Some(node), Some(grad)) = (x_node, input_grad) {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(grad, x.shape())));
        }
        if let (Some(node), Some(grad)) = (weight_node, weight_grad) {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(grad, weight.shape())),
            );
        }
    }
}

fn geometry(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Conv2dGeometry {
    let [batch, channels_in, height, width] = x.shape().dims();
    let [channels_out, weight_channels_in, kernel_height, kernel_width] = weight.shape().dims();
    assert_eq!(
        channels_in, weight_channels_in,
        "conv2d: input channels of x and weight"
    );
    Conv2dGeometry {
        batch,
        channels_in,
        channels_out,
        input: [height, width],
        kernel: [kernel_height, kernel_width],
        stride: options.stride,
        padding_begin: options.padding_begin(),
        padding_end: options.padding_end(),
        dilation: options.dilation,
    }
}

/// The tensor's elements in row-major order, without a copy when they already are.
pub(crate) fn contiguous(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(slice) => std::borrow::Cow::Borrowed(slice),
        None => std::borrow::Cow::Owned(
            tensor
                .to_contiguous()
                .as_slice::<f32>()
                .expect("contiguous f32")
                .to_vec(),
        ),
    }
}
