//! The standard models by timm's names: `ftcal models` lists them, configs name them.

use crate::resnet::{BlockKind, ResNetConfig};
use crate::vit::{Activation, VitConfig};
use crate::{ModelConfig, ModelError};

/// A named model.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    /// timm's name, e.g. `resnet50`.
    pub name: &'static str,
    /// Its description.
    pub config: ModelConfig,
    /// Where its pretrained weights come from, as timm names them (`arch.tag`).
    pub weights: &'static str,
}

/// Every registered model, in listing order.
pub fn models() -> Vec<RegisteredModel> {
    let resnet = |name, block, layers, weights| RegisteredModel {
        name,
        config: ModelConfig::Resnet(ResNetConfig::standard(block, layers)),
        weights,
    };
    let vit = |name, patch, embed, depth, heads, weights| RegisteredModel {
        name,
        config: ModelConfig::Vit(VitConfig::standard(patch, embed, depth, heads)),
        weights,
    };
    let clip = |name, activation, weights| {
        let mut config = VitConfig::standard(32, 768, 12, 12);
        config.pre_norm = true;
        config.activation = activation;
        // The OpenAI image tower's projection to the 512-d joint embedding is timm's head.
        config.classes = 512;
        RegisteredModel {
            name,
            config: ModelConfig::Vit(config),
            weights,
        }
    };
    vec![
        resnet("resnet18", BlockKind::Basic, [2, 2, 2, 2], "resnet18.tv_in1k"),
        resnet("resnet34", BlockKind::Basic, [3, 4, 6, 3], "resnet34.tv_in1k"),
        resnet(
            "resnet50",
            BlockKind::Bottleneck,
            [3, 4, 6, 3],
            "resnet50.tv_in1k (the paper's), resnet50.a1_in1k",
        ),
        vit(
            "vit_tiny_patch16_224",
            16,
            192,
            12,
            3,
            "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
        ),
        vit(
            "vit_small_patch16_224",
            16,
            384,
            12,
            6,
            "vit_small_patch16_224.augreg_in21k_ft_in1k",
        ),
        vit(
            "vit_small_patch32_224",
            32,
            384,
            12,
            6,
            "vit_small_patch32_224.augreg_in21k_ft_in1k",
        ),
        vit(
            "vit_base_patch16_224",
            16,
            768,
            12,
            12,
            "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        ),
        vit(
            "vit_base_patch32_224",
            32,
            768,
            12,
            12,
            "vit_base_patch32_224.augreg_in21k_ft_in1k",
        ),
        clip(
            "vit_base_patch32_clip_224",
            Activation::Gelu,
            "vit_base_patch32_clip_224.openai (GELU, as timm builds it)",
        ),
        clip(
            "vit_base_patch32_clip_quickgelu_224",
            Activation::QuickGelu,
            "vit_base_patch32_clip_quickgelu_224.openai (QuickGELU, as CLIP was trained)",
        ),
    ]
}

/// The model named `name` (timm's name), or an error listing the names with the nearest one.
pub fn model(name: &str, key: &str) -> Result<RegisteredModel, ModelError> {
    let all = models();
    if let Some(found) = all.iter().find(|model| model.name == name) {
        return Ok(found.clone());
    }
    let nearest = all
        .iter()
        .map(|model| (strsim::levenshtein(name, model.name), model.name))
        .min()
        .filter(|(distance, _)| *distance <= 4)
        .map(|(_, nearest)| format!(" (did you mean {nearest:?}?)"))
        .unwrap_or_default();
    let names: Vec<&str> = all.iter().map(|model| model.name).collect();
    Err(ModelError::config(
        key,
        format!(
            "unknown model {name:?}{nearest}; the models are {}",
            names.join(", ")
        ),
    ))
}
