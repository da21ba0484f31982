//! ResNet and ViT backbones in burn, a linear head, and timm / torchvision weights by timm's key names.
//!
//! One family a file ([`resnet`], [`vit`]); [`registry`] names the standard models as timm does;
//! [`weights`] reads and writes timm-named `.safetensors` and reads PyTorch `.pth` files without running
//! pickled code. [`Model`] is what training uses: features, head, parameter groups.

#![warn(missing_docs)]

mod error;
pub mod registry;
pub mod resnet;
mod settings;
pub mod vit;
pub mod weights;

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use error::ModelError;
pub use resnet::{BlockKind, ResNet, ResNetConfig, Stem};
pub use settings::ModelSettings;
pub use vit::{Activation, Vit, VitConfig};
pub use weights::{LoadOptions, TensorMap, TimmWeights, WeightLoader, WeightWriter};

/// A model, fully described: a model TOML file, or `[model]` of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ModelConfig {
    /// A ResNet.
    Resnet(ResNetConfig),
    /// A Vision Transformer.
    Vit(VitConfig),
}

impl ModelConfig {
    /// Checks the sizes; `key` names the config table in errors.
    pub fn validate(&self, key: &str) -> Result<(), ModelError> {
        match self {
            ModelConfig::Resnet(config) => config.validate(key),
            ModelConfig::Vit(config) => config.validate(key),
        }
    }

    /// Number of classes of the head.
    pub fn classes(&self) -> usize {
        match self {
            ModelConfig::Resnet(config) => config.classes,
            ModelConfig::Vit(config) => config.classes,
        }
    }

    /// The same model with a head of `classes` classes.
    pub fn with_classes(mut self, classes: usize) -> Self {
        match &mut self {
            ModelConfig::Resnet(config) => config.classes = classes,
            ModelConfig::Vit(config) => config.classes = classes,
        }
        self
    }

    /// Input height and width.
    pub fn image_size(&self) -> usize {
        match self {
            ModelConfig::Resnet(config) => config.image_size,
            ModelConfig::Vit(config) => config.image_size,
        }
    }

    /// Size D of the pooled features.
    pub fn feature_dim(&self) -> usize {
        match self {
            ModelConfig::Resnet(config) => config.feature_dim(),
            ModelConfig::Vit(config) => config.embed,
        }
    }

    /// Number of trainable parameters (BatchNorm's running statistics are buffers, not counted).
    pub fn num_params(&self) -> usize {
        match self {
            ModelConfig::Resnet(config) => {
                let norm = |c: usize| 2 * c;
                let stem_kernel = if config.stem == Stem::Imagenet { 7 } else { 3 };
                let mut total = 3 * config.stem_width * stem_kernel * stem_kernel + norm(config.stem_width);
                let mut in_channels = config.stem_width;
                for (stage, (&blocks, &channels)) in config.layers.iter().zip(&config.channels).enumerate() {
                    let out = channels * config.block.expansion();
                    for index in 0..blocks {
                        let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                        total += match config.block {
                            BlockKind::Basic => {
                                in_channels * channels * 9 + channels * channels * 9 + 2 * norm(channels)
                            }
                            BlockKind::Bottleneck => {
                                in_channels * channels
                                    + channels * channels * 9
                                    + channels * out
                                    + 2 * norm(channels)
                                    + norm(out)
                            }
                        };
                        if stride != 1 || in_channels != out {
                            total += in_channels * out + norm(out);
                        }
                        in_channels = out;
                    }
                }
                total + in_channels * config.classes + config.classes
            }
            ModelConfig::Vit(config) => {
                let (e, h) = (config.embed, config.hidden());
                let patch = 3 * config.patch * config.patch * e + if config.pre_norm { 0 } else { e };
                let tokens = e + (config.num_patches() + 1) * e;
                let block = 4 * e + (3 * e * e + 3 * e) + (e * e + e) + (e * h + h) + (h * e + e);
                let norms = 2 * e + if config.pre_norm { 2 * e } else { 0 };
                patch + tokens + config.depth * block + norms + e * config.classes + config.classes
            }
        }
    }

    /// A freshly initialised model.
    pub fn init(&self, device: &Device) -> Model {
        match self {
            ModelConfig::Resnet(config) => Model::Resnet(config.init(device)),
            ModelConfig::Vit(config) => Model::Vit(config.init(device)),
        }
    }

    /// Reads a model TOML file (`family = "resnet"` or `"vit"`, then the family's fields).
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ModelError::file(path, format!("cannot read: {error}")))?;
        let config: Self =
            toml::from_str(&text).map_err(|error| ModelError::file(path, error.to_string()))?;
        config.validate("model")?;
        Ok(config)
    }
}

/// The two groups of parameters, for per-group learning rates and freezing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamGroup {
    /// Everything but the head.
    Backbone,
    /// The linear head.
    Head,
}

/// A classifier: a backbone giving pooled features `[B, D]` and a linear head D → C.
#[derive(Module, Debug)]
pub enum Model {
    /// A ResNet (head `fc`).
    Resnet(ResNet),
    /// A Vision Transformer (head `head`).
    Vit(Vit),
}

struct ParamIds(Vec<ParamId>);

impl ModuleVisitor for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }
}

impl Model {
    /// Pooled penultimate features `[B, D]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Model::Resnet(model) => model.features(x),
            Model::Vit(model) => model.features(x),
        }
    }

    /// The linear head.
    pub fn head(&self) -> &Linear {
        match self {
            Model::Resnet(model) => &model.fc,
            Model::Vit(model) => &model.head,
        }
    }

    /// Logits `[B, C]` from features `[B, D]`.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.head().forward(features)
    }

    /// Logits `[B, C]` of images `[B, 3, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.logits(self.features(x))
    }

    /// The head's key prefix in timm's names (`fc` for ResNet, `head` for ViT).
    pub fn head_prefix(&self) -> &'static str {
        match self {
            Model::Resnet(_) => "fc",
            Model::Vit(_) => "head",
        }
    }

    /// The same backbone with a fresh head of `classes` classes.
    pub fn with_new_head(self, classes: usize, device: &Device) -> Self {
        let replace = |head: &Linear| {
            let [d_in, _] = head.weight.shape().dims();
            LinearConfig::new(d_in, classes).init(device)
        };
        match self {
            Model::Resnet(mut model) => {
                model.fc = replace(&model.fc);
                Model::Resnet(model)
            }
            Model::Vit(mut model) => {
                model.head = replace(&model.head);
                Model::Vit(model)
            }
        }
    }

    /// The ids of the trainable parameters of `group` (BatchNorm's running statistics excluded).
    pub fn param_ids(&self, group: ParamGroup) -> Vec<ParamId> {
        let mut head = ParamIds(Vec::new());
        self.head().visit(&mut head);
        match group {
            ParamGroup::Head => head.0,
            ParamGroup::Backbone => {
                // Burn visits running statistics like parameters; they are buffers, never optimised.
                let mut buffers = ParamIds(Vec::new());
                if let Model::Resnet(model) = self {
                    for norm in model.batch_norms() {
                        norm.running_mean.visit(&mut buffers);
                        norm.running_var.visit(&mut buffers);
                    }
                }
                let mut all = ParamIds(Vec::new());
                self.visit(&mut all);
                all.0
                    .into_iter()
                    .filter(|id| !head.0.contains(id) && !buffers.0.contains(id))
                    .collect()
            }
        }
    }

    /// Stops gradients to the parameters of `group` (linear probing freezes the backbone; the
    /// frozen-classifier method freezes the head).
    pub fn freeze(self, group: ParamGroup) -> Self {
        match (self, group) {
            (Model::Resnet(mut model), ParamGroup::Head) => {
                model.fc = model.fc.freeze();
                Model::Resnet(model)
            }
            (Model::Resnet(model), ParamGroup::Backbone) => Model::Resnet(ResNet {
                conv1: model.conv1.freeze(),
                bn1: model.bn1.freeze(),
                stages: model.stages.freeze(),
                ..model
            }),
            (Model::Vit(mut model), ParamGroup::Head) => {
                model.head = model.head.freeze();
                Model::Vit(model)
            }
            (Model::Vit(model), ParamGroup::Backbone) => Model::Vit(Vit {
                patch_embed: model.patch_embed.freeze(),
                cls_token: model.cls_token.freeze(),
                pos_embed: model.pos_embed.freeze(),
                norm_pre: model.norm_pre.freeze(),
                blocks: model.blocks.freeze(),
                norm: model.norm.freeze(),
                ..model
            }),
        }
    }

    /// Sets every BatchNorm's mode: `false` normalises with the running statistics and leaves them
    /// unchanged even while the rest of the model trains (the paper's "frozen BatchNorm" option).
    pub fn with_batch_norm_training(self, training: bool) -> Self {
        match self {
            Model::Resnet(mut model) => {
                for norm in model.batch_norms_mut() {
                    norm.training = Param::from_bool(training);
                }
                Model::Resnet(model)
            }
            // timm's ViTs have no BatchNorm.
            Model::Vit(model) => Model::Vit(model),
        }
    }

    /// Loads timm-named weights; returns whether the model kept its own head (`allow_head_mismatch`).
    pub fn load_timm(
        self,
        map: &TensorMap,
        options: LoadOptions,
        device: &Device,
    ) -> Result<(Self, bool), ModelError> {
        let mut loader = WeightLoader::new(map, device, options, self.head_prefix());
        let model = match self {
            Model::Resnet(model) => Model::Resnet(model.load_weights("", &mut loader)),
            Model::Vit(model) => Model::Vit(model.load_weights("", &mut loader)),
        };
        let kept_head = loader.finish()?;
        Ok((model, kept_head))
    }

    /// The model's tensors under timm's names (a state dict timm's `load_state_dict` accepts).
    pub fn to_timm(&self) -> TensorMap {
        let mut writer = WeightWriter::default();
        match self {
            Model::Resnet(model) => model.save_weights("", &mut writer),
            Model::Vit(model) => model.save_weights("", &mut writer),
        }
        writer.map
    }

    /// Writes the model as a timm-named `.safetensors` file, with its config in the metadata (key
    /// `ftcal_model`, TOML) so that `ftcal` can rebuild it.
    pub fn save(&self, config: &ModelConfig, path: &Path) -> Result<(), ModelError> {
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_string(), "pt".to_string());
        let config = toml::to_string(config).map_err(|error| ModelError::file(path, error.to_string()))?;
        metadata.insert("ftcal_model".to_string(), config);
        self.to_timm().write_safetensors(path, metadata)
    }
}
