//! ResNet and ViT backbones, the linear head and timm/torchvision weight loading (not yet written: issue 4).

#![warn(missing_docs)]
