//! What ftcal knows of a model family, behind two traits that each family's file implements: [`Family`]
//! for its config (sizes, parameter count, initialisation) and [`Classifier`] for its module (features,
//! head, freezing, BatchNorm). timm's key names are the family's [`TimmWeights`] impls, in the same file.
//! `lib.rs` only dispatches over the families, so a new family is its own file plus a variant in
//! [`crate::ModelConfig`], [`crate::Model`] and `each_family!`.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use crate::weights::TimmWeights;
use crate::{ModelError, Precision};

/// A family's config: one model, fully described.
pub trait Family {
    /// The family's module.
    type Classifier: Classifier;

    /// Checks the sizes; `key` names the config table in errors.
    fn validate(&self, key: &str) -> Result<(), ModelError>;

    /// Number of classes of the head.
    fn classes(&self) -> usize;

    /// Sets the number of classes of the head.
    fn set_classes(&mut self, classes: usize);

    /// Input height and width the model is meant for.
    fn image_size(&self) -> usize;

    /// Sets the input height and width.
    fn set_image_size(&mut self, size: usize);

    /// Whether inputs must have exactly [`Family::image_size`] (a ViT's position embedding fixes the
    /// number of patches) rather than any size (a ResNet pools globally).
    fn needs_exact_image_size(&self) -> bool;

    /// Size D of the pooled features.
    fn feature_dim(&self) -> usize;

    /// Number of trainable parameters (BatchNorm's running statistics are buffers, not counted).
    fn num_params(&self) -> usize;

    /// A freshly initialised model, as timm / torchvision initialise it.
    fn init(&self, device: &Device) -> Self::Classifier;
}

/// A family's module: a backbone giving pooled features and a linear head.
pub trait Classifier: Module + TimmWeights + Sized {
    /// The head's key prefix in timm's names (`fc`, `head`).
    const HEAD_PREFIX: &'static str;

    /// Pooled penultimate features `[B, D]` of images `[B, 3, H, W]`.
    fn features(&self, x: Tensor<4>) -> Tensor<2>;

    /// The linear head.
    fn head(&self) -> &Linear;

    /// The same backbone with `head`.
    fn with_head(self, head: Linear) -> Self;

    /// The scale s of a cosine head (logits s·cos(feature, w_c)); `None`: the head is linear.
    fn cosine_scale(&self) -> Option<f32>;

    /// The same model with a cosine head of scale `scale`, or a linear one (`None`).
    fn with_cosine_scale(self, scale: Option<f32>) -> Self;

    /// The dtype of the model's products.
    fn precision(&self) -> Precision;

    /// The same model with its products in `precision`.
    fn with_precision(self, precision: Precision) -> Self;

    /// The same model with every backbone parameter frozen (no gradient).
    fn freeze_backbone(self) -> Self;

    /// Ids of the tensors burn visits like parameters that are buffers, never optimised (BatchNorm's
    /// running statistics).
    fn buffer_ids(&self) -> Vec<ParamId>;

    /// Sets every BatchNorm's mode (`false`: normalise with the running statistics, never update them).
    fn with_batch_norm_training(self, training: bool) -> Self;
}

/// The ids of every tensor of `module` that burn visits as a float parameter, in visiting order.
pub fn param_ids<M: Module>(module: &M) -> Vec<ParamId> {
    let mut ids = ParamIds(Vec::new());
    module.visit(&mut ids);
    ids.0
}

struct ParamIds(Vec<ParamId>);

impl ModuleVisitor for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }
}
