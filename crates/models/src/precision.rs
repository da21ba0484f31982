//! Mixed precision, as PyTorch's autocast does it: the products (convolutions, linear layers, attention's
//! matmuls) take bfloat16 inputs and weights, and everything else (BatchNorm, LayerNorm, softmax, the
//! loss, the optimizer's weights and state) stays float32. Each product casts its operands down and its
//! result back up, so that the module's parameters stay float32 and their gradients arrive in float32
//! through the casts' backward.

use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::module::linear;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{FloatDType, Tensor};
use ftcal_kernels::conv2d;
use serde::{Deserialize, Serialize};

/// The dtype of a model's products: `precision =` of a run config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in float32 (the default).
    #[default]
    F32,
    /// Convolutions, linear layers and attention's matmuls in bfloat16 with float32 master weights.
    Bf16,
}

impl Precision {
    /// Whether it is float32 throughout (the default, left out of a written config).
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// Its name as a config spells it (`f32`, `bf16`), for logs and benchmark records.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// `conv`'s forward pass, through ftcal's kernels (batch-folded on flex, burn's elsewhere).
    pub fn conv2d(self, conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        // burn's own padding arithmetic is private; ftcal's models pad explicitly or not at all.
        let padding = match conv.padding {
            PaddingConfig2d::Valid => [(0, 0), (0, 0)],
            PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
            PaddingConfig2d::Same => unreachable!("no ftcal model has a convolution with `Same` padding"),
        };
        let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
        let Precision::Bf16 = self else {
            return conv2d(
                x,
                conv.weight.val(),
                conv.bias.as_ref().map(|bias| bias.val()),
                options,
            );
        };
        let out = conv2d(
            down(x),
            down(conv.weight.val()),
            conv.bias.as_ref().map(|bias| down(bias.val())),
            options,
        );
        up(out)
    }

    /// `layer`'s forward pass.
    pub fn linear<const D: usize>(self, layer: &Linear, x: Tensor<D>) -> Tensor<D> {
        let Precision::Bf16 = self else {
            return layer.forward(x);
        };
        let out = linear(
            down(x),
            down(layer.weight.val()),
            layer.bias.as_ref().map(|bias| down(bias.val())),
        );
        up(out)
    }

    /// `lhs · rhs`.
    pub fn matmul<const D: usize>(self, lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
        match self {
            Precision::F32 => lhs.matmul(rhs),
            Precision::Bf16 => up(down(lhs).matmul(down(rhs))),
        }
    }
}

fn down<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.cast(FloatDType::BF16)
}

fn up<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.cast(FloatDType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name` is the config's spelling, so that logs and records name what a config would say.
    #[test]
    fn names_are_the_configs() {
        for precision in [Precision::F32, Precision::Bf16] {
            assert_eq!(serde_json::to_value(precision).unwrap(), precision.name());
        }
    }
}
