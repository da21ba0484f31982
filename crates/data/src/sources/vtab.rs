//! `vtab1k`: the common VTAB-1k layout, `<root>/<task>/{train800,val200,train800val200,test}.txt`, each a
//! list of `images/…jpg label` relative to `<root>/<task>/`.

use std::path::Path;

use crate::DataError;
use crate::dataset::{ImageSet, Problem};
use crate::presets::VtabTask;
use crate::sources::list::{RootPolicy, read_list};

/// The list files a VTAB-1k task folder holds.
pub const VTAB_SPLITS: [&str; 4] = ["train800", "val200", "train800val200", "test"];

/// Reads split `split` (one of [`VTAB_SPLITS`]) of `task` under `root`.
pub fn read_vtab_split(
    root: &Path,
    task: VtabTask,
    split: &str,
    policy: RootPolicy,
    problems: &mut Vec<Problem>,
) -> Result<ImageSet, DataError> {
    if !VTAB_SPLITS.contains(&split) {
        return Err(DataError::config(
            "split",
            format!(
                "unknown VTAB-1k split {split:?}; the splits are {}",
                VTAB_SPLITS.join(", ")
            ),
        ));
    }
    let task_dir = root.join(task.name);
    if !task_dir.is_dir() {
        return Err(DataError::Layout {
            path: task_dir,
            message: format!(
                "no folder for VTAB-1k task {}; expected <root>/{}/{{train800val200,test}}.txt",
                task.name, task.name
            ),
        });
    }
    let list = task_dir.join(format!("{split}.txt"));
    read_list(
        &list,
        &task_dir,
        task.num_classes,
        policy,
        &format!("vtab-1k/{} {split}", task.name),
        problems,
    )
}
