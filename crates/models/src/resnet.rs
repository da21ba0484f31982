//! ResNet in the torchvision / timm layout (v1.5: the stride of a bottleneck is on its 3×3 convolution),
//! with BatchNorm, and a small-input stem (3×3 convolution, no max-pool) for 32×32 images.

use burn::module::{Module, Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, max_pool2d};
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use ftcal_kernels::{batch_norm_inference, batch_norm_train};
use serde::{Deserialize, Serialize};

use crate::family::{Classifier, Family, param_ids};
use crate::weights::{TimmWeights, WeightLoader, WeightWriter, key};
use crate::{ModelError, Precision};

/// A residual block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic,
    /// 1×1, 3×3, 1×1 with 4× expansion (ResNet-50 and deeper).
    Bottleneck,
}

impl BlockKind {
    /// Output channels per block channel.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// The stem before the residual stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// 7×7 convolution with stride 2, then a 3×3 max-pool with stride 2 (ImageNet models).
    Imagenet,
    /// 3×3 convolution with stride 1 and no max-pool, for 32×32 inputs.
    Small,
}

/// A ResNet, fully described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Block type.
    pub block: BlockKind,
    /// Blocks per stage, e.g. `[3, 4, 6, 3]` for ResNet-50.
    pub layers: Vec<usize>,
    /// Block channels per stage, e.g. `[64, 128, 256, 512]`.
    #[serde(default = "default_channels")]
    pub channels: Vec<usize>,
    /// Output channels of the stem convolution.
    #[serde(default = "default_stem_width")]
    pub stem_width: usize,
    /// Stem type.
    #[serde(default = "default_stem")]
    pub stem: Stem,
    /// Number of classes of the head.
    pub classes: usize,
    /// Input height and width the model is meant for.
    #[serde(default = "default_image_size")]
    pub image_size: usize,
}

fn default_channels() -> Vec<usize> {
    vec![64, 128, 256, 512]
}
fn default_stem_width() -> usize {
    64
}
fn default_stem() -> Stem {
    Stem::Imagenet
}
fn default_image_size() -> usize {
    224
}

impl ResNetConfig {
    /// The torchvision / timm ResNet with `layers` blocks of `block`, 1000 classes.
    pub fn standard(block: BlockKind, layers: [usize; 4]) -> Self {
        Self {
            block,
            layers: layers.to_vec(),
            channels: default_channels(),
            stem_width: default_stem_width(),
            stem: Stem::Imagenet,
            classes: 1000,
            image_size: 224,
        }
    }
}

impl Family for ResNetConfig {
    type Classifier = ResNet;

    fn validate(&self, key: &str) -> Result<(), ModelError> {
        if self.layers.is_empty() || self.layers.len() != self.channels.len() {
            return Err(ModelError::config(
                format!("{key}.layers"),
                format!(
                    "{} stages of layers but {} of channels; give one channel count per stage",
                    self.layers.len(),
                    self.channels.len()
                ),
            ));
        }
        if self.layers.contains(&0) || self.channels.contains(&0) || self.stem_width == 0 {
            return Err(ModelError::config(
                key,
                "layers, channels and stem_width must be positive",
            ));
        }
        if self.classes == 0 {
            return Err(ModelError::config(format!("{key}.classes"), "must be at least 1"));
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

    fn needs_exact_image_size(&self) -> bool {
        false
    }

    /// The last stage's channels times the block expansion.
    fn feature_dim(&self) -> usize {
        self.channels.last().copied().unwrap_or(0) * self.block.expansion()
    }

    fn num_params(&self) -> usize {
        let norm = |c: usize| 2 * c;
        let stem_kernel = if self.stem == Stem::Imagenet { 7 } else { 3 };
        let mut total = 3 * self.stem_width * stem_kernel * stem_kernel + norm(self.stem_width);
        let mut in_channels = self.stem_width;
        for (stage, (&blocks, &channels)) in self.layers.iter().zip(&self.channels).enumerate() {
            let out = channels * self.block.expansion();
            for index in 0..blocks {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                total += match self.block {
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
        total + in_channels * self.classes + self.classes
    }

    /// Kaiming-normal convolutions and BatchNorm at identity, as torchvision.
    fn init(&self, device: &Device) -> ResNet {
        let conv = |channels: [usize; 2], kernel: usize, stride: usize| {
            Conv2dConfig::new(channels, [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                ))
                .with_bias(false)
                .with_initializer(Initializer::KaimingNormal {
                    gain: 2f64.sqrt(),
                    fan_out_only: true,
                })
                .init(device)
        };
        let norm = |features: usize| BatchNormConfig::new(features).init(device);
        let (stem_kernel, stem_stride) = match self.stem {
            Stem::Imagenet => (7, 2),
            Stem::Small => (3, 1),
        };
        let mut in_channels = self.stem_width;
        let mut stages = Vec::new();
        for (stage, (&blocks, &channels)) in self.layers.iter().zip(&self.channels).enumerate() {
            let out_channels = channels * self.block.expansion();
            let mut stage_blocks = Vec::new();
            for index in 0..blocks {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                let downsample = (stride != 1 || in_channels != out_channels).then(|| Downsample {
                    conv: conv([in_channels, out_channels], 1, stride),
                    bn: norm(out_channels),
                });
                let block = match self.block {
                    BlockKind::Basic => Block {
                        conv1: conv([in_channels, channels], 3, stride),
                        bn1: norm(channels),
                        conv2: conv([channels, channels], 3, 1),
                        bn2: norm(channels),
                        conv3: None,
                        bn3: None,
                        downsample,
                    },
                    BlockKind::Bottleneck => Block {
                        conv1: conv([in_channels, channels], 1, 1),
                        bn1: norm(channels),
                        conv2: conv([channels, channels], 3, stride),
                        bn2: norm(channels),
                        conv3: Some(conv([channels, out_channels], 1, 1)),
                        bn3: Some(norm(out_channels)),
                        downsample,
                    },
                };
                stage_blocks.push(block);
                in_channels = out_channels;
            }
            stages.push(stage_blocks);
        }
        ResNet {
            conv1: conv([3, self.stem_width], stem_kernel, stem_stride),
            bn1: norm(self.stem_width),
            max_pool: self.stem == Stem::Imagenet,
            stages,
            fc: LinearConfig::new(self.feature_dim(), self.classes).init(device),
            cosine_scale: None,
            precision: Precision::F32,
        }
    }
}

/// The 1×1 convolution and BatchNorm that match a block's shortcut to its output (`downsample.0/1`).
#[derive(Module, Debug)]
pub struct Downsample {
    /// `downsample.0`.
    pub conv: Conv2d,
    /// `downsample.1`.
    pub bn: BatchNorm,
}

/// A basic or bottleneck residual block.
#[derive(Module, Debug)]
pub struct Block {
    /// First convolution (3×3 basic, 1×1 bottleneck).
    pub conv1: Conv2d,
    /// Its BatchNorm.
    pub bn1: BatchNorm,
    /// Second convolution (3×3).
    pub conv2: Conv2d,
    /// Its BatchNorm.
    pub bn2: BatchNorm,
    /// Third convolution (bottleneck only, 1×1).
    pub conv3: Option<Conv2d>,
    /// Its BatchNorm.
    pub bn3: Option<BatchNorm>,
    /// Shortcut projection, where the shape changes.
    pub downsample: Option<Downsample>,
}

impl Block {
    fn forward(&self, x: Tensor<4>, precision: Precision) -> Tensor<4> {
        let conv = |conv: &Conv2d, x| precision.conv2d(conv, x);
        let shortcut = match &self.downsample {
            Some(downsample) => batch_norm(&downsample.bn, conv(&downsample.conv, x.clone())),
            None => x.clone(),
        };
        let out = relu(batch_norm(&self.bn1, conv(&self.conv1, x)));
        let out = batch_norm(&self.bn2, conv(&self.conv2, out));
        let out = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => batch_norm(bn3, conv(conv3, relu(out))),
            _ => out,
        };
        relu(out + shortcut)
    }
}

impl TimmWeights for Block {
    fn load_weights(mut self, prefix: &str, loader: &mut WeightLoader<'_>) -> Self {
        self.conv1 = self.conv1.load_weights(&format!("{prefix}.conv1"), loader);
        self.bn1 = self.bn1.load_weights(&format!("{prefix}.bn1"), loader);
        self.conv2 = self.conv2.load_weights(&format!("{prefix}.conv2"), loader);
        self.bn2 = self.bn2.load_weights(&format!("{prefix}.bn2"), loader);
        self.conv3 = self
            .conv3
            .map(|conv| conv.load_weights(&format!("{prefix}.conv3"), loader));
        self.bn3 = self
            .bn3
            .map(|bn| bn.load_weights(&format!("{prefix}.bn3"), loader));
        self.downsample = self.downsample.map(|downsample| Downsample {
            conv: downsample
                .conv
                .load_weights(&format!("{prefix}.downsample.0"), loader),
            bn: downsample
                .bn
                .load_weights(&format!("{prefix}.downsample.1"), loader),
        });
        self
    }

    fn save_weights(&self, prefix: &str, writer: &mut WeightWriter) {
        self.conv1.save_weights(&format!("{prefix}.conv1"), writer);
        self.bn1.save_weights(&format!("{prefix}.bn1"), writer);
        self.conv2.save_weights(&format!("{prefix}.conv2"), writer);
        self.bn2.save_weights(&format!("{prefix}.bn2"), writer);
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            conv3.save_weights(&format!("{prefix}.conv3"), writer);
            bn3.save_weights(&format!("{prefix}.bn3"), writer);
        }
        if let Some(downsample) = &self.downsample {
            downsample
                .conv
                .save_weights(&format!("{prefix}.downsample.0"), writer);
            downsample
                .bn
                .save_weights(&format!("{prefix}.downsample.1"), writer);
        }
    }
}

/// A ResNet: stem, residual stages (timm's `layer1` … `layer4`), global average pool, linear head `fc`.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem convolution.
    pub conv1: Conv2d,
    /// Stem BatchNorm.
    pub bn1: BatchNorm,
    /// Whether the stem ends in a 3×3, stride-2 max-pool.
    pub max_pool: bool,
    /// The residual stages.
    pub stages: Vec<Vec<Block>>,
    /// The linear head.
    pub fc: Linear,
    /// The scale of a cosine head, which uses `fc`'s weights and not its bias; `None`: linear.
    pub cosine_scale: Option<f32>,
    /// The dtype of the convolutions and the head.
    #[module(skip)]
    pub precision: Precision,
}

impl ResNet {
    /// Every BatchNorm, stem first.
    pub fn batch_norms(&self) -> Vec<&BatchNorm> {
        let mut norms = vec![&self.bn1];
        for block in self.stages.iter().flatten() {
            norms.extend([&block.bn1, &block.bn2]);
            norms.extend(block.bn3.as_ref());
            norms.extend(block.downsample.as_ref().map(|downsample| &downsample.bn));
        }
        norms
    }

    /// Every BatchNorm, mutably.
    pub fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut norms = vec![&mut self.bn1];
        for block in self.stages.iter_mut().flatten() {
            norms.extend([&mut block.bn1, &mut block.bn2]);
            norms.extend(block.bn3.as_mut());
            norms.extend(block.downsample.as_mut().map(|downsample| &mut downsample.bn));
        }
        norms
    }
}

impl Classifier for ResNet {
    const HEAD_PREFIX: &'static str = "fc";

    fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = relu(batch_norm(&self.bn1, self.precision.conv2d(&self.conv1, x)));
        if self.max_pool {
            x = max_pool2d(
                x,
                MaxPoolOptions::new([3, 3])
                    .with_stride([2, 2])
                    .with_padding([1, 1]),
            );
        }
        for stage in &self.stages {
            for block in stage {
                x = block.forward(x, self.precision);
            }
        }
        let [batch, channels, _, _] = x.dims();
        adaptive_avg_pool2d(x, [1, 1]).reshape([batch, channels])
    }

    fn head(&self) -> &Linear {
        &self.fc
    }

    fn with_head(self, fc: Linear) -> Self {
        Self { fc, ..self }
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
            conv1: self.conv1.freeze(),
            bn1: self.bn1.freeze(),
            stages: self.stages.freeze(),
            ..self
        }
    }

    fn buffer_ids(&self) -> Vec<ParamId> {
        (self.batch_norms().into_iter())
            .flat_map(|norm| [param_ids(&norm.running_mean), param_ids(&norm.running_var)])
            .flatten()
            .collect()
    }

    fn with_batch_norm_training(mut self, training: bool) -> Self {
        for norm in self.batch_norms_mut() {
            norm.training = Param::from_bool(training);
        }
        self
    }
}

impl TimmWeights for ResNet {
    fn load_weights(mut self, prefix: &str, loader: &mut WeightLoader<'_>) -> Self {
        let at = |name: &str| key(prefix, name);
        self.conv1 = self.conv1.load_weights(&at("conv1"), loader);
        self.bn1 = self.bn1.load_weights(&at("bn1"), loader);
        self.stages = self
            .stages
            .into_iter()
            .enumerate()
            .map(|(stage, blocks)| {
                blocks
                    .into_iter()
                    .enumerate()
                    .map(|(index, block)| {
                        block.load_weights(&at(&format!("layer{}.{index}", stage + 1)), loader)
                    })
                    .collect()
            })
            .collect();
        self.fc = self.fc.load_weights(&at("fc"), loader);
        self
    }

    fn save_weights(&self, prefix: &str, writer: &mut WeightWriter) {
        let at = |name: &str| key(prefix, name);
        self.conv1.save_weights(&at("conv1"), writer);
        self.bn1.save_weights(&at("bn1"), writer);
        for (stage, blocks) in self.stages.iter().enumerate() {
            for (index, block) in blocks.iter().enumerate() {
                block.save_weights(&at(&format!("layer{}.{index}", stage + 1)), writer);
            }
        }
        self.fc.save_weights(&at("fc"), writer);
    }
}

/// BatchNorm as PyTorch's: in training mode the running variance is updated with the *unbiased* batch
/// variance (n / (n − 1) over the n = B·H·W values of a channel), where burn's own layer uses the biased
/// one; otherwise it is burn's inference pass (fused on flex: ftcal-kernels).
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    if !(x.device().is_autodiff() && norm.training.is_enabled()) {
        let device = x.device();
        return batch_norm_inference(
            x,
            norm.gamma.val(),
            norm.beta.val(),
            norm.running_mean.value().to_device(&device),
            norm.running_var.value().to_device(&device),
            norm.epsilon,
        );
    }
    let [batch, _, height, width] = x.dims();
    let count = (batch * height * width) as f64;
    let result = batch_norm_train(x, norm.gamma.val(), norm.beta.val(), norm.epsilon);
    let unbiased = result.variance.mul_scalar(count / (count - 1.0).max(1.0));
    let device = result.output.device();
    let momentum = norm.momentum;
    let running_mean = norm
        .running_mean
        .value_sync()
        .to_device(&device)
        .mul_scalar(1.0 - momentum);
    let running_var = norm
        .running_var
        .value_sync()
        .to_device(&device)
        .mul_scalar(1.0 - momentum);
    norm.running_mean.update(
        running_mean
            .add(result.mean.detach().mul_scalar(momentum))
            .detach(),
    );
    norm.running_var
        .update(running_var.add(unbiased.detach().mul_scalar(momentum)).detach());
    result.output
}
