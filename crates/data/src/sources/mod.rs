//! Image sources: one module per dataset `kind` of the config.

pub mod digits2;
pub mod folder;
pub mod list;
pub mod vtab;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::dataset::{Dataset, Problem};
use crate::presets::vtab_task;
use folder::{ClassOrder, class_names, find_domain, read_tree, split_per_class};
use list::{RootPolicy, read_list};

/// One dataset in a config (`[data.target]`, `[data.source]`), chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DatasetConfig {
    /// List files of `relative/path label` lines.
    ImageList(ImageListConfig),
    /// A tree of class folders.
    ImageFolder(ImageFolderConfig),
    /// A VTAB-1k task.
    Vtab1k(Vtab1kConfig),
    /// The embedded Digits-2 data.
    Digits2(Digits2Config),
}

/// `kind = "image_list"`: e.g. Office-Home, ImageNet-R and ImageNet-Sketch with the reference lists.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageListConfig {
    /// Folder the listed paths are relative to.
    pub root: PathBuf,
    /// Training list file.
    pub train: PathBuf,
    /// Test list file.
    pub test: PathBuf,
    /// Size of the class space; defaults to the class preset's (65 for Office-Home, 1000 for ImageNet).
    pub num_classes: Option<usize>,
    /// Class names in label order: `"office_home"`, `"imagenet"` (WordNet ids) or a list (optional).
    pub class_names: Option<ClassOrder>,
    /// Accept absolute paths and paths leaving `root` (off: list files come from elsewhere).
    #[serde(default)]
    pub allow_outside_root: bool,
}

/// `kind = "image_folder"`: `root/<class>/<image>` or, with `domain`, `root/<Domain>/<class>/<image>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFolderConfig {
    /// The tree's root.
    pub root: PathBuf,
    /// Domain subfolder (`Real_World` also finds `Real World`).
    pub domain: Option<String>,
    /// How folders map to labels.
    pub class_order: ClassOrder,
    /// Subfolder of the training split (e.g. `train`); without it, a seeded per-class split is made.
    pub train_dir: Option<String>,
    /// Subfolder of the test split (e.g. `val`).
    pub test_dir: Option<String>,
    /// Share of each class that goes to training in the per-class split.
    #[serde(default = "default_train_fraction")]
    pub train_fraction: f64,
    /// Seed of the per-class split.
    #[serde(default)]
    pub split_seed: u64,
}

/// `kind = "vtab1k"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Vtab1kConfig {
    /// Folder holding the task folders.
    pub root: PathBuf,
    /// Task folder name, e.g. `caltech101`.
    pub task: String,
    /// Training list (without `.txt`).
    #[serde(default = "default_vtab_train")]
    pub train: String,
    /// Test list (without `.txt`).
    #[serde(default = "default_vtab_test")]
    pub test: String,
    /// Accept list paths leaving the task folder.
    #[serde(default)]
    pub allow_outside_root: bool,
}

/// `kind = "digits2"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Digits2Config {
    /// `mnist` or `optdigits`.
    pub domain: String,
    /// Share of each class that goes to training.
    #[serde(default = "default_train_fraction")]
    pub train_fraction: f64,
    /// Seed of the per-class split.
    #[serde(default)]
    pub split_seed: u64,
}

fn default_train_fraction() -> f64 {
    0.7
}
fn default_vtab_train() -> String {
    "train800val200".into()
}
fn default_vtab_test() -> String {
    "test".into()
}

/// Expands a leading `~/` to the home folder; other paths are used as given (relative to the
/// directory ftcal runs in).
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// `root` with `~/` expanded, if it is a folder; otherwise an error on `{key}.root` saying what it
/// should point at.
fn existing_root(root: &Path, key: &str, what: &str) -> Result<PathBuf, DataError> {
    let root = expand_home(root);
    if root.is_dir() {
        Ok(root)
    } else {
        Err(DataError::config(
            format!("{key}.root"),
            format!("{} is not a folder; point it at {what}", root.display()),
        ))
    }
}

impl DatasetConfig {
    /// Lists the dataset. `key` is the config table (`data.target`); `default_num_classes` is the
    /// class preset's size, used when the dataset itself does not fix one.
    pub fn open(&self, key: &str, default_num_classes: Option<usize>) -> Result<Dataset, DataError> {
        let mut problems: Vec<Problem> = Vec::new();
        let policy = |allow: bool| {
            if allow {
                RootPolicy::Anywhere
            } else {
                RootPolicy::Confined
            }
        };
        let check_fraction = |fraction: f64| {
            if fraction > 0.0 && fraction < 1.0 {
                Ok(())
            } else {
                Err(DataError::config(
                    format!("{key}.train_fraction"),
                    format!("{fraction} must lie strictly between 0 and 1"),
                ))
            }
        };
        match self {
            DatasetConfig::ImageList(config) => {
                let root = existing_root(&config.root, key, "the dataset's root")?;
                let names = match &config.class_names {
                    Some(order) => Some(class_names(order, &root, &format!("{key}.class_names"))?),
                    None => None,
                };
                let num_classes = config
                    .num_classes
                    .or(names.as_ref().map(Vec::len))
                    .or(default_num_classes)
                    .ok_or_else(|| {
                        DataError::config(
                            format!("{key}.num_classes"),
                            "the size of the class space is unknown; set num_classes or use a class preset",
                        )
                    })?;
                let policy = policy(config.allow_outside_root);
                let name = root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let train_list = expand_home(&config.train);
                let test_list = expand_home(&config.test);
                let train = read_list(
                    &train_list,
                    &root,
                    num_classes,
                    policy,
                    &format!("{name} train"),
                    &mut problems,
                )?;
                let test = read_list(
                    &test_list,
                    &root,
                    num_classes,
                    policy,
                    &format!("{name} test"),
                    &mut problems,
                )?;
                Ok(Dataset {
                    name,
                    num_classes,
                    class_names: names,
                    train,
                    test,
                    problems,
                })
            }
            DatasetConfig::ImageFolder(config) => {
                let root = existing_root(&config.root, key, "the dataset's root")?;
                let base = match &config.domain {
                    Some(domain) => find_domain(&root, domain)?,
                    None => root.clone(),
                };
                let name = base
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (train, test) = match (&config.train_dir, &config.test_dir) {
                    (Some(train_dir), Some(test_dir)) => {
                        let train_base = base.join(train_dir);
                        let names =
                            class_names(&config.class_order, &train_base, &format!("{key}.class_order"))?;
                        let train = read_tree(&train_base, &names, &format!("{name} train"), &mut problems)?;
                        let test = read_tree(
                            &base.join(test_dir),
                            &names,
                            &format!("{name} test"),
                            &mut problems,
                        )?;
                        (train, test)
                    }
                    (None, None) => {
                        check_fraction(config.train_fraction)?;
                        let names = class_names(&config.class_order, &base, &format!("{key}.class_order"))?;
                        let all = read_tree(&base, &names, &name, &mut problems)?;
                        split_per_class(&all, config.train_fraction, config.split_seed)
                    }
                    _ => {
                        return Err(DataError::config(
                            format!("{key}.train_dir"),
                            "set both train_dir and test_dir, or neither (for a seeded per-class split)",
                        ));
                    }
                };
                let names = class_names(&config.class_order, &base, &format!("{key}.class_order")).ok();
                Ok(Dataset {
                    name,
                    num_classes: train.num_classes,
                    class_names: names,
                    train,
                    test,
                    problems,
                })
            }
            DatasetConfig::Vtab1k(config) => {
                let task = vtab_task(&config.task, &format!("{key}.task"))?;
                let root = existing_root(&config.root, key, "the folder of the VTAB-1k task folders")?;
                let policy = policy(config.allow_outside_root);
                let train = vtab::read_vtab_split(&root, task, &config.train, policy, &mut problems)?;
                let test = vtab::read_vtab_split(&root, task, &config.test, policy, &mut problems)?;
                Ok(Dataset {
                    name: format!("vtab-1k/{}", task.name),
                    num_classes: task.num_classes,
                    class_names: None,
                    train,
                    test,
                    problems,
                })
            }
            DatasetConfig::Digits2(config) => {
                check_fraction(config.train_fraction)?;
                let all = digits2::digits2_set(&config.domain).map_err(|error| match error {
                    DataError::Config { message, .. } => DataError::config(format!("{key}.domain"), message),
                    other => other,
                })?;
                let (train, test) = split_per_class(&all, config.train_fraction, config.split_seed);
                Ok(Dataset {
                    name: all.name.clone(),
                    num_classes: all.num_classes,
                    class_names: Some(digits2::DIGIT_NAMES.iter().map(|n| n.to_string()).collect()),
                    train,
                    test,
                    problems,
                })
            }
        }
    }
}
