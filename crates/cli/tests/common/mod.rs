//! What the cli's end-to-end tests share: the built binary, run from the workspace root so that the
//! shipped configs' relative paths resolve.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs `ftcal ARGS...` in the workspace root and returns what it printed and its status.
pub fn ftcal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ftcal"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("ftcal runs")
}

/// The shipped benchmark configs (ImageNet-R/Sketch, Office-Home, VTAB): every TOML file of configs/,
/// configs/office-home/ and configs/vtab/ but the quickstarts (`quickstart*.toml`), in a fixed order.
pub fn shipped_benchmark_configs() -> Vec<PathBuf> {
    let mut configs = Vec::new();
    for folder in ["configs", "configs/office-home", "configs/vtab"] {
        for entry in std::fs::read_dir(workspace().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let quickstart = path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("quickstart"));
            if path.extension().is_some_and(|e| e == "toml") && !quickstart {
                configs.push(path);
            }
        }
    }
    configs.sort();
    assert_eq!(configs.len(), 2 + 6 + 8, "{configs:?}");
    configs
}

/// The `[model]` and target `[data]` tables of the small test runs: the quickstart's ResNet on optdigits,
/// S = 0–4, U = 5–9, the quickstart's transforms.
pub fn digits_target_tables() -> String {
    let arch = workspace().join("configs/models/resnet_digits.toml");
    format!(
        r#"[model]
arch = "{}"

[data.target]
kind = "digits2"
domain = "optdigits"

[data.classes]
fine_tuning = [0, 1, 2, 3, 4]

[data.transforms]
train = "digits_train"
eval = "digits_eval"
"#,
        arch.display()
    )
}

/// The smallest run with every stage, named `tiny`: a source stage of 2 × 4 iterations on mnist,
/// fine-tuning of `fine_tuning_epochs` × 4 iterations on optdigits 0–4, two PCV folds of one epoch,
/// evaluation after every epoch.
pub fn tiny_run_config(fine_tuning_epochs: usize) -> String {
    format!(
        r#"name = "tiny"
seed = 5

{}
[source]
epochs = 2
iterations_per_epoch = 4
batch_size = 32
lr = 0.05

[data.source]
kind = "digits2"
domain = "mnist"

[fine_tuning]
epochs = {fine_tuning_epochs}
iterations_per_epoch = 4
batch_size = 32
lr = 0.05

[eval]
batch_size = 500
pcv_folds = 2
pcv_epochs = 1
"#,
        digits_target_tables()
    )
}

/// Printed bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
