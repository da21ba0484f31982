//! Stages that several runs compute identically, done once and shared: the source stage (the source model
//! and its checkpoints) and the pre-trained model's evaluation (its outputs on each split). A sweep whose
//! cells differ only in fine-tuning or evaluation settings trains its source model once.
//!
//! A shared stage lives in a directory keyed by everything its result depends on, so two runs share it
//! only when they would have computed the same bytes:
//!
//! ```text
//! <shared>/<key hash>/key.toml        what the source stage depends on: backend, precision, seed, [model], [source],
//!                                      [data] but its class split
//! <shared>/<key hash>/.lock           held while a process computes a stage of this key
//! <shared>/<key hash>/models/source.safetensors, checkpoints/source/
//! <shared>/<key hash>/pretrained/<eval hash>/key.toml, <split>.safetensors
//! ```
//!
//! A run takes a shared result by a hard link into its own directory (a copy where the file system has no
//! links), so its run directory is complete on its own and is what `ftcal run` alone would have written.

use std::path::{Path, PathBuf};

use ftcal_eval::write_atomic;

use crate::TrainError;
use crate::config::{EvalSplit, FeatureEpochs, RunConfig, config_name};
use crate::run_dir::{RunDir, RunLock, create_parent, io_error};

/// The root of the shared stages (a sweep's `shared/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStages {
    root: PathBuf,
}

/// The shared directory of one source-stage key, locked by this process.
#[derive(Debug)]
pub struct SharedHome {
    /// The directory, laid out as a run directory for the source stage's paths.
    pub dir: RunDir,
    _lock: RunLock,
}

impl SharedStages {
    /// Shared stages under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `config`'s source stage, locked (waiting while another run holds it), its key
    /// written on first use and checked on every later one.
    pub fn home(&self, config: &RunConfig) -> Result<SharedHome, TrainError> {
        let key = source_key(config);
        let dir = RunDir::new(self.root.join(hash_hex(&key)));
        let lock = dir.wait_for_lock()?;
        write_or_check_key(&dir.root().join("key.toml"), &key)?;
        Ok(SharedHome { dir, _lock: lock })
    }
}

impl SharedHome {
    /// Where the pre-trained model's outputs on `split` are shared, for runs with `config`'s evaluation
    /// settings; the key of those settings is written on first use.
    pub fn pretrained_output(&self, config: &RunConfig, split: EvalSplit) -> Result<PathBuf, TrainError> {
        let key = pretrained_key(config);
        let folder = self.dir.root().join("pretrained").join(hash_hex(&key));
        write_or_check_key(&folder.join("key.toml"), &key)?;
        Ok(folder.join(format!("{}.safetensors", split.name())))
    }
}

/// What the source stage's result depends on, as TOML: everything of the config but the fine-tuning,
/// the evaluation, the class split, the run's name and its output folder.
pub fn source_key(config: &RunConfig) -> String {
    let mut table = toml::Table::try_from(config).expect("a run config serialises to TOML");
    table.retain(|key, _| {
        matches!(
            key,
            "backend" | "precision" | "seed" | "model" | "source" | "data"
        )
    });
    if let Some(toml::Value::Table(data)) = table.get_mut("data") {
        data.remove("classes");
    }
    // A source stage trains a linear head whatever `model.head` is; the head changes the outputs only.
    if let Some(toml::Value::Table(model)) = table.get_mut("model") {
        model.remove("head");
        model.remove("cosine_scale");
    }
    toml::to_string(&table).expect("a TOML table serialises")
}

/// What the pre-trained model's saved outputs depend on beyond [`source_key`]: the evaluation batch (it
/// can change the order of sums), whether features are computed and kept, and the saved precision.
fn pretrained_key(config: &RunConfig) -> String {
    let eval = &config.eval;
    let kept_features = eval.ncm && eval.save.features != FeatureEpochs::None;
    let mut key = format!(
        "batch_size = {}\nfeatures = {kept_features}\ndtype = \"{}\"\n",
        eval.batch_size,
        config_name(&eval.save.dtype)
    );
    if let Some(scale) = config.model.head_scale() {
        key.push_str(&format!("cosine_scale = {scale}\n"));
    }
    key
}

/// FNV-1a, 64 bits, as 16 hex digits: a stable name for a key (the key itself is stored and compared).
fn hash_hex(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn write_or_check_key(path: &Path, key: &str) -> Result<(), TrainError> {
    if path.exists() {
        let saved = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
        if saved != key {
            return Err(TrainError::file(
                path,
                "holds another key than this run's under the same hash; delete the shared folder it is in",
            ));
        }
        return Ok(());
    }
    create_parent(path)?;
    write_atomic(path, key.as_bytes())?;
    Ok(())
}

/// Makes `to` the file `from`: a hard link, or a copy (written atomically) where links are impossible.
/// An existing `to` is left as it is.
pub(crate) fn link_or_copy(from: &Path, to: &Path) -> Result<(), TrainError> {
    if to.exists() {
        return Ok(());
    }
    create_parent(to)?;
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => {
            let bytes = std::fs::read(from).map_err(|e| io_error(from, e))?;
            write_atomic(to, &bytes)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with `top` keys (before any table), S = `fine_tuning_classes`, and `tables`.
    fn config_of(top: &str, fine_tuning_classes: &str, tables: &str) -> RunConfig {
        let base = format!(
            "name = \"a\"\n{top}[model]\narch = \"resnet18\"\n[data.target]\nkind = \"digits2\"\ndomain = \"optdigits\"\n\
             [data.classes]\nfine_tuning = {fine_tuning_classes}\n[fine_tuning]\nepochs = 2\nlr = 0.1\n"
        );
        let parsed: RunConfig = toml::from_str(&format!("{base}{tables}")).unwrap();
        parsed.resolve().unwrap()
    }

    fn config(tables: &str) -> RunConfig {
        config_of("", "[0, 1, 2]", tables)
    }

    #[test]
    fn the_source_key_ignores_fine_tuning_evaluation_and_the_class_split_only() {
        let plain = source_key(&config(""));
        let other_fine_tuning = config_of(
            "output_dir = \"elsewhere\"\n",
            "[0, 1, 2]",
            "[fine_tuning.optimizer]\nname = \"adam\"\n[eval]\nevery = 2\n",
        );
        assert_eq!(source_key(&other_fine_tuning), plain);
        assert_eq!(source_key(&config_of("", "[5, 6]", "")), plain);
        assert_ne!(source_key(&config_of("seed = 1\n", "[0, 1, 2]", "")), plain);
        // bf16 products train another source model; float32, the default, is the key of older runs.
        assert_ne!(
            source_key(&config_of("precision = \"bf16\"\n", "[0, 1, 2]", "")),
            plain
        );
        assert_eq!(
            source_key(&config_of("precision = \"f32\"\n", "[0, 1, 2]", "")),
            plain
        );
        assert_ne!(
            source_key(&config(
                "[source]\nepochs = 2\nlr = 0.1\n[data.source]\nkind = \"digits2\"\ndomain = \"mnist\"\n"
            )),
            plain
        );
        assert_ne!(
            source_key(&config("[data.transforms]\ntrain = \"none\"\n")),
            plain
        );
        assert!(!plain.contains("fine_tuning"), "{plain}");
    }

    #[test]
    fn a_cosine_head_shares_the_source_stage_but_not_the_pretrained_outputs() {
        let mut cosine = config("");
        cosine.model.head = ftcal_models::HeadKind::Cosine;
        cosine.model.cosine_scale = Some(10.0);
        assert_eq!(source_key(&cosine), source_key(&config("")));
        assert_ne!(pretrained_key(&cosine), pretrained_key(&config("")));
        assert!(pretrained_key(&cosine).contains("cosine_scale = 10"));
    }

    #[test]
    fn the_pretrained_key_follows_what_the_saved_outputs_depend_on() {
        let plain = pretrained_key(&config(""));
        assert_eq!(pretrained_key(&config("[eval]\nevery = 3\n")), plain);
        assert_ne!(pretrained_key(&config("[eval]\nbatch_size = 7\n")), plain);
        assert_ne!(
            pretrained_key(&config("[eval.save]\ndtype = \"float16\"\n")),
            plain
        );
    }

    #[test]
    fn hashes_are_stable_and_a_different_key_under_the_same_name_is_refused() {
        assert_eq!(hash_hex(""), "cbf29ce484222325");
        assert_eq!(hash_hex("a"), "af63dc4c8601ec8c");
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("k/key.toml");
        write_or_check_key(&path, "x = 1\n").unwrap();
        write_or_check_key(&path, "x = 1\n").unwrap();
        let error = write_or_check_key(&path, "x = 2\n").unwrap_err().to_string();
        assert!(error.contains("another key"), "{error}");
    }

    #[test]
    fn a_link_makes_the_same_file_and_leaves_an_existing_one() {
        let temp = tempfile::tempdir().unwrap();
        let from = temp.path().join("a");
        std::fs::write(&from, b"model").unwrap();
        let to = temp.path().join("run/models/b");
        link_or_copy(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"model");
        std::fs::write(temp.path().join("c"), b"other").unwrap();
        link_or_copy(&temp.path().join("c"), &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"model");
    }
}
