//! Reading TOML configs: syntax and unknown-key errors point at the line and suggest the nearest key.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
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

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), a line that
/// suggests the expected name nearest to `x`.
pub fn nearest_hint(message: &str) -> String {
    let Some(start) = message
        .find("unknown field `")
        .or_else(|| message.find("unknown variant `"))
    else {
        return String::new();
    };
    let rest = &message[start..];
    let Some(unknown) = rest.split('`').nth(1) else {
        return String::new();
    };
    let expected: Vec<&str> = rest
        .split_once("expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    expected
        .iter()
        .map(|candidate| (strsim::levenshtein(unknown, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= candidate.len().max(3) / 2)
        .min()
        .map(|(_, candidate)| format!("\ndid you mean `{candidate}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_expected_name() {
        let message = "unknown field `workres`, expected one of `workers`, `prefetch`, `cache`, `on_corrupt`";
        assert_eq!(nearest_hint(message), "\ndid you mean `workers`?");
        let message = "unknown variant `image_lists`, expected one of `image_list`, `image_folder`";
        assert_eq!(nearest_hint(message), "\ndid you mean `image_list`?");
        assert_eq!(nearest_hint("unknown field `zzzzzzzz`, expected `kind`"), "");
        assert_eq!(nearest_hint("expected a string"), "");
    }
}
