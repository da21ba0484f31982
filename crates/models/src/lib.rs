//! ResNet and ViT backbones in burn, a linear head, and timm / torchvision weights by timm's key names.
//!
//! One family a file ([`resnet`], [`vit`]); [`registry`] names the standard models as timm does;
//! [`weights`] reads and writes timm-named `.safetensors` and reads PyTorch `.pth` files without running
//! pickled code. [`Model`] is what training uses: features, head, parameter groups.

#![warn(missing_docs)]

mod error;
pub mod family;
mod precision;
pub mod registry;
pub mod resnet;
mod settings;
pub mod vit;
pub mod weights;

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use error::ModelError;
pub use family::{Classifier, Family, param_ids};
pub use precision::Precision;
pub use resnet::{BlockKind, ResNet, ResNetConfig, Stem};
pub use settings::{DEFAULT_COSINE_SCALE, HeadKind, ModelSettings};
pub use vit::{Activation, Vit, VitConfig};
pub use weights::{LoadOptions, TensorMap, TimmWeights, WeightLoader, WeightWriter};

/// Runs `$body` with `$inner` bound to the family config or module inside `$value`, whichever family it
/// is; with `map`, wraps the result in the same family's variant of `$to`. The one place that lists the
/// families.
macro_rules! each_family {
    ($value:expr, $enum:ident, $inner:ident => $body:expr) => {
        match $value {
            $enum::Resnet($inner) => $body,
            $enum::Vit($inner) => $body,
        }
    };
    (map $value:expr, $from:ident => $to:ident, $inner:ident => $body:expr) => {
        match $value {
            $from::Resnet($inner) => $to::Resnet($body),
            $from::Vit($inner) => $to::Vit($body),
        }
    };
}

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
        each_family!(self, ModelConfig, config => config.validate(key))
    }

    /// Number of classes of the head.
    pub fn classes(&self) -> usize {
        each_family!(self, ModelConfig, config => config.classes())
    }

    /// The same model with a head of `classes` classes.
    pub fn with_classes(mut self, classes: usize) -> Self {
        each_family!(&mut self, ModelConfig, config => config.set_classes(classes));
        self
    }

    /// Input height and width.
    pub fn image_size(&self) -> usize {
        each_family!(self, ModelConfig, config => config.image_size())
    }

    /// The same model for inputs of `size`×`size`.
    pub fn with_image_size(mut self, size: usize) -> Self {
        each_family!(&mut self, ModelConfig, config => config.set_image_size(size));
        self
    }

    /// Whether inputs must be exactly [`ModelConfig::image_size`] (a ViT) rather than any size.
    pub fn needs_exact_image_size(&self) -> bool {
        each_family!(self, ModelConfig, config => config.needs_exact_image_size())
    }

    /// Size D of the pooled features.
    pub fn feature_dim(&self) -> usize {
        each_family!(self, ModelConfig, config => config.feature_dim())
    }

    /// Number of trainable parameters (BatchNorm's running statistics are buffers, not counted).
    pub fn num_params(&self) -> usize {
        each_family!(self, ModelConfig, config => config.num_params())
    }

    /// A freshly initialised model.
    pub fn init(&self, device: &Device) -> Model {
        each_family!(map self, ModelConfig => Model, config => config.init(device))
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

/// The L2 norm along `dim` (kept as a size-1 dimension), floored so that a zero vector gives zeros.
fn l2_norm(x: Tensor<2>, dim: usize) -> Tensor<2> {
    x.powi_scalar(2).sum_dim(dim).sqrt().clamp_min(1e-12)
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

impl Model {
    /// Pooled penultimate features `[B, D]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        each_family!(self, Model, model => model.features(x))
    }

    /// The linear head.
    pub fn head(&self) -> &Linear {
        each_family!(self, Model, model => model.head())
    }

    /// Logits `[B, C]` from features `[B, D]`: the linear head's, or a cosine head's s·cos(f, w_c).
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        let precision = self.precision();
        match self.cosine_scale() {
            None => precision.linear(self.head(), features),
            Some(scale) => {
                // The linear head's weights are the class vectors (its columns); the bias is not used, so
                // a cosine head loads from, and saves as, a linear one.
                let weight = self.head().weight.val();
                let features = features.clone() / l2_norm(features, 1);
                let weight = weight.clone() / l2_norm(weight, 0);
                precision.matmul(features, weight).mul_scalar(scale)
            }
        }
    }

    /// The scale s of the cosine head; `None` for a linear head.
    pub fn cosine_scale(&self) -> Option<f32> {
        each_family!(self, Model, model => model.cosine_scale())
    }

    /// The same model with a cosine head of scale `scale` (the linear head's weights as class vectors),
    /// or a linear head (`None`).
    pub fn with_cosine_scale(self, scale: Option<f32>) -> Self {
        each_family!(map self, Model => Model, model => model.with_cosine_scale(scale))
    }

    /// The dtype of the model's products.
    pub fn precision(&self) -> Precision {
        each_family!(self, Model, model => model.precision())
    }

    /// The same model with its products (convolutions, linear layers, attention) in `precision`.
    pub fn with_precision(self, precision: Precision) -> Self {
        each_family!(map self, Model => Model, model => model.with_precision(precision))
    }

    /// Logits `[B, C]` of images `[B, 3, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.logits(self.features(x))
    }

    /// The head's key prefix in timm's names (`fc` for ResNet, `head` for ViT).
    pub fn head_prefix(&self) -> &'static str {
        fn prefix<C: Classifier>(_: &C) -> &'static str {
            C::HEAD_PREFIX
        }
        each_family!(self, Model, model => prefix(model))
    }

    /// The same backbone with a fresh head of `classes` classes.
    pub fn with_new_head(self, classes: usize, device: &Device) -> Self {
        let [d_in, _] = self.head().weight.shape().dims();
        let head = LinearConfig::new(d_in, classes).init(device);
        each_family!(map self, Model => Model, model => model.with_head(head))
    }

    /// The ids of the trainable parameters of `group` (BatchNorm's running statistics excluded).
    pub fn param_ids(&self, group: ParamGroup) -> Vec<ParamId> {
        let head = param_ids(self.head());
        match group {
            ParamGroup::Head => head,
            ParamGroup::Backbone => {
                // Burn visits running statistics like parameters; they are buffers, never optimised.
                let buffers = each_family!(self, Model, model => model.buffer_ids());
                param_ids(self)
                    .into_iter()
                    .filter(|id| !head.contains(id) && !buffers.contains(id))
                    .collect()
            }
        }
    }

    /// Stops gradients to the parameters of `group` (linear probing freezes the backbone; the
    /// frozen-classifier method freezes the head).
    pub fn freeze(self, group: ParamGroup) -> Self {
        match group {
            ParamGroup::Head => {
                let head = self.head().clone().freeze();
                each_family!(map self, Model => Model, model => model.with_head(head))
            }
            ParamGroup::Backbone => each_family!(map self, Model => Model, model => model.freeze_backbone()),
        }
    }

    /// Sets every BatchNorm's mode: `false` normalises with the running statistics and leaves them
    /// unchanged even while the rest of the model trains (the paper's "frozen BatchNorm" option).
    pub fn with_batch_norm_training(self, training: bool) -> Self {
        each_family!(map self, Model => Model, model => model.with_batch_norm_training(training))
    }

    /// Loads timm-named weights; returns whether the model kept its own head (`allow_head_mismatch`).
    pub fn load_timm(
        self,
        map: &TensorMap,
        options: LoadOptions,
        device: &Device,
    ) -> Result<(Self, bool), ModelError> {
        let mut loader = WeightLoader::new(map, device, options, self.head_prefix());
        let model = each_family!(map self, Model => Model, model => model.load_weights("", &mut loader));
        let kept_head = loader.finish()?;
        Ok((model, kept_head))
    }

    /// The model's tensors under timm's names (a state dict timm's `load_state_dict` accepts).
    pub fn to_timm(&self) -> TensorMap {
        let mut writer = WeightWriter::default();
        each_family!(self, Model, model => model.save_weights("", &mut writer));
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn small_resnet() -> ModelConfig {
        toml::from_str(
            "family = \"resnet\"\nblock = \"basic\"\nlayers = [1, 1, 1, 1]\nchannels = [4, 4, 4, 4]\n\
             stem_width = 4\nstem = \"small\"\nclasses = 3\nimage_size = 8\n",
        )
        .unwrap()
    }

    #[test]
    fn a_cosine_head_is_the_scaled_cosine_of_features_and_the_linear_heads_columns() {
        let device = Device::flex();
        let linear = small_resnet().init(&device);
        let cosine = small_resnet().init(&device).with_cosine_scale(Some(16.0));
        // The same weights: a cosine head loads from a linear head's file.
        let (cosine, _) = cosine
            .load_timm(&linear.to_timm(), LoadOptions::default(), &device)
            .unwrap();
        assert_eq!(cosine.cosine_scale(), Some(16.0));
        let features = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0], [2, 4]),
            &device,
        );
        let got: Vec<f32> = cosine
            .logits(features.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let weight: Vec<f32> = linear
            .head()
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let rows: Vec<f32> = features.into_data().try_to_vec::<f32>().unwrap();
        for b in 0..2 {
            let f = &rows[b * 4..b * 4 + 4];
            let f_norm = f.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            for c in 0..3 {
                let w: Vec<f32> = (0..4).map(|d| weight[d * 3 + c]).collect();
                let w_norm = w.iter().map(|v| v * v).sum::<f32>().sqrt();
                let dot: f32 = f.iter().zip(&w).map(|(a, b)| a * b).sum();
                let expected = 16.0 * dot / (f_norm * w_norm);
                assert!(
                    (got[b * 3 + c] - expected).abs() < 1e-4,
                    "{b},{c}: {} vs {expected}",
                    got[b * 3 + c]
                );
            }
        }
        // A zero feature vector (a dead ReLU) gives zero logits, not NaN.
        assert!(got[3..6].iter().all(|v| *v == 0.0), "{got:?}");
        // The scale survives freezing and the linear head's logits are untouched.
        assert_eq!(cosine.freeze(ParamGroup::Head).cosine_scale(), Some(16.0));
        assert_eq!(linear.cosine_scale(), None);
    }

    #[test]
    fn cosine_scale_needs_a_cosine_head_and_a_positive_value() {
        let settings = |text: &str| -> ModelSettings {
            toml::from_str(&format!("arch = \"resnet18\"\n{text}")).unwrap()
        };
        assert_eq!(settings("").head_scale(), None);
        assert_eq!(settings("head = \"cosine\"").head_scale(), Some(16.0));
        assert_eq!(
            settings("head = \"cosine\"\ncosine_scale = 30.0").head_scale(),
            Some(30.0)
        );
        let error = settings("cosine_scale = 30.0")
            .config("model")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("model.cosine_scale") && error.contains("cosine head"),
            "{error}"
        );
        let error = (settings("head = \"cosine\"\ncosine_scale = -1.0")
            .config("model")
            .unwrap_err())
        .to_string();
        assert!(error.contains("positive"), "{error}");
        assert!(toml::from_str::<ModelSettings>("arch = \"resnet18\"\nhead = \"cosin\"").is_err());
        // A linear head is left out of a written config, so configs written before the option read the same.
        assert!(!toml::to_string(&settings("")).unwrap().contains("head ="));
    }
}
