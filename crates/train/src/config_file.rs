//! Reading a run config from its file: the TOML text, overrides of dotted keys (`ftcal run --set`, a
//! sweep's cells), and errors that name the file's line or the key and suggest the nearest valid key.
//! `ftcal run` and `ftcal sweep` read configs through here, so a cell of a sweep is exactly the config
//! `ftcal run BASE --set …` reads.

use std::fmt;
use std::path::Path;

use crate::TrainError;
use crate::config::RunConfig;

/// One `a.b.c = value` applied to a config before it is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    key: String,
    value: toml::Value,
}

impl Override {
    /// An override of the dotted `key`; errors say what a dotted key looks like.
    pub fn new(key: &str, value: toml::Value) -> Result<Self, String> {
        let key = key.trim();
        if key.is_empty() || key.split('.').any(|part| part.trim().is_empty()) {
            return Err(format!("`{key}` is not a dotted key like fine_tuning.lr"));
        }
        Ok(Self {
            key: key.to_string(),
            value,
        })
    }

    /// Parses `KEY=VALUE` as `--set` takes it: the value is read as TOML when it parses as a TOML value,
    /// else taken as a string (so `model.arch=resnet50` needs no quotes).
    pub fn parse(assignment: &str) -> Result<Self, String> {
        let Some((key, raw)) = assignment.split_once('=') else {
            return Err(format!(
                "--set {assignment}: expected KEY=VALUE, e.g. fine_tuning.lr=0.01"
            ));
        };
        Self::new(key, parse_value(raw.trim())).map_err(|message| format!("--set {assignment}: {message}"))
    }

    /// The dotted key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value.
    pub fn value(&self) -> &toml::Value {
        &self.value
    }

    /// Sets the key in `table`, making the tables on its path as needed (a table value replaces the
    /// whole table at the key).
    pub fn apply(&self, table: &mut toml::Table) -> Result<(), String> {
        let path: Vec<&str> = self.key.split('.').map(str::trim).collect();
        let (last, parents) = path.split_last().expect("split yields at least one part");
        let mut current = table;
        for (depth, part) in parents.iter().enumerate() {
            let entry = current
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            current = match entry {
                toml::Value::Table(inner) => inner,
                other => {
                    return Err(format!(
                        "`{}` is a {}, not a table",
                        path[..=depth].join("."),
                        other.type_str()
                    ));
                }
            };
        }
        current.insert(last.to_string(), self.value.clone());
        Ok(())
    }
}

/// `KEY=VALUE` with the value written as TOML: what `--set` reads back to the same override.
impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, inline_toml(&self.value))
    }
}

/// A TOML value on one line (strings quoted, tables inline).
pub fn inline_toml(value: &toml::Value) -> String {
    let mut table = toml::Table::new();
    table.insert("v".into(), value.clone());
    let text = toml::to_string(&toml::Value::Table(table)).expect("a TOML value serialises");
    match value {
        // A table serialises as a `[v]` section; written inline it stays one `--set` argument.
        toml::Value::Table(inner) => {
            let fields: Vec<String> = inner
                .iter()
                .map(|(key, value)| format!("{} = {}", inline_key(key), inline_toml(value)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        _ => text
            .trim_end()
            .strip_prefix("v = ")
            .expect("a one-key table serialises as `v = …`")
            .to_string(),
    }
}

fn inline_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("value = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Reads the run config at `path`, applies `overrides` in order and resolves defaults. An error names the
/// file and its line, or the overrides and the key, with the nearest valid key when one is misspelt.
pub fn read_run_config(path: &Path, overrides: &[Override]) -> Result<RunConfig, TrainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError::file(path, format!("cannot read config: {e}")))?;
    // Parsing the text itself first gives errors with the file's line and column.
    let parsed: RunConfig = toml::from_str(&text).map_err(|error| {
        let message = error.to_string();
        TrainError::file(path, format!("{}{}", message.trim_end(), nearest_hint(&message)))
    })?;
    let config = if overrides.is_empty() {
        parsed
    } else {
        let mut table: toml::Table = toml::from_str(&text).expect("parsed above");
        let described = || {
            let list: Vec<String> = overrides.iter().map(Override::to_string).collect();
            format!("with --set {}", list.join(" --set "))
        };
        for assignment in overrides {
            assignment
                .apply(&mut table)
                .map_err(|message| TrainError::file(path, format!("--set {assignment}: {message}")))?;
        }
        table.try_into().map_err(|error: toml::de::Error| {
            let message = error.to_string();
            TrainError::file(
                path,
                format!(
                    "{}: {}{}",
                    described(),
                    message.trim_end(),
                    nearest_hint(&message)
                ),
            )
        })?
    };
    config
        .resolve()
        .map_err(|error| TrainError::file(path, error.to_string()))
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

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn set(table: &mut toml::Table, assignment: &str) -> Result<(), String> {
        Override::parse(assignment)?.apply(table)
    }

    #[test]
    fn overrides_are_typed_as_toml_and_bare_words_are_strings() {
        let mut config = table("[fine_tuning]\nlr = 0.001\n[model]\narch = \"resnet18\"\n");
        set(&mut config, "fine_tuning.lr=0.05").unwrap();
        set(&mut config, "fine_tuning.epochs = 3").unwrap();
        set(&mut config, "fine_tuning.freeze_batch_norm=true").unwrap();
        set(&mut config, "model.arch=resnet50").unwrap();
        set(&mut config, "eval.calibration=[\"alg\", \"oracle\"]").unwrap();
        set(&mut config, "name=a=b").unwrap();
        assert_eq!(config["fine_tuning"]["lr"], toml::Value::Float(0.05));
        assert_eq!(config["fine_tuning"]["epochs"], toml::Value::Integer(3));
        assert_eq!(
            config["fine_tuning"]["freeze_batch_norm"],
            toml::Value::Boolean(true)
        );
        assert_eq!(config["model"]["arch"], toml::Value::String("resnet50".into()));
        assert_eq!(
            config["eval"]["calibration"].as_array().unwrap().len(),
            2,
            "a new table is made"
        );
        assert_eq!(
            config["name"],
            toml::Value::String("a=b".into()),
            "only the first = splits"
        );
    }

    #[test]
    fn malformed_overrides_say_what_is_expected() {
        let mut config = table("seed = 0\n");
        let error = set(&mut config, "seed").unwrap_err();
        assert!(error.contains("expected KEY=VALUE"), "{error}");
        let error = set(&mut config, "fine_tuning..lr=1").unwrap_err();
        assert!(error.contains("not a dotted key"), "{error}");
        let error = set(&mut config, "seed.value=1").unwrap_err();
        assert!(error.contains("`seed` is a integer, not a table"), "{error}");
    }

    #[test]
    fn an_override_prints_as_the_set_argument_that_reads_back_to_it() {
        for assignment in [
            "fine_tuning.lr=0.001",
            "seed=3",
            "model.arch=\"resnet50\"",
            "fine_tuning.optimizer={ name = \"adam\", betas = [0.9, 0.99] }",
            "eval.calibration=[\"alg\", \"pcv\"]",
            "fine_tuning.freeze_batch_norm=false",
        ] {
            let parsed = Override::parse(assignment).unwrap();
            assert_eq!(
                Override::parse(&parsed.to_string()).unwrap(),
                parsed,
                "{assignment}"
            );
        }
        let table = Override::parse("a={ b = 1, c = { d = \"x\" } }").unwrap();
        assert_eq!(table.to_string(), "a={ b = 1, c = { d = \"x\" } }");
    }

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
