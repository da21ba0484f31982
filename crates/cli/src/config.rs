//! Reading TOML configs: syntax and unknown-key errors point at the line and suggest the nearest key.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use ftcal_train::config_file::nearest_hint;
use serde::de::DeserializeOwned;

/// Reads `path` as `T`; an unknown key or value names its line and the nearest valid one.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).map_err(|error| {
        let message = error.to_string();
        let hint = nearest_hint(&message);
        anyhow!("{}: {}{hint}", path.display(), message.trim_end())
    })
}
