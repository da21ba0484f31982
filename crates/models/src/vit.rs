//! Vision Transformer in timm's `vit_*_patch{16,32}_224` layout: patch embedding, class token, position
//! embedding, pre-norm blocks with one fused `qkv` projection, final norm, linear `head`; and the CLIP
//! image tower's variant (a LayerNorm before the blocks, no patch-embedding bias, optionally QuickGELU).

use burn::module::{Module, Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::family::{Classifier, Family};
use crate::weights::{TimmWeights, WeightLoader, WeightWriter, key};
use crate::{ModelError, Precision};

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact (erf) GELU, as timm's ViTs and its `*_clip_224` models.
    Gelu,
    /// `x · sigmoid(1.702 x)`, as OpenAI's CLIP was trained (timm's `*_clip_quickgelu_224`).
    QuickGelu,
}

/// A ViT, fully described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Input height and width.
    pub image_size: usize,
    /// Patch side.
    pub patch: usize,
    /// Embedding size D.
    pub embed: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden size as a multiple of D.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// CLIP's LayerNorm before the blocks (and no bias in the patch embedding).
    #[serde(default)]
    pub pre_norm: bool,
    /// MLP activation.
    #[serde(default = "default_activation")]
    pub activation: Activation,
    /// LayerNorm epsilon: timm's ViTs use 1e-6, its CLIP towers 1e-5 (the default follows `pre_norm`).
    pub norm_eps: Option<f64>,
    /// Number of classes of the head.
    pub classes: usize,
}

fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_activation() -> Activation {
    Activation::Gelu
}

impl VitConfig {
    /// timm's `vit_*_patch{patch}_224` with embedding `embed`, `depth` blocks, `heads` heads, 1000 classes.
    pub fn standard(patch: usize, embed: usize, depth: usize, heads: usize) -> Self {
        Self {
            image_size: 224,
            patch,
            embed,
            depth,
            heads,
            mlp_ratio: 4.0,
            pre_norm: false,
            activation: Activation::Gelu,
            norm_eps: None,
            classes: 1000,
        }
    }

    /// The LayerNorm epsilon in use.
    pub fn eps(&self) -> f64 {
        self.norm_eps.unwrap_or(if self.pre_norm { 1e-5 } else { 1e-6 })
    }

    /// Number of patches.
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch).pow(2)
    }

    /// MLP hidden size.
    pub fn hidden(&self) -> usize {
        (self.embed as f64 * self.mlp_ratio) as usize
    }
}

impl Family for VitConfig {
    type Classifier = Vit;

    fn validate(&self, key: &str) -> Result<(), ModelError> {
        if self.patch == 0 || !self.image_size.is_multiple_of(self.patch) {
            return Err(ModelError::config(
                format!("{key}.patch"),
                format!(
                    "image_size {} must be a multiple of the patch {}",
                    self.image_size, self.patch
                ),
            ));
        }
        if self.heads == 0 || !self.embed.is_multiple_of(self.heads) {
            return Err(ModelError::config(
                format!("{key}.heads"),
                format!("embed {} must be a multiple of heads {}", self.embed, self.heads),
            ));
        }
        if self.depth == 0 || self.classes == 0 || self.hidden() == 0 {
            return Err(ModelError::config(
                key,
                "depth, classes and mlp_ratio must be positive",
            ));
        }
        Ok(())
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn set_classes(&mut self, classes: usize) {
        self.classes = classes;
    }

    fn image_size(&self) -> usize {
        self.image_size
    }

    fn set_image_size(&mut self, size: usize) {
        self.image_size = size;
    }

    /// The position embedding has one entry per patch of an `image_size` input.
    fn needs_exact_image_size(&self) -> bool {
        true
    }

    /// The embedding width (the class token's features).
    fn feature_dim(&self) -> usize {
        self.embed
    }

    fn num_params(&self) -> usize {
        let (e, h) = (self.embed, self.hidden());
        let patch = 3 * self.patch * self.patch * e + if self.pre_norm { 0 } else { e };
        let tokens = e + (self.num_patches() + 1) * e;
        let block = 4 * e + (3 * e * e + 3 * e) + (e * e + e) + (e * h + h) + (h * e + e);
        let norms = 2 * e + if self.pre_norm { 2 * e } else { 0 };
        patch + tokens + self.depth * block + norms + e * self.classes + self.classes
    }

    /// Normal weights with std 0.02 (timm's truncated normal, untruncated), zero biases.
    fn init(&self, device: &Device) -> Vit {
        let normal = Initializer::Normal { mean: 0.0, std: 0.02 };
        let linear = |d_in: usize, d_out: usize| {
            LinearConfig::new(d_in, d_out)
                .with_initializer(normal.clone())
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(self.embed)
                .with_epsilon(self.eps())
                .init(device)
        };
        let blocks = (0..self.depth)
            .map(|_| VitBlock {
                norm1: norm(),
                qkv: linear(self.embed, 3 * self.embed),
                proj: linear(self.embed, self.embed),
                norm2: norm(),
                fc1: linear(self.embed, self.hidden()),
                fc2: linear(self.hidden(), self.embed),
                heads: self.heads,
                quick_gelu: self.activation == Activation::QuickGelu,
            })
            .collect();
        Vit {
            patch_embed: Conv2dConfig::new([3, self.embed], [self.patch, self.patch])
                .with_stride([self.patch, self.patch])
                .with_bias(!self.pre_norm)
                .with_initializer(normal.clone())
                .init(device),
            cls_token: normal.init([1, 1, self.embed], device),
            pos_embed: normal.init([1, self.num_patches() + 1, self.embed], device),
            norm_pre: self.pre_norm.then(norm),
            blocks,
            norm: norm(),
            head: linear(self.embed, self.classes),
            cosine_scale: None,
            precision: Precision::F32,
        }
    }
}

/// One pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Module, Debug)]
pub struct VitBlock {
    /// LayerNorm before attention.
    pub norm1: LayerNorm,
    /// Fused query, key and value projection (timm's `attn.qkv`), D → 3D.
    pub qkv: Linear,
    /// Attention output projection (`attn.proj`).
    pub proj: Linear,
    /// LayerNorm before the MLP.
    pub norm2: LayerNorm,
    /// MLP input layer (`mlp.fc1`).
    pub fc1: Linear,
    /// MLP output layer (`mlp.fc2`).
    pub fc2: Linear,
    /// Attention heads.
    pub heads: usize,
    /// QuickGELU instead of GELU.
    pub quick_gelu: bool,
}

impl VitBlock {
    fn attention(&self, x: Tensor<3>, precision: Precision) -> Tensor<3> {
        let [batch, tokens, embed] = x.dims();
        let head_dim = embed / self.heads;
        // [B, N, 3D] → [3, B, H, N, d], q/k/v in that order as timm's reshape(B, N, 3, H, d).
        let qkv = precision
            .linear(&self.qkv, x)
            .reshape([batch, tokens, 3, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let take = |index: usize| {
            qkv.clone()
                .narrow(0, index, 1)
                .reshape([batch, self.heads, tokens, head_dim])
        };
        let (q, k, v) = (take(0), take(1), take(2));
        let scores = precision.matmul(q.mul_scalar((head_dim as f64).powf(-0.5)), k.swap_dims(2, 3));
        let out = precision.matmul(softmax(scores, 3), v);
        precision.linear(&self.proj, out.swap_dims(1, 2).reshape([batch, tokens, embed]))
    }

    fn mlp(&self, x: Tensor<3>, precision: Precision) -> Tensor<3> {
        let hidden = precision.linear(&self.fc1, x);
        let hidden = if self.quick_gelu {
            hidden.clone() * sigmoid(hidden.mul_scalar(1.702))
        } else {
            gelu(hidden)
        };
        precision.linear(&self.fc2, hidden)
    }

    fn forward(&self, x: Tensor<3>, precision: Precision) -> Tensor<3> {
        let x = x.clone() + self.attention(self.norm1.forward(x), precision);
        x.clone() + self.mlp(self.norm2.forward(x), precision)
    }
}

impl TimmWeights for VitBlock {
    fn load_weights(mut self, prefix: &str, loader: &mut WeightLoader<'_>) -> Self {
        self.norm1 = self.norm1.load_weights(&format!("{prefix}.norm1"), loader);
        self.qkv = self.qkv.load_weights(&format!("{prefix}.attn.qkv"), loader);
        self.proj = self.proj.load_weights(&format!("{prefix}.attn.proj"), loader);
        self.norm2 = self.norm2.load_weights(&format!("{prefix}.norm2"), loader);
        self.fc1 = self.fc1.load_weights(&format!("{prefix}.mlp.fc1"), loader);
        self.fc2 = self.fc2.load_weights(&format!("{prefix}.mlp.fc2"), loader);
        self
    }

    fn save_weights(&self, prefix: &str, writer: &mut WeightWriter) {
        self.norm1.save_weights(&format!("{prefix}.norm1"), writer);
        self.qkv.save_weights(&format!("{prefix}.attn.qkv"), writer);
        self.proj.save_weights(&format!("{prefix}.attn.proj"), writer);
        self.norm2.save_weights(&format!("{prefix}.norm2"), writer);
        self.fc1.save_weights(&format!("{prefix}.mlp.fc1"), writer);
        self.fc2.save_weights(&format!("{prefix}.mlp.fc2"), writer);
    }
}

/// A Vision Transformer with a linear head on the final class token.
#[derive(Module, Debug)]
pub struct Vit {
    /// Patch embedding (`patch_embed.proj`).
    pub patch_embed: Conv2d,
    /// Class token `[1, 1, D]`.
    pub cls_token: Param<Tensor<3>>,
    /// Position embedding `[1, 1 + patches, D]`, class token first.
    pub pos_embed: Param<Tensor<3>>,
    /// CLIP's LayerNorm before the blocks.
    pub norm_pre: Option<LayerNorm>,
    /// Transformer blocks.
    pub blocks: Vec<VitBlock>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Linear head.
    pub head: Linear,
    /// The scale of a cosine head, which uses `head`'s weights and not its bias; `None`: linear.
    pub cosine_scale: Option<f32>,
    /// The dtype of the products (patch embedding, attention, MLP, head).
    #[module(skip)]
    pub precision: Precision,
}

impl Classifier for Vit {
    const HEAD_PREFIX: &'static str = "head";

    /// The final class token after the last norm (timm's pre-logits with `global_pool='token'`).
    fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let patches = self.precision.conv2d(&self.patch_embed, x);
        let [batch, embed, _, _] = patches.dims();
        let tokens = patches.flatten::<3>(2, 3).swap_dims(1, 2);
        let cls = self.cls_token.val().expand([batch as i64, -1, -1]);
        let mut x = Tensor::cat(vec![cls, tokens], 1) + self.pos_embed.val();
        if let Some(norm_pre) = &self.norm_pre {
            x = norm_pre.forward(x);
        }
        for block in &self.blocks {
            x = block.forward(x, self.precision);
        }
        let x = self.norm.forward(x);
        x.slice([0..batch, 0..1]).reshape([batch, embed])
    }

    fn head(&self) -> &Linear {
        &self.head
    }

    fn with_head(self, head: Linear) -> Self {
        Self { head, ..self }
    }

    fn cosine_scale(&self) -> Option<f32> {
        self.cosine_scale
    }

    fn with_cosine_scale(self, cosine_scale: Option<f32>) -> Self {
        Self { cosine_scale, ..self }
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    fn freeze_backbone(self) -> Self {
        Self {
            patch_embed: self.patch_embed.freeze(),
            cls_token: self.cls_token.freeze(),
            pos_embed: self.pos_embed.freeze(),
            norm_pre: self.norm_pre.freeze(),
            blocks: self.blocks.freeze(),
            norm: self.norm.freeze(),
            ..self
        }
    }

    /// timm's ViTs have no BatchNorm, so no buffers.
    fn buffer_ids(&self) -> Vec<ParamId> {
        Vec::new()
    }

    fn with_batch_norm_training(self, _training: bool) -> Self {
        self
    }
}

impl TimmWeights for Vit {
    fn load_weights(mut self, prefix: &str, loader: &mut WeightLoader<'_>) -> Self {
        let at = |name: &str| key(prefix, name);
        self.patch_embed = self.patch_embed.load_weights(&at("patch_embed.proj"), loader);
        self.cls_token = loader.param(&at("cls_token"), self.cls_token);
        self.pos_embed = loader.param(&at("pos_embed"), self.pos_embed);
        self.norm_pre = self
            .norm_pre
            .map(|norm| norm.load_weights(&at("norm_pre"), loader));
        self.blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(index, block)| block.load_weights(&at(&format!("blocks.{index}")), loader))
            .collect();
        self.norm = self.norm.load_weights(&at("norm"), loader);
        self.head = self.head.load_weights(&at("head"), loader);
        self
    }

    fn save_weights(&self, prefix: &str, writer: &mut WeightWriter) {
        let at = |name: &str| key(prefix, name);
        self.patch_embed.save_weights(&at("patch_embed.proj"), writer);
        writer.put(&at("cls_token"), self.cls_token.val());
        writer.put(&at("pos_embed"), self.pos_embed.val());
        if let Some(norm_pre) = &self.norm_pre {
            norm_pre.save_weights(&at("norm_pre"), writer);
        }
        for (index, block) in self.blocks.iter().enumerate() {
            block.save_weights(&at(&format!("blocks.{index}")), writer);
        }
        self.norm.save_weights(&at("norm"), writer);
        self.head.save_weights(&at("head"), writer);
    }
}
