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

/// Printed bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
