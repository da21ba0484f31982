//! The run config: one TOML file from the source model to the report (the tables of `configs/`).

use serde::{Deserialize, Serialize};

/// Which burn backend runs the tensors; the binary must have been built with it (cli features).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's `flex`, the CPU backend (the default).
    #[default]
    Flex,
    /// burn's `wgpu` (Vulkan, Metal, DX12; also Mesa's software Vulkan).
    Wgpu,
    /// burn's `cuda` (NVIDIA).
    Cuda,
}
