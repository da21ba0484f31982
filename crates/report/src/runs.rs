//! The runs a report reads: the cells of an experiment plan (their `benchmark` and `method` tags say which
//! column and rows they feed) or run directories named on the command line (their config says).

use std::path::PathBuf;

use ftcal_eval::{ModelEvaluation, ModelMetrics, Summary, read_scores};
use ftcal_sweep::{CellState, Sweep};
use ftcal_train::RunDir;
use ftcal_train::run_dir::SavedSplit;

use crate::ReportError;
use crate::method::Method;

/// One run as the tables see it.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Its column group: the cell's `benchmark` tag, or the source → target of its config.
    pub benchmark: String,
    /// Its kind, which says which rows it feeds.
    pub method: Method,
    /// What else sets it apart from the runs of the same benchmark and method other than the seed
    /// (`lr=1e-3`), empty for most plans; runs that differ in it are different rows.
    pub variant: String,
    /// Its seed: runs that differ only in it are averaged.
    pub seed: u64,
    /// Its run directory.
    pub dir: PathBuf,
    /// Where it stands.
    pub state: CellState,
    /// Its `summary.json`, when it completed.
    pub summary: Option<Summary>,
    /// For a completed all-classes run: its fine-tuned model evaluated again under its benchmark's S and U
    /// (the Oracle row's Acc_{S/Y} and Acc_{U/Y}), from its saved test outputs.
    pub under_benchmark_split: Option<ModelMetrics>,
}

/// Every run of a report, and the benchmarks in the order they first appear.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    /// The benchmarks: the tables' column groups, in order.
    pub benchmarks: Vec<String>,
    /// The runs.
    pub records: Vec<RunRecord>,
}

impl Runs {
    /// The cells of an experiment plan (a sweep file, as `Sweep::load` read it). A cell without a
    /// `benchmark` tag is grouped by its base config's name (the sweep's name when every cell has the
    /// same); without a `method` tag, its config says what it is.
    pub fn from_sweep(sweep: &Sweep) -> Result<Self, ReportError> {
        let one_base = sweep.cells.windows(2).all(|pair| pair[0].base == pair[1].base);
        let mut records = Vec::with_capacity(sweep.cells.len());
        for cell in &sweep.cells {
            let (state, summary) = sweep.state_and_summary(cell)?;
            let benchmark = match cell.tag("benchmark") {
                Some(tag) => tag,
                None if one_base => sweep.name.clone(),
                None => (cell.base.file_stem())
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_else(|| cell.base.display().to_string()),
            };
            let method = match cell.tag("method") {
                Some(tag) => Method::from_tag(&tag).map_err(|message| ReportError::Input {
                    path: sweep.path.clone(),
                    message: format!("cell `{}`: {message}", cell.name),
                })?,
                None => {
                    let config = toml::Table::try_from(&cell.config).unwrap_or_default();
                    Method::of_config(&config, absent_is_empty(&RunDir::new(&cell.dir)))
                }
            };
            records.push(RunRecord {
                benchmark,
                method,
                variant: String::new(),
                seed: cell.config.seed,
                dir: cell.dir.clone(),
                state,
                summary,
                under_benchmark_split: None,
            });
        }
        // A variant is what a key makes of a row: only the keys that take more than one value among the
        // cells of one benchmark and method (a key a benchmark's [[cells]] entry sets is the benchmark's).
        let varying: Vec<&ftcal_sweep::SweepKey> = (sweep.keys.iter())
            .filter(|key| {
                !matches!(
                    key.key.as_str(),
                    "tags.benchmark" | "tags.method" | "seed" | "base"
                )
            })
            .filter(|key| {
                (records.iter().zip(&sweep.cells)).any(|(record, cell)| {
                    (records.iter().zip(&sweep.cells)).any(|(other, other_cell)| {
                        other.benchmark == record.benchmark
                            && other.method == record.method
                            && other_cell.value_text(&key.key) != cell.value_text(&key.key)
                    })
                })
            })
            .collect();
        for (record, cell) in records.iter_mut().zip(&sweep.cells) {
            let variant: Vec<String> = (varying.iter())
                .filter_map(|key| Some(format!("{}={}", key.short, cell.value_text(&key.key)?)))
                .collect();
            record.variant = variant.join(",");
        }
        Self::assemble(records)
    }

    /// The run directories `dirs`, each grouped by the source → target domains of its config and typed by
    /// its config (method, head) and classes (U empty: all classes).
    pub fn from_run_dirs(dirs: &[PathBuf]) -> Result<Self, ReportError> {
        let mut records = Vec::with_capacity(dirs.len());
        for path in dirs {
            let dir = RunDir::new(path);
            let config_path = dir.config();
            let text = std::fs::read_to_string(&config_path).map_err(|error| ReportError::Input {
                path: path.clone(),
                message: format!(
                    "not a run directory: cannot read its config.toml ({})",
                    ftcal_eval::describe_io_error(&error)
                ),
            })?;
            let config: toml::Table = toml::from_str(&text).map_err(|error| ReportError::Input {
                path: config_path.clone(),
                message: error.to_string(),
            })?;
            let (state, summary) = run_state(&dir)?;
            records.push(RunRecord {
                benchmark: benchmark_of(&config),
                method: Method::of_config(&config, absent_is_empty(&dir)),
                variant: String::new(),
                seed: config.get("seed").and_then(|v| v.as_integer()).unwrap_or(0) as u64,
                dir: path.clone(),
                state,
                summary,
                under_benchmark_split: None,
            });
        }
        Self::assemble(records)
    }

    fn assemble(mut records: Vec<RunRecord>) -> Result<Self, ReportError> {
        let mut benchmarks: Vec<String> = Vec::new();
        for record in &records {
            if !benchmarks.contains(&record.benchmark) {
                benchmarks.push(record.benchmark.clone());
            }
        }
        // The Oracle row measures S/Y and U/Y of the benchmark: the S and U of its partial-class runs.
        for index in 0..records.len() {
            let record = &records[index];
            if record.method != Method::AllClasses || record.state != CellState::Completed {
                continue;
            }
            let split = (records.iter())
                .filter(|other| other.benchmark == record.benchmark && other.method != Method::AllClasses)
                .find_map(|other| read_saved_split(&RunDir::new(&other.dir)));
            if let Some(split) = split {
                records[index].under_benchmark_split =
                    evaluate_final(&RunDir::new(&records[index].dir), &split)?;
            }
        }
        Ok(Self { benchmarks, records })
    }

    /// The runs of `benchmark` and `method`, by variant (in order of appearance), each a list of seeds.
    pub fn groups(&self, benchmark: &str, method: Method) -> Vec<(String, Vec<&RunRecord>)> {
        let mut groups: Vec<(String, Vec<&RunRecord>)> = Vec::new();
        for record in (self.records.iter()).filter(|r| r.benchmark == benchmark && r.method == method) {
            match groups.iter_mut().find(|(variant, _)| *variant == record.variant) {
                Some((_, members)) => members.push(record),
                None => groups.push((record.variant.clone(), vec![record])),
            }
        }
        groups
    }

    /// The variants of `method` across every benchmark, in order of appearance.
    pub fn variants(&self, method: Method) -> Vec<String> {
        let mut variants: Vec<String> = Vec::new();
        for record in self.records.iter().filter(|r| r.method == method) {
            if !variants.contains(&record.variant) {
                variants.push(record.variant.clone());
            }
        }
        variants
    }

    /// The runs of `benchmark`, `method` and `variant` (one per seed).
    pub fn members(&self, benchmark: &str, method: Method, variant: &str) -> Vec<&RunRecord> {
        (self.records.iter())
            .filter(|r| r.benchmark == benchmark && r.method == method && r.variant == variant)
            .collect()
    }
}

/// The state of a run directory outside a sweep: what it says of itself, else interrupted (it has a
/// config: it started). There are no failure records outside a sweep.
fn run_state(dir: &RunDir) -> Result<(CellState, Option<Summary>), ReportError> {
    Ok(ftcal_sweep::status::run_dir_state(dir)?.unwrap_or((CellState::Interrupted, None)))
}

fn read_saved_split(dir: &RunDir) -> Option<SavedSplit> {
    let bytes = std::fs::read(dir.classes()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the run's `classes.json` says U is empty (a run that never started says nothing: false).
fn absent_is_empty(dir: &RunDir) -> bool {
    read_saved_split(dir).is_some_and(|split| split.absent.is_empty())
}

/// The last saved test outputs of `dir` evaluated under `split` (`None` when none were saved).
fn evaluate_final(dir: &RunDir, split: &SavedSplit) -> Result<Option<ModelMetrics>, ReportError> {
    let Some(last) = dir.saved_epochs("test").into_iter().max() else {
        return Ok(None);
    };
    let scores = read_scores(&dir.output("test", last))?;
    let split = split.split()?;
    if split.num_classes() != scores.num_classes() {
        return Err(ReportError::Input {
            path: dir.root().to_path_buf(),
            message: format!(
                "its outputs have {} classes, its benchmark's other runs {}: not the same benchmark",
                scores.num_classes(),
                split.num_classes()
            ),
        });
    }
    Ok(Some(
        ModelEvaluation::new(&scores, &split, None)?.metrics().clone(),
    ))
}

/// `source→target` from a config's `[data]`: each dataset's domain, else its kind.
fn benchmark_of(config: &toml::Table) -> String {
    let name = |which: &str| -> Option<String> {
        let dataset = config.get("data")?.get(which)?;
        (dataset.get("domain").or_else(|| dataset.get("kind")))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    match (name("source"), name("target")) {
        (Some(source), Some(target)) => format!("{source}→{target}"),
        (None, Some(target)) => target,
        _ => "run".to_string(),
    }
}
