//! `image_list`: the reference code's list files, one `relative/path label` a line.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use crate::DataError;
use crate::dataset::{ImageOrigin, ImageSet, ListedAt, Problem, ProblemKind, Sample};

/// How strictly list entries are confined to the dataset root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootPolicy {
    /// Absolute paths, `..` and symlinks leading out of the root are refused (the default).
    Confined,
    /// Any path is accepted (`allow_outside_root = true`).
    Anywhere,
}

/// Reads the list file `list` of images under `root`; labels must be below `num_classes`.
///
/// Lines that cannot be used become [`Problem`]s (with the line number) rather than errors, so that
/// `ftcal data check` reports all of them; [`crate::Dataset::first_error`] turns them into an error.
pub fn read_list(
    list: &Path,
    root: &Path,
    num_classes: usize,
    policy: RootPolicy,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Result<ImageSet, DataError> {
    let text = std::fs::read_to_string(list).map_err(|error| DataError::io(list, error))?;
    let canonical_root = match policy {
        RootPolicy::Confined => Some(root.canonicalize().map_err(|error| DataError::io(root, error))?),
        RootPolicy::Anywhere => None,
    };
    let mut samples = Vec::new();
    let mut seen = HashSet::new();
    let mut aliases = DomainAliases::new(root);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let entry = raw.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let problem = |kind, message: String| Problem::new(kind, list, Some(line), message);
        let Some((relative, label)) = entry.rsplit_once(char::is_whitespace) else {
            problems.push(problem(
                ProblemKind::MalformedLine,
                format!("{entry:?} has no label; expected `relative/path label`"),
            ));
            continue;
        };
        let relative = relative.trim_end();
        let Ok(label) = label.parse::<usize>() else {
            problems.push(problem(
                ProblemKind::MalformedLine,
                format!("label {label:?} is not a non-negative integer; expected `relative/path label`"),
            ));
            continue;
        };
        if label >= num_classes {
            problems.push(problem(
                ProblemKind::LabelOutOfRange,
                format!("label {label} is not below the number of classes, {num_classes}"),
            ));
            continue;
        }
        let relative = aliases.rewrite(relative);
        let relative = relative.as_str();
        let path = match resolve(root, canonical_root.as_deref(), relative) {
            Ok(path) => path,
            Err((kind, message)) => {
                problems.push(problem(kind, message));
                continue;
            }
        };
        if !seen.insert(relative.to_string()) {
            problems.push(problem(
                ProblemKind::DuplicatePath,
                format!("{relative} is listed more than once"),
            ));
        }
        samples.push(Sample {
            origin: ImageOrigin::File(path),
            label,
            listed_at: Some(ListedAt {
                list: list.to_path_buf(),
                line,
            }),
        });
    }
    Ok(ImageSet {
        name: name.to_string(),
        samples,
        memory: None,
        num_classes,
    })
}

/// Joins `relative` to `root`, refusing escapes when `canonical_root` is given, and checks the file exists.
pub(crate) fn resolve(
    root: &Path,
    canonical_root: Option<&Path>,
    relative: &str,
) -> Result<PathBuf, (ProblemKind, String)> {
    let relative_path = Path::new(relative);
    if canonical_root.is_some() {
        if relative_path.is_absolute() || relative_path.has_root() {
            return Err((
                ProblemKind::OutsideRoot,
                format!(
                    "{relative} is absolute; list paths are relative to the dataset root (or set allow_outside_root = true)"
                ),
            ));
        }
        let mut depth = 0i64;
        for component in relative_path.components() {
            match component {
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                return Err((
                    ProblemKind::OutsideRoot,
                    format!(
                        "{relative} climbs out of the dataset root with `..` (or set allow_outside_root = true)"
                    ),
                ));
            }
        }
    }
    let path = root.join(relative_path);
    match path.canonicalize() {
        Ok(real) => {
            if let Some(canonical_root) = canonical_root
                && !real.starts_with(canonical_root)
            {
                return Err((
                    ProblemKind::OutsideRoot,
                    format!(
                        "{relative} resolves to {} through a symlink, outside the dataset root {} (or set allow_outside_root = true)",
                        real.display(),
                        canonical_root.display()
                    ),
                ));
            }
            Ok(path)
        }
        Err(_) => Err((
            ProblemKind::MissingFile,
            format!("{} does not exist", path.display()),
        )),
    }
}

/// Lists name a domain folder `Real_World`; Office-Home's zip unpacks it as `Real World`. When the first
/// folder of a listed path does not exist under the root, a folder whose name differs only in case,
/// spaces or hyphens stands in for it.
struct DomainAliases<'a> {
    root: &'a Path,
    known: HashMap<String, Option<String>>,
}

impl<'a> DomainAliases<'a> {
    fn new(root: &'a Path) -> Self {
        Self {
            root,
            known: HashMap::new(),
        }
    }

    fn rewrite(&mut self, relative: &str) -> String {
        let Some((first, rest)) = relative.split_once('/') else {
            return relative.to_string();
        };
        let root = self.root;
        let alias = self.known.entry(first.to_string()).or_insert_with(|| {
            if root.join(first).exists() {
                return None;
            }
            let wanted = super::folder::normalise_name(first);
            super::folder::subfolders(root)
                .ok()?
                .into_iter()
                .find(|(name, _)| super::folder::normalise_name(name) == wanted)
                .map(|(name, _)| name)
        });
        match alias {
            Some(folder) => format!("{folder}/{rest}"),
            None => relative.to_string(),
        }
    }
}
