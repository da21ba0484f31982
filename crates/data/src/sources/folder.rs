//! `image_folder`: `root/<class>/<image>` or `root/<Domain>/<class>/<image>` trees.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::dataset::{ImageOrigin, ImageSet, Problem, ProblemKind, Sample};
use crate::presets::{imagenet_wnids, office_home_class_names};

/// File extensions taken as images, compared without case (`.JPEG` is ImageNet-Sketch's). The format
/// itself is read from the bytes when decoding.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"];

/// How class folders map to label indices.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ClassOrder {
    /// `"office_home"` (the reference code's 65 names), `"imagenet"` (the 1000 sorted WordNet ids, so
    /// that ImageNet-R's 200 folders get their ImageNet-1k indices) or `"alphabetical"` (sorted folder
    /// names: the fallback, and not the order of any benchmark here).
    Named(String),
    /// Explicit class names; label i is the i-th name.
    Explicit(Vec<String>),
}

/// The class names of `order` for a tree at `dir`, with the key of the setting for errors.
pub fn class_names(order: &ClassOrder, dir: &Path, key: &str) -> Result<Vec<String>, DataError> {
    match order {
        ClassOrder::Explicit(names) => Ok(names.clone()),
        ClassOrder::Named(name) => match name.as_str() {
            "office_home" => Ok(office_home_class_names()?),
            "imagenet" => Ok(imagenet_wnids()),
            "alphabetical" => {
                let mut names: Vec<String> = subfolders(dir)?.into_iter().map(|(name, _)| name).collect();
                names.sort();
                Ok(names)
            }
            other => Err(DataError::config(
                key,
                format!(
                    "unknown class order {other:?}; use \"office_home\", \"imagenet\", \"alphabetical\" or a list of names"
                ),
            )),
        },
    }
}

/// Compares folder and class names the way Office-Home's zip and lists differ: case, spaces, hyphens.
pub fn normalise_name(name: &str) -> String {
    name.trim().to_lowercase().replace([' ', '-'], "_")
}

/// The subfolders of `dir`, as (name, path), sorted by name.
pub fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|error| DataError::io(dir, error))?;
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| DataError::io(dir, error))?;
        let path = entry.path();
        if path.is_dir() {
            folders.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    folders.sort();
    Ok(folders)
}

/// Finds the folder of `domain` under `root`, accepting `Real World` for `Real_World` and other aliases.
pub fn find_domain(root: &Path, domain: &str) -> Result<PathBuf, DataError> {
    let wanted = normalise_name(domain);
    let folders = subfolders(root)?;
    folders
        .iter()
        .find(|(name, _)| normalise_name(name) == wanted)
        .map(|(_, path)| path.clone())
        .ok_or_else(|| DataError::Layout {
            path: root.to_path_buf(),
            message: format!(
                "no folder for domain {domain:?}; found {}",
                folders
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// Whether `path` has an image extension, in any case.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| IMAGE_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str()))
}

/// The images of a class tree at `dir`, labelled by `names`, sorted by path within each class.
pub fn read_tree(
    dir: &Path,
    names: &[String],
    name: &str,
    problems: &mut Vec<Problem>,
) -> Result<ImageSet, DataError> {
    let index: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(label, name)| (normalise_name(name), label))
        .collect();
    let mut samples = Vec::new();
    for (folder, path) in subfolders(dir)? {
        let Some(&label) = index.get(&normalise_name(&folder)) else {
            problems.push(Problem::new(
                ProblemKind::UnknownClass,
                &path,
                None,
                "this folder is not a class of the configured class order; remove it or fix class_order",
            ));
            continue;
        };
        let mut files = Vec::new();
        collect_images(&path, &mut files)?;
        files.sort();
        if files.is_empty() {
            problems.push(Problem::new(
                ProblemKind::EmptyClass,
                &path,
                None,
                format!("class {label} ({folder}) has no image"),
            ));
        }
        samples.extend(files.into_iter().map(|file| Sample {
            origin: ImageOrigin::File(file),
            label,
            listed_at: None,
        }));
    }
    Ok(ImageSet {
        name: name.to_string(),
        samples,
        memory: None,
        num_classes: names.len(),
    })
}

fn collect_images(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|error| DataError::io(dir, error))?;
    for entry in entries {
        let path = entry.map_err(|error| DataError::io(dir, error))?.path();
        if path.is_dir() {
            collect_images(&path, files)?;
        } else if has_image_extension(&path) {
            files.push(path);
        }
    }
    Ok(())
}

/// Splits `set` per class into (train, test): each class's samples are shuffled by a generator seeded
/// with (`seed`, class) and the first `round(train_fraction · n)` go to train, the rest to test.
pub fn split_per_class(set: &ImageSet, train_fraction: f64, seed: u64) -> (ImageSet, ImageSet) {
    let mut by_class: Vec<Vec<&Sample>> = vec![Vec::new(); set.num_classes];
    for sample in &set.samples {
        by_class[sample.label].push(sample);
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (class, mut members) in by_class.into_iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(class as u64);
        members.shuffle(&mut rng);
        let cut = (train_fraction * members.len() as f64).round() as usize;
        train.extend(members[..cut].iter().map(|sample| (*sample).clone()));
        test.extend(members[cut..].iter().map(|sample| (*sample).clone()));
    }
    let part = |samples, suffix: &str| ImageSet {
        name: format!("{} {suffix}", set.name),
        samples,
        memory: set.memory.clone(),
        num_classes: set.num_classes,
    };
    (part(train, "train"), part(test, "test"))
}
