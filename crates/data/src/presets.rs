//! The benchmarks' class spaces and orders, read from the files shipped in `datasets/` (embedded in the
//! binary, so that a run does not depend on the working directory).

use std::sync::OnceLock;

use serde::Deserialize;

use crate::DataError;

/// `datasets/class-orders.toml`: the reference code's class orders.
pub const CLASS_ORDERS_TOML: &str = include_str!("../../../datasets/class-orders.toml");
/// `datasets/imagenet-wnids.txt`: the 1000 ImageNet-1k WordNet ids, line i = class index i.
pub const IMAGENET_WNIDS_TXT: &str = include_str!("../../../datasets/imagenet-wnids.txt");

/// A partial-class benchmark's class space and its fixed split into S and U.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassPreset {
    /// The preset's name, e.g. `office_home.source_art`.
    pub name: String,
    /// Size of the class space.
    pub num_classes: usize,
    /// Fine-tuning classes S: the first entries of the order.
    pub fine_tuning: Vec<usize>,
    /// Absent classes U: the last entries of the order.
    pub absent: Vec<usize>,
    /// Where the numbers come from, for the data check and the run log.
    pub note: &'static str,
}

#[derive(Debug, Deserialize)]
struct OrderEntry {
    num_classes: Option<usize>,
    fine_tuning: Option<usize>,
    absent: Option<usize>,
    order: Vec<usize>,
}

#[derive(Debug, Deserialize)]
struct OfficeHome {
    num_classes: usize,
    class_names: Vec<String>,
    source_art: OrderEntry,
    source_real_world: OrderEntry,
}

#[derive(Debug, Deserialize)]
struct ClassOrders {
    office_home: OfficeHome,
    imagenet_r: OrderEntry,
    imagenet_sketch: OrderEntry,
    vtab: std::collections::BTreeMap<String, OrderEntry>,
}

fn class_orders() -> Result<&'static ClassOrders, DataError> {
    static PARSED: OnceLock<Result<ClassOrders, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| toml::from_str(CLASS_ORDERS_TOML).map_err(|error| error.to_string()))
        .as_ref()
        .map_err(|error| DataError::config("datasets/class-orders.toml", error.clone()))
}

/// The 65 Office-Home class names in label order (not alphabetical).
pub fn office_home_class_names() -> Result<Vec<String>, DataError> {
    Ok(class_orders()?.office_home.class_names.clone())
}

/// The 1000 ImageNet-1k WordNet ids in label order (sorted).
pub fn imagenet_wnids() -> Vec<String> {
    IMAGENET_WNIDS_TXT.lines().map(str::to_string).collect()
}

/// The names of all class-split presets.
pub fn preset_names() -> Vec<String> {
    let mut names = vec![
        "office_home.source_art".to_string(),
        "office_home.source_real_world".to_string(),
        "imagenet_r".to_string(),
        "imagenet_sketch".to_string(),
    ];
    if let Ok(orders) = class_orders() {
        names.extend(orders.vtab.keys().map(|task| format!("vtab.{task}")));
    }
    names
}

/// The preset `name`; `key` names the config key in errors.
pub fn class_preset(name: &str, key: &str) -> Result<ClassPreset, DataError> {
    let orders = class_orders()?;
    let (entry, num_classes, note) = match name {
        "office_home.source_art" => (
            &orders.office_home.source_art,
            orders.office_home.num_classes,
            "reference code order for source domain Art",
        ),
        "office_home.source_real_world" => (
            &orders.office_home.source_real_world,
            orders.office_home.num_classes,
            "reference code order for source domain Real World",
        ),
        "imagenet_r" => (
            &orders.imagenet_r,
            orders.imagenet_r.num_classes.unwrap_or(1000),
            "ImageNet-1k indices; the 800 classes outside ImageNet-R compete unless exclude_outside = true",
        ),
        "imagenet_sketch" => (
            &orders.imagenet_sketch,
            orders.imagenet_sketch.num_classes.unwrap_or(1000),
            "ImageNet-1k indices",
        ),
        other => match other.strip_prefix("vtab.").and_then(|task| orders.vtab.get(task)) {
            Some(entry) => (
                entry,
                entry.num_classes.unwrap_or(entry.order.len()),
                "VTAB order from the Holistic Transfer code; the S/U sizes (first half S) are not confirmed by the papers",
            ),
            None => {
                return Err(DataError::config(
                    key,
                    format!(
                        "unknown class preset {other:?}; the presets are {}",
                        preset_names().join(", ")
                    ),
                ));
            }
        },
    };
    let half = entry.order.len() / 2;
    let fine_tuning_count = entry.fine_tuning.unwrap_or(half);
    let absent_count = entry.absent.unwrap_or(entry.order.len() - fine_tuning_count);
    if fine_tuning_count + absent_count > entry.order.len() {
        return Err(DataError::config(
            "datasets/class-orders.toml",
            format!("{name}: fine_tuning + absent exceed the order's length"),
        ));
    }
    Ok(ClassPreset {
        name: name.to_string(),
        num_classes,
        fine_tuning: entry.order[..fine_tuning_count].to_vec(),
        absent: entry.order[entry.order.len() - absent_count..].to_vec(),
        note,
    })
}

/// A VTAB-1k task: its folder name in the common `vtab-1k` archive and its number of classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VtabTask {
    /// Folder name, e.g. `oxford_flowers102`.
    pub name: &'static str,
    /// Number of classes.
    pub num_classes: usize,
    /// The class-order preset of this task, if the reference code kept one.
    pub preset: Option<&'static str>,
}

/// The 19 VTAB-1k tasks.
pub const VTAB_TASKS: [VtabTask; 19] = [
    VtabTask {
        name: "caltech101",
        num_classes: 102,
        preset: Some("vtab.caltech101"),
    },
    VtabTask {
        name: "cifar",
        num_classes: 100,
        preset: Some("vtab.cifar100"),
    },
    VtabTask {
        name: "dtd",
        num_classes: 47,
        preset: Some("vtab.dtd"),
    },
    VtabTask {
        name: "oxford_flowers102",
        num_classes: 102,
        preset: Some("vtab.flower102"),
    },
    VtabTask {
        name: "oxford_iiit_pet",
        num_classes: 37,
        preset: Some("vtab.pets"),
    },
    VtabTask {
        name: "svhn",
        num_classes: 10,
        preset: None,
    },
    VtabTask {
        name: "sun397",
        num_classes: 397,
        preset: Some("vtab.sun397"),
    },
    VtabTask {
        name: "patch_camelyon",
        num_classes: 2,
        preset: None,
    },
    VtabTask {
        name: "eurosat",
        num_classes: 10,
        preset: Some("vtab.eurosat"),
    },
    VtabTask {
        name: "resisc45",
        num_classes: 45,
        preset: Some("vtab.resisc45"),
    },
    VtabTask {
        name: "diabetic_retinopathy",
        num_classes: 5,
        preset: None,
    },
    VtabTask {
        name: "clevr_count",
        num_classes: 8,
        preset: None,
    },
    VtabTask {
        name: "clevr_dist",
        num_classes: 6,
        preset: None,
    },
    VtabTask {
        name: "dmlab",
        num_classes: 6,
        preset: None,
    },
    VtabTask {
        name: "kitti",
        num_classes: 4,
        preset: None,
    },
    VtabTask {
        name: "dsprites_loc",
        num_classes: 16,
        preset: None,
    },
    VtabTask {
        name: "dsprites_ori",
        num_classes: 16,
        preset: None,
    },
    VtabTask {
        name: "smallnorb_azi",
        num_classes: 18,
        preset: None,
    },
    VtabTask {
        name: "smallnorb_ele",
        num_classes: 9,
        preset: None,
    },
];

/// The VTAB-1k task `name`, or an error naming `key` with the nearest valid name.
pub fn vtab_task(name: &str, key: &str) -> Result<VtabTask, DataError> {
    VTAB_TASKS
        .iter()
        .find(|task| task.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = VTAB_TASKS.iter().map(|task| task.name).collect();
            DataError::config(
                key,
                format!(
                    "unknown VTAB-1k task {name:?}{}; the tasks are {}",
                    did_you_mean(name, &names),
                    names.join(", ")
                ),
            )
        })
}

/// ` (did you mean "x"?)` for the candidate nearest to `name`, or nothing when none is close.
pub fn did_you_mean(name: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|candidate| (strsim::levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= candidate.len().max(3) / 3 + 1)
        .min()
        .map(|(_, candidate)| format!(" (did you mean {candidate:?}?)"))
        .unwrap_or_default()
}
