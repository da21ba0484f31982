//! The device a run's tensors live on, from `backend =` in the config (DESIGN.md, Backends).
//!
//! STUB: flex only; wgpu and cuda are being added (issue 5).

use anyhow::{Result, bail};
use burn::tensor::Device;
use ftcal_train::Backend;

/// The device for `backend`, or an error saying why it cannot be used on this machine or build.
pub fn device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Flex => Ok(Device::flex()),
        other => bail!("backend {other:?} is not built into this binary"),
    }
}
