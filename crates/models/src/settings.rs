//! `[model]` of a run config: which architecture, which weights.

use std::path::PathBuf;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::weights::{LoadOptions, TensorMap};
use crate::{Model, ModelConfig, ModelError, registry};

/// `[model]`: `arch = "resnet50"` (a registered name) or `arch = "path/to/model.toml"`, and the weights.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// A name of `ftcal models` (timm's), or a model TOML file describing the model fully.
    pub arch: String,
    /// Classes of the head (default: the architecture's, e.g. 1000 for ImageNet models).
    pub classes: Option<usize>,
    /// Input height and width (default: the architecture's).
    pub image_size: Option<usize>,
    /// A timm / torchvision `.safetensors` or `.pth` file, or an ftcal checkpoint; none: random weights.
    pub weights: Option<PathBuf>,
    /// Keep a fresh head when the file's head is missing or has another class count.
    #[serde(default)]
    pub allow_head_mismatch: bool,
    /// The classifier of the pre-trained model and of every fine-tuning (a source stage trains a linear
    /// one): `linear`, or `cosine` (normalised features and class vectors, the appendix's comparison).
    #[serde(default, skip_serializing_if = "HeadKind::is_linear")]
    pub head: HeadKind,
    /// The cosine head's fixed scale s (logits s·cos(f, w_c)); only with `head = "cosine"`. Default 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine_scale: Option<f64>,
}

/// `model.head`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// Logits W·f + b.
    #[default]
    Linear,
    /// Logits s·cos(f, w_c): no bias, no feature or class-vector norm.
    Cosine,
}

impl HeadKind {
    /// Whether it is the linear head (the default, left out of a written config).
    pub fn is_linear(&self) -> bool {
        *self == HeadKind::Linear
    }
}

/// The cosine head's scale when `model.cosine_scale` is not set. Not confirmed as the paper's (its
/// appendix's value could not be read here); 16 lets a softmax reach 0.99 over 1,000 classes.
pub const DEFAULT_COSINE_SCALE: f64 = 16.0;

impl ModelSettings {
    /// The cosine head's scale, `None` for a linear head.
    pub fn head_scale(&self) -> Option<f32> {
        match self.head {
            HeadKind::Linear => None,
            HeadKind::Cosine => Some(self.cosine_scale.unwrap_or(DEFAULT_COSINE_SCALE) as f32),
        }
    }

    /// The model's description; `key` names the config table (`model`) in errors.
    pub fn config(&self, key: &str) -> Result<ModelConfig, ModelError> {
        match (self.head, self.cosine_scale) {
            (HeadKind::Linear, Some(_)) => {
                return Err(ModelError::config(
                    format!("{key}.cosine_scale"),
                    "is for a cosine head; set `head = \"cosine\"` or leave it out",
                ));
            }
            (HeadKind::Cosine, Some(scale)) if !(scale.is_finite() && scale > 0.0) => {
                return Err(ModelError::config(
                    format!("{key}.cosine_scale"),
                    format!("must be a positive number, not {scale}"),
                ));
            }
            _ => {}
        }
        let mut config = if self.arch.ends_with(".toml") {
            ModelConfig::read(&PathBuf::from(&self.arch))?
        } else {
            registry::model(&self.arch, &format!("{key}.arch"))?.config
        };
        if let Some(classes) = self.classes {
            config = config.with_classes(classes);
        }
        if let Some(size) = self.image_size {
            config = config.with_image_size(size);
        }
        config.validate(key)?;
        Ok(config)
    }

    /// Builds the model and loads its weights, if any. Returns the description, the model and whether
    /// a fresh head was kept.
    pub fn build(&self, key: &str, device: &Device) -> Result<(ModelConfig, Model, bool), ModelError> {
        let config = self.config(key)?;
        let model = config.init(device);
        match &self.weights {
            None => Ok((config, model, false)),
            Some(path) => {
                let map = TensorMap::read(&expand_home(path))?;
                let options = LoadOptions {
                    allow_head_mismatch: self.allow_head_mismatch,
                };
                let (model, kept_head) = model.load_timm(&map, options, device)?;
                Ok((config, model, kept_head))
            }
        }
    }
}

/// Expands a leading `~/` to the home folder.
fn expand_home(path: &std::path::Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}
