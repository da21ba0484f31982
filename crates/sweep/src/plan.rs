//! The sweep file and the cells it expands to.
//!
//! ```toml
//! base = "configs/quickstart.toml"        # a run config; paths are relative to the working directory
//! name = "digits2-optimizers"              # default: the sweep file's name
//! output_dir = "runs"                      # default: the base config's
//! set = ["fine_tuning.epochs=5"]           # overrides of every cell
//!
//! [grid]                                   # the cartesian product, the first key outermost
//! "fine_tuning.optimizer.name" = ["sgd", "adam"]
//! "fine_tuning.lr" = [1e-3, 1e-2]
//! seed = [0, 1, 2]
//!
//! [[cells]]                                # optional: an explicit list, each crossed with the grid
//! "fine_tuning.optimizer.name" = "adam"
//! grid = { "fine_tuning.lr" = [1e-5, 1e-4] }  # a cell's own grid: values that only this cell takes
//! # base = "configs/office-home/rw-pr.toml"   a cell's own base config (a table spans benchmarks)
//! # tags = { benchmark = "Rw→Pr", method = "fine-tuning" }   what the cell is, for names and reports
//!
//! [bundles."fine_tuning.optimizer.name"]   # one choice implies others, set before the cell's values
//! sgd = { "fine_tuning.optimizer" = { name = "sgd", momentum = 0.9 } }
//! ```
//!
//! A cell's config is the base with, in order, the sweep's `set`, the bundles of its values, its own
//! values, then the command line's `--set`: exactly what `ftcal run BASE --set …` reads with that list.
//! A value that is a table replaces the whole table at its key, as `--set key={…}` does; dotted keys are
//! quoted (`"fine_tuning.lr"`), except in `[grid]`, where a nested table can only be a dotted key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use ftcal_train::RunConfig;
use ftcal_train::config_file::{Override, inline_toml, nearest_hint, read_run_config};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::SweepError;
use crate::aggregate::HeatmapSettings;
use crate::slurm::SlurmSettings;

/// Keys in the order the file writes them (a TOML table read into a map would sort them, and the order
/// of the grid's keys is the order of the cells and of their names).
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(toml::Spanned<String>, V)> = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                // The parser hands a table over sorted; where each key stands in the file says its order.
                entries.sort_by_key(|(key, _)| key.span().start);
                Ok(Ordered(
                    entries
                        .into_iter()
                        .map(|(key, value)| (key.into_inner(), value))
                        .collect(),
                ))
            }
        }
        deserializer.deserialize_map(OrderedVisitor(std::marker::PhantomData))
    }
}

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
    }
}

/// A sweep file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// The run config every cell starts from, unless the cell names its own `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<PathBuf>,
    /// The sweep's name, its folder under `output_dir` (default: the sweep file's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the sweep's folder goes (default: the base config's `output_dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<PathBuf>,
    /// Overrides (`KEY=VALUE`, as `--set` takes them) of every cell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<String>,
    /// Dotted keys, each with its list of values: the cells are their cartesian product.
    #[serde(default)]
    pub grid: Ordered<toml::Value>,
    /// An explicit list of cells (dotted keys and values, and optionally their own `grid`), each crossed
    /// with the grid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<Ordered<toml::Value>>,
    /// For a key, per value (as the cell's name writes it), overrides that come with that value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bundles: BTreeMap<String, BTreeMap<String, Ordered<toml::Value>>>,
    /// The Slurm job array's resources.
    #[serde(default)]
    pub slurm: SlurmSettings,
    /// Which keys the heatmaps put on rows, columns and panels.
    #[serde(default)]
    pub heatmap: HeatmapSettings,
}

/// A key the sweep varies, with the short name its cells' names use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepKey {
    /// The dotted config key, e.g. `fine_tuning.optimizer.weight_decay`.
    pub key: String,
    /// Its name in cell names, e.g. `wd`.
    pub short: String,
}

/// One run of the sweep.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Its position in the sweep (the Slurm array index).
    pub index: usize,
    /// Its name and folder, e.g. `optimizer=adam,lr=1e-3,wd=5e-4,seed=0`.
    pub name: String,
    /// Its value of each sweep key that it sets, in the order of [`Sweep::keys`].
    pub values: Vec<(String, toml::Value)>,
    /// The run config it starts from.
    pub base: PathBuf,
    /// The overrides of the base config, in the order they apply (`ftcal run BASE --set …`).
    pub overrides: Vec<Override>,
    /// The resolved config.
    pub config: RunConfig,
    /// Its run directory.
    pub dir: PathBuf,
}

impl Cell {
    /// The value of `key` as the cell's name writes it, if the cell sets it (a tag by `tags.NAME`).
    pub fn value_text(&self, key: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(name, _)| name == key)
            .map(|(name, value)| key_value_text(name, value))
    }

    /// Its tag `name` (`tags = { benchmark = "…" }` of its `[[cells]]` entry), if it has one.
    pub fn tag(&self, name: &str) -> Option<String> {
        self.value_text(&format!("{TAG_PREFIX}{name}"))
    }
}

/// A sweep: its file, folder and cells, every cell validated.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The sweep file.
    pub path: PathBuf,
    /// The file as read, with the command line's `--set` added to `set`.
    pub file: SweepFile,
    /// The sweep's name.
    pub name: String,
    /// Its folder: the cells' run directories, `shared/`, `logs/`, the index and the report.
    pub dir: PathBuf,
    /// The keys the cells set, the explicit cells' first, in the order of the cells' names.
    pub keys: Vec<SweepKey>,
    /// The cells in order.
    pub cells: Vec<Cell>,
}

impl Sweep {
    /// Reads and expands the sweep file at `path`, with `command_line_set` (`KEY=VALUE`) applied to every
    /// cell last. Every cell's config is read and resolved here: one bad key or value in any cell fails
    /// the whole sweep before anything runs, naming the cells and the key.
    pub fn load(path: &Path, command_line_set: &[String]) -> Result<Self, SweepError> {
        let file_error = |message: String| SweepError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| SweepError::io(path, &e))?;
        let mut file: SweepFile = toml::from_str(&text).map_err(|error| {
            let message = error.to_string();
            file_error(format!("{}{}", message.trim_end(), nearest_hint(&message)))
        })?;
        let parse = |list: &[String]| -> Result<Vec<Override>, SweepError> {
            (list.iter())
                .map(|assignment| Override::parse(assignment).map_err(&file_error))
                .collect()
        };
        let file_set = parse(&file.set)?;
        let command_line = parse(command_line_set)?;
        file.set.extend(command_line_set.iter().cloned());
        let every_cell: Vec<Override> = file_set.iter().chain(&command_line).cloned().collect();
        let grid = flatten_grid(&file.grid).map_err(&file_error)?;
        let explicit = explicit_cells(&file.cells).map_err(&file_error)?;
        let keys = sweep_keys(&grid, &explicit).map_err(&file_error)?;
        for assignment in &every_cell {
            if keys.iter().any(|key| key.key == assignment.key()) {
                return Err(file_error(format!(
                    "set {assignment}: `{}` is a key the sweep varies; change its values in the sweep instead",
                    assignment.key()
                )));
            }
        }
        let bundles = bundles(&file.bundles, &grid, &explicit).map_err(&file_error)?;
        let points = points(&grid, &explicit);
        let base_of = |values: &[(String, toml::Value)]| -> Option<PathBuf> {
            match values.iter().find(|(key, _)| key == BASE) {
                Some((_, value)) => value.as_str().map(PathBuf::from),
                None => file.base.clone(),
            }
        };
        let Some(first_base) = points.first().and_then(|values| base_of(values)) else {
            return Err(file_error(
                "no base config: set `base` at the top of the sweep file, or in every [[cells]] entry".into(),
            ));
        };
        let base = read_run_config(&first_base, &every_cell)
            .map_err(|error| file_error(format!("base = {:?}: {error}", first_base.display().to_string())))?;
        let name = match &file.name {
            Some(name) => name.clone(),
            None => (path.file_stem())
                .map(|stem| stem.to_string_lossy().into_owned())
                .ok_or_else(|| file_error("cannot name the sweep after its file; set `name`".into()))?,
        };
        check_folder_name(&name).map_err(|message| file_error(format!("name: {message}")))?;
        let dir = file
            .output_dir
            .clone()
            .unwrap_or(base.output_dir.clone())
            .join(&name);
        let mut cells = Vec::with_capacity(points.len());
        let mut invalid = Vec::new();
        let mut names = BTreeMap::new();
        for (index, values) in points.into_iter().enumerate() {
            let cell_name = cell_name(&keys, &values);
            if cell_name.len() > MAX_NAME_BYTES {
                return Err(file_error(format!(
                    "cell {index}'s name `{cell_name}` is longer than {MAX_NAME_BYTES} bytes, too long for a folder; vary fewer keys per cell or use shorter values"
                )));
            }
            if let Some(first) = names.insert(cell_name.clone(), index) {
                return Err(file_error(format!(
                    "cells {first} and {index} have the same name `{cell_name}`: the same values twice"
                )));
            }
            let Some(cell_base) = base_of(&values) else {
                return Err(file_error(format!(
                    "cell {index} `{cell_name}` has no base config: set `base` at the top or in its [[cells]] entry"
                )));
            };
            let mut overrides = Vec::new();
            for (key, value) in &values {
                if let Some(bundle) = bundles.get(&(key.clone(), value_text(value))) {
                    overrides.extend(bundle.iter().cloned());
                }
            }
            for (key, value) in values.iter().filter(|(key, _)| !is_cell_field(key)) {
                overrides.push(Override::new(key, value.clone()).map_err(&file_error)?);
            }
            let all: Vec<Override> = (file_set.iter().cloned())
                .chain(overrides)
                .chain(command_line.iter().cloned())
                .collect();
            match read_run_config(&cell_base, &all) {
                Ok(config) => cells.push(Cell {
                    index,
                    dir: dir.join(&cell_name),
                    name: cell_name,
                    values,
                    base: cell_base,
                    overrides: all,
                    config,
                }),
                Err(error) => invalid.push(format!("cell {index} `{cell_name}`: {error}")),
            }
        }
        if !invalid.is_empty() {
            return Err(SweepError::InvalidCells {
                path: path.to_path_buf(),
                total: names.len(),
                invalid,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            name,
            dir,
            keys,
            cells,
        })
    }

    /// The cells that `filter` selects (`KEY=VALUE[,KEY=VALUE…]`, each KEY a sweep key or its short name,
    /// each VALUE as the cell names write it); every cell without a filter.
    pub fn select(&self, filter: Option<&str>) -> Result<Vec<&Cell>, SweepError> {
        let Some(filter) = filter else {
            return Ok(self.cells.iter().collect());
        };
        let mut terms = Vec::new();
        for term in filter.split(',').map(str::trim).filter(|term| !term.is_empty()) {
            let Some((key, value)) = term.split_once('=') else {
                return Err(self.error(format!("--only {filter}: `{term}` is not KEY=VALUE")));
            };
            let key = key.trim();
            let Some(known) = self.keys.iter().find(|k| k.key == key || k.short == key) else {
                let names: Vec<&str> = self.keys.iter().map(|k| k.short.as_str()).collect();
                return Err(self.error(format!(
                    "--only {filter}: `{key}` is not a key of this sweep (its keys: {})",
                    names.join(", ")
                )));
            };
            terms.push((known.key.clone(), value.trim().to_string()));
        }
        // `lr=0.001` selects the cells named `lr=1e-3`: numbers match by value.
        let same = |written: &str, wanted: &str| {
            written == wanted
                || matches!((written.parse::<f64>(), wanted.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
        };
        Ok(self
            .cells
            .iter()
            .filter(|cell| {
                (terms.iter()).all(|(key, value)| cell.value_text(key).is_some_and(|text| same(&text, value)))
            })
            .collect())
    }

    fn error(&self, message: String) -> SweepError {
        SweepError::File {
            path: self.path.clone(),
            message,
        }
    }

    /// The sweep as it ran, a sweep file that makes it again (`sweep.toml` in its folder).
    pub fn resolved_text(&self) -> String {
        let body = toml::to_string(&self.file).expect("a sweep file serialises to TOML");
        format!(
            "# Written by ftcal sweep from {}: the sweep with the command line's --set in `set`.\n{body}",
            self.path.display()
        )
    }
}

/// The grid as (dotted key, values), with nested tables (unquoted dotted keys) flattened.
fn flatten_grid(grid: &Ordered<toml::Value>) -> Result<Vec<(String, Vec<toml::Value>)>, String> {
    fn walk(
        prefix: &str,
        value: &toml::Value,
        out: &mut Vec<(String, Vec<toml::Value>)>,
    ) -> Result<(), String> {
        match value {
            toml::Value::Array(values) if values.is_empty() => {
                Err(format!("grid: `{prefix}` has no value; give it at least one"))
            }
            toml::Value::Array(values) => {
                out.push((prefix.to_string(), values.clone()));
                Ok(())
            }
            toml::Value::Table(table) => {
                for (key, inner) in table {
                    walk(&format!("{prefix}.{key}"), inner, out)?;
                }
                Ok(())
            }
            other => Err(format!(
                "grid: `{prefix}` is a {}, not a list of values; write `\"{prefix}\" = [{}]`",
                other.type_str(),
                inline_toml(other)
            )),
        }
    }
    let mut out = Vec::new();
    for (key, value) in &grid.0 {
        walk(key, value, &mut out)?;
    }
    Ok(out)
}

/// The explicit cells, each expanded over its own `grid` (its values first, then the grid's).
fn explicit_cells(cells: &[Ordered<toml::Value>]) -> Result<Vec<Vec<(String, toml::Value)>>, String> {
    let mut expanded = Vec::new();
    for (position, cell) in cells.iter().enumerate() {
        let mut values = Vec::new();
        let mut own_grid = Vec::new();
        for (key, value) in &cell.0 {
            if key == BASE {
                let toml::Value::String(_) = value else {
                    return Err(format!(
                        "cells[{position}].base is a {}, not a path",
                        value.type_str()
                    ));
                };
                values.push((key.clone(), value.clone()));
                continue;
            }
            if key == "tags" {
                let toml::Value::Table(tags) = value else {
                    return Err(format!(
                        "cells[{position}].tags is a {}, not a table",
                        value.type_str()
                    ));
                };
                for (tag, text) in tags {
                    let toml::Value::String(_) = text else {
                        return Err(format!(
                            "cells[{position}].tags.{tag} is a {}, not a string",
                            text.type_str()
                        ));
                    };
                    values.push((format!("{TAG_PREFIX}{tag}"), text.clone()));
                }
                continue;
            }
            if key == "grid" {
                let toml::Value::Table(table) = value else {
                    return Err(format!(
                        "cells[{position}].grid is a {}, not a table",
                        value.type_str()
                    ));
                };
                let ordered = Ordered(table.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
                own_grid =
                    flatten_grid(&ordered).map_err(|message| format!("cells[{position}].{message}"))?;
                continue;
            }
            Override::new(key, toml::Value::Boolean(true))
                .map_err(|message| format!("cells[{position}]: {message}"))?;
            values.push((key.clone(), value.clone()));
        }
        if values.is_empty() && own_grid.is_empty() {
            return Err(format!("cells[{position}] sets nothing"));
        }
        for (key, _) in &own_grid {
            if values.iter().any(|(other, _)| other == key) {
                return Err(format!(
                    "cells[{position}]: `{key}` is both a value and in its grid"
                ));
            }
        }
        for point in points(&own_grid, &[]) {
            let mut cell_values = values.clone();
            cell_values.extend(point);
            expanded.push(cell_values);
        }
    }
    Ok(expanded)
}

/// Every key the sweep sets (those of the explicit cells in order of appearance, then the grid's),
/// each with the shortest unambiguous name: the last part of the key (`optimizer` for `….optimizer.name`,
/// `wd` for `…weight_decay`), more parts where two keys would share it.
fn sweep_keys(
    grid: &[(String, Vec<toml::Value>)],
    explicit: &[Vec<(String, toml::Value)>],
) -> Result<Vec<SweepKey>, String> {
    let mut keys: Vec<String> = Vec::new();
    // The explicit cells' keys first: they say what a cell is (`optimizer=adam`), the grid how it varies.
    for key in explicit
        .iter()
        .flatten()
        .map(|(key, _)| key)
        .chain(grid.iter().map(|(key, _)| key))
    {
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    for (key, _) in grid {
        if grid.iter().filter(|(other, _)| other == key).count() > 1 {
            return Err(format!("grid: `{key}` appears twice"));
        }
        if explicit.iter().flatten().any(|(other, _)| other == key) {
            return Err(format!(
                "`{key}` is both in [grid] and in [[cells]]; a cell's value would be overwritten"
            ));
        }
        if keys
            .iter()
            .any(|other| other != key && other.starts_with(&format!("{key}.")))
        {
            return Err(format!("`{key}` and a key inside it are both varied"));
        }
    }
    let parts: Vec<Vec<&str>> = keys.iter().map(|key| key.split('.').collect()).collect();
    let mut depth = vec![1usize; keys.len()];
    loop {
        let shorts: Vec<String> = (parts.iter().zip(&depth))
            .map(|(parts, &depth)| short_name(parts, depth))
            .collect();
        let mut clash = false;
        for i in 0..keys.len() {
            let same: Vec<usize> = (0..keys.len()).filter(|&j| shorts[j] == shorts[i]).collect();
            if same.len() > 1 {
                // A tag is the user's own name for what a cell is: it keeps it; config keys step aside.
                let tagged = same.iter().any(|&j| keys[j].starts_with(TAG_PREFIX));
                for j in same {
                    if tagged && keys[j].starts_with(TAG_PREFIX) {
                        continue;
                    }
                    if depth[j] < parts[j].len() {
                        depth[j] += 1;
                        clash = true;
                    }
                }
            }
        }
        if !clash {
            return Ok(keys
                .into_iter()
                .zip(shorts)
                .map(|(key, short)| SweepKey { key, short })
                .collect());
        }
    }
}

/// The last `depth` parts of a key, `name` standing for its table (`optimizer` for `optimizer.name`) and
/// `weight_decay` as `wd`.
fn short_name(parts: &[&str], depth: usize) -> String {
    let mut parts = parts.to_vec();
    if parts.len() > 1 && parts.last() == Some(&"name") {
        parts.pop();
    }
    let start = parts.len().saturating_sub(depth);
    parts[start..]
        .iter()
        .map(|part| if *part == "weight_decay" { "wd" } else { part })
        .collect::<Vec<_>>()
        .join(".")
}

/// The bundles as (key, value text) → overrides; a bundle for a key or a value the sweep never sets is an
/// error (a typo would otherwise be silently ignored).
fn bundles(
    bundles: &BTreeMap<String, BTreeMap<String, Ordered<toml::Value>>>,
    grid: &[(String, Vec<toml::Value>)],
    explicit: &[Vec<(String, toml::Value)>],
) -> Result<BTreeMap<(String, String), Vec<Override>>, String> {
    let mut out = BTreeMap::new();
    for (key, by_value) in bundles {
        let values: BTreeSet<String> = (grid.iter())
            .filter(|(grid_key, _)| grid_key == key)
            .flat_map(|(_, values)| values.iter().map(value_text))
            .chain(
                (explicit.iter().flatten())
                    .filter(|(cell_key, _)| cell_key == key)
                    .map(|(_, value)| value_text(value)),
            )
            .collect();
        if values.is_empty() {
            return Err(format!("bundles.\"{key}\": the sweep does not vary `{key}`"));
        }
        for (value, assignments) in by_value {
            if !values.contains(value) {
                let known: Vec<&str> = values.iter().map(String::as_str).collect();
                return Err(format!(
                    "bundles.\"{key}\".{value}: `{key}` never takes the value `{value}` (its values: {})",
                    known.join(", ")
                ));
            }
            let overrides = (assignments.0.iter())
                .map(|(inner, setting)| {
                    Override::new(inner, setting.clone())
                        .map_err(|message| format!("bundles.\"{key}\".{value}: {message}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.insert((key.clone(), value.clone()), overrides);
        }
    }
    Ok(out)
}

/// The cells' values: each explicit cell (or one empty cell) crossed with the grid, the first grid key
/// outermost.
fn points(
    grid: &[(String, Vec<toml::Value>)],
    explicit: &[Vec<(String, toml::Value)>],
) -> Vec<Vec<(String, toml::Value)>> {
    let mut product: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in grid {
        product = product
            .into_iter()
            .flat_map(|point| {
                values.iter().map(move |value| {
                    let mut point = point.clone();
                    point.push((key.clone(), value.clone()));
                    point
                })
            })
            .collect();
    }
    let outer: Vec<Vec<(String, toml::Value)>> = if explicit.is_empty() {
        vec![Vec::new()]
    } else {
        explicit.to_vec()
    };
    outer
        .iter()
        .flat_map(|cell| {
            product.iter().map(move |point| {
                let mut values = cell.clone();
                values.extend(point.iter().cloned());
                values
            })
        })
        .collect()
}

/// The longest cell name: most file systems allow 255 bytes per folder name.
const MAX_NAME_BYTES: usize = 200;

/// A cell's name: `short=value` for each key it sets, in the sweep's key order, made safe as one folder
/// name.
fn cell_name(keys: &[SweepKey], values: &[(String, toml::Value)]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .filter_map(|key| {
            let (_, value) = values.iter().find(|(name, _)| *name == key.key)?;
            Some(format!("{}={}", key.short, key_value_text(&key.key, value)))
        })
        .collect();
    let name: String = parts
        .join(",")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+=,-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() { "base".to_string() } else { name }
}

/// A `[[cells]]` entry's own config, by this key: a path (the grid may vary it too).
const BASE: &str = "base";

/// A `[[cells]]` entry's `tags = { NAME = "…" }` stand among its values as `tags.NAME`.
const TAG_PREFIX: &str = "tags.";

/// Whether a cell's key says what the cell is rather than overriding its config: `base` and its tags.
fn is_cell_field(key: &str) -> bool {
    key == BASE || key.starts_with(TAG_PREFIX)
}

/// A value as cell names write it: a base config by its file name without `.toml`.
fn key_value_text(key: &str, value: &toml::Value) -> String {
    match (key, value) {
        (BASE, toml::Value::String(path)) => Path::new(path)
            .file_stem()
            .map_or_else(|| path.clone(), |stem| stem.to_string_lossy().into_owned()),
        _ => value_text(value),
    }
}

/// A value as cell names, filters and bundles write it: strings bare, numbers in their shortest form
/// (`1e-3`, `0.05`), lists joined by `_`.
pub fn value_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Float(number) => {
            let plain = format!("{number}");
            let scientific = format!("{number:e}");
            if scientific.len() < plain.len() {
                scientific
            } else {
                plain
            }
        }
        toml::Value::Array(values) => values.iter().map(value_text).collect::<Vec<_>>().join("_"),
        other => inline_toml(other),
    }
}

fn check_folder_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(format!("`{name}` is not a folder name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> toml::Value {
        toml::from_str::<toml::Table>(&format!("v = {text}")).unwrap()["v"].clone()
    }

    #[test]
    fn values_are_written_short() {
        assert_eq!(value_text(&value("1e-3")), "1e-3");
        assert_eq!(value_text(&value("0.0005")), "5e-4");
        assert_eq!(value_text(&value("0.05")), "0.05");
        assert_eq!(value_text(&value("0.5")), "0.5");
        assert_eq!(value_text(&value("1.0")), "1");
        assert_eq!(value_text(&value("0.0")), "0");
        assert_eq!(value_text(&value("100.0")), "100");
        assert_eq!(value_text(&value("1e6")), "1e6");
        assert_eq!(value_text(&value("3")), "3");
        assert_eq!(value_text(&value("\"adam\"")), "adam");
        assert_eq!(value_text(&value("[0.9, 0.999]")), "0.9_0.999");
        assert_eq!(value_text(&value("true")), "true");
    }

    #[test]
    fn short_names_take_the_last_part_and_more_where_two_would_clash() {
        let grid = vec![
            ("fine_tuning.optimizer.name".to_string(), vec![value("\"sgd\"")]),
            ("fine_tuning.lr".to_string(), vec![value("0.1")]),
            ("source.lr".to_string(), vec![value("0.1")]),
            (
                "fine_tuning.optimizer.weight_decay".to_string(),
                vec![value("0.0")],
            ),
            ("seed".to_string(), vec![value("0")]),
        ];
        let keys = sweep_keys(&grid, &[]).unwrap();
        let shorts: Vec<&str> = keys.iter().map(|k| k.short.as_str()).collect();
        assert_eq!(shorts, ["optimizer", "fine_tuning.lr", "source.lr", "wd", "seed"]);
    }

    #[test]
    fn the_grid_keeps_the_files_order_and_flattens_unquoted_dotted_keys() {
        let file: SweepFile = toml::from_str(
            "base = \"b.toml\"\n[grid]\n\"fine_tuning.lr\" = [0.1, 0.01]\nseed = [2, 1]\n\
             fine_tuning.optimizer.weight_decay = [0.0]\n\"eval.every\" = [1]\n",
        )
        .unwrap();
        let grid = flatten_grid(&file.grid).unwrap();
        let keys: Vec<&str> = grid.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "fine_tuning.lr",
                "seed",
                "fine_tuning.optimizer.weight_decay",
                "eval.every"
            ]
        );
        let points = points(&grid, &[]);
        assert_eq!(points.len(), 4);
        let names: Vec<String> = (points.iter())
            .map(|point| cell_name(&sweep_keys(&grid, &[]).unwrap(), point))
            .collect();
        assert_eq!(
            names,
            [
                "lr=0.1,seed=2,wd=0,every=1",
                "lr=0.1,seed=1,wd=0,every=1",
                "lr=0.01,seed=2,wd=0,every=1",
                "lr=0.01,seed=1,wd=0,every=1"
            ]
        );
    }

    #[test]
    fn explicit_cells_cross_the_grid_and_names_are_safe_folder_names() {
        let grid = vec![("seed".to_string(), vec![value("0"), value("1")])];
        let explicit = vec![
            vec![("fine_tuning.method".to_string(), value("\"frozen_classifier\""))],
            vec![("model.arch".to_string(), value("\"configs/models/x.toml\""))],
        ];
        let keys = sweep_keys(&grid, &explicit).unwrap();
        let names: Vec<String> = points(&grid, &explicit)
            .iter()
            .map(|point| cell_name(&keys, point))
            .collect();
        assert_eq!(
            names,
            [
                "method=frozen_classifier,seed=0",
                "method=frozen_classifier,seed=1",
                "arch=configs_models_x.toml,seed=0",
                "arch=configs_models_x.toml,seed=1"
            ]
        );
    }

    #[test]
    fn a_cell_crosses_its_own_grid_with_the_sweeps() {
        let file: SweepFile = toml::from_str(
            "base = \"b.toml\"\n[grid]\n\"fine_tuning.optimizer.weight_decay\" = [0.0, 5e-4]\n\
             [[cells]]\n\"fine_tuning.optimizer.name\" = \"sgd\"\ngrid = { \"fine_tuning.lr\" = [0.01, 0.1] }\n\
             [[cells]]\n\"fine_tuning.optimizer.name\" = \"adam\"\ngrid = { \"fine_tuning.lr\" = [1e-4] }\n",
        )
        .unwrap();
        let grid = flatten_grid(&file.grid).unwrap();
        let explicit = explicit_cells(&file.cells).unwrap();
        let keys = sweep_keys(&grid, &explicit).unwrap();
        let names: Vec<String> = (points(&grid, &explicit).iter())
            .map(|point| cell_name(&keys, point))
            .collect();
        assert_eq!(
            names,
            [
                "optimizer=sgd,lr=0.01,wd=0",
                "optimizer=sgd,lr=0.01,wd=5e-4",
                "optimizer=sgd,lr=0.1,wd=0",
                "optimizer=sgd,lr=0.1,wd=5e-4",
                "optimizer=adam,lr=1e-4,wd=0",
                "optimizer=adam,lr=1e-4,wd=5e-4"
            ]
        );
    }

    /// A minimal valid run config (nothing is run), fine-tuning for `epochs`.
    fn write_base(path: &Path, epochs: usize) {
        let text = format!(
            "name = \"b\"\n[model]\narch = \"resnet18\"\n[data.target]\nkind = \"digits2\"\n\
             domain = \"optdigits\"\n[data.classes]\nfine_tuning = [0, 1, 2]\n[fine_tuning]\nepochs = {epochs}\nlr = 0.1\n"
        );
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cells_may_bring_their_own_base_config_and_tags() {
        let temp = tempfile::tempdir().unwrap();
        let (first, second) = (temp.path().join("ar-cl.toml"), temp.path().join("rw-pr.toml"));
        write_base(&first, 2);
        write_base(&second, 3);
        let file = temp.path().join("table.toml");
        let text = format!(
            "output_dir = \"{}\"\n[grid]\nseed = [0, 1]\n\
             [[cells]]\nbase = \"{}\"\ntags = {{ benchmark = \"Ar→Cl\", method = \"fine-tuning\" }}\n\
             [[cells]]\nbase = \"{}\"\ntags = {{ benchmark = \"Rw→Pr\", method = \"frozen\" }}\n\
             \"fine_tuning.method\" = \"frozen_classifier\"\n",
            temp.path().display(),
            first.display(),
            second.display()
        );
        std::fs::write(&file, text).unwrap();
        let sweep = Sweep::load(&file, &[]).unwrap();
        let names: Vec<&str> = sweep.cells.iter().map(|cell| cell.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "base=ar-cl,benchmark=Ar_Cl,method=fine-tuning,seed=0",
                "base=ar-cl,benchmark=Ar_Cl,method=fine-tuning,seed=1",
                "base=rw-pr,benchmark=Rw_Pr,method=frozen,fine_tuning.method=frozen_classifier,seed=0",
                "base=rw-pr,benchmark=Rw_Pr,method=frozen,fine_tuning.method=frozen_classifier,seed=1",
            ]
        );
        let last = &sweep.cells[3];
        assert_eq!(last.base, second);
        assert_eq!(last.tag("benchmark").as_deref(), Some("Rw→Pr"));
        assert_eq!(last.config.fine_tuning.epochs, 3, "the cell's own base");
        let set: Vec<String> = last.overrides.iter().map(ToString::to_string).collect();
        assert_eq!(
            set,
            ["fine_tuning.method=\"frozen_classifier\"", "seed=1"],
            "tags and base are no overrides"
        );
        assert_eq!(sweep.cells[0].config.fine_tuning.epochs, 2);

        std::fs::write(&file, "[grid]\nseed = [0]\n").unwrap();
        let error = Sweep::load(&file, &[]).unwrap_err().to_string();
        assert!(error.contains("no base config"), "{error}");
    }

    #[test]
    fn bad_grids_and_bundles_are_named() {
        let empty = Ordered(vec![("fine_tuning.lr".to_string(), value("[]"))]);
        assert!(flatten_grid(&empty).unwrap_err().contains("has no value"));
        let scalar = Ordered(vec![("fine_tuning.lr".to_string(), value("0.1"))]);
        let error = flatten_grid(&scalar).unwrap_err();
        assert!(error.contains("write `\"fine_tuning.lr\" = [0.1]`"), "{error}");
        let grid = vec![("fine_tuning.optimizer.name".to_string(), vec![value("\"sgd\"")])];
        let both = vec![vec![(
            "fine_tuning.optimizer.name".to_string(),
            value("\"adam\""),
        )]];
        assert!(
            sweep_keys(&grid, &both)
                .unwrap_err()
                .contains("both in [grid] and in [[cells]]")
        );
        let mut bundle = BTreeMap::new();
        bundle.insert(
            "fine_tuning.optimizer.name".to_string(),
            BTreeMap::from([("adma".to_string(), Ordered(Vec::new()))]),
        );
        let error = bundles(&bundle, &grid, &[]).unwrap_err();
        assert!(
            error.contains("never takes the value `adma` (its values: sgd)"),
            "{error}"
        );
        bundle.clear();
        bundle.insert("seed".to_string(), BTreeMap::new());
        let error = bundles(&bundle, &grid, &[]).unwrap_err();
        assert!(error.contains("does not vary `seed`"), "{error}");
    }
}
