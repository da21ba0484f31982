//! Samples, image sets (one split of one dataset) and the problems found while listing them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use crate::DataError;

/// Where one sample's pixels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageOrigin {
    /// A file on disk, already checked to lie inside the dataset root unless the config allowed otherwise.
    File(PathBuf),
    /// Index into the set's in-memory images (the embedded Digits-2).
    Memory(usize),
}

/// Where a sample was listed: a list file's line, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedAt {
    /// The list file.
    pub list: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

/// One image and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Where the pixels come from.
    pub origin: ImageOrigin,
    /// Class index in the dataset's class space.
    pub label: usize,
    /// The list file line that named it, if it came from a list.
    pub listed_at: Option<ListedAt>,
}

impl Sample {
    /// A short description for messages: the path, and the list line if any.
    pub fn describe(&self) -> String {
        let origin = match &self.origin {
            ImageOrigin::File(path) => path.display().to_string(),
            ImageOrigin::Memory(index) => format!("embedded image #{index}"),
        };
        match &self.listed_at {
            Some(at) => format!("{origin} (listed at {}:{})", at.list.display(), at.line),
            None => origin,
        }
    }
}

/// One split (train or test) of one dataset.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Human-readable name, e.g. `office-home/Clipart train`.
    pub name: String,
    /// The samples, in a fixed order (list order, or sorted paths).
    pub samples: Vec<Sample>,
    /// Images held in memory, addressed by [`ImageOrigin::Memory`].
    pub memory: Option<Arc<Vec<RgbImage>>>,
    /// Size of the class space the labels index into.
    pub num_classes: usize,
}

impl ImageSet {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the set has no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples per class, indexed by class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for sample in &self.samples {
            if let Some(count) = counts.get_mut(sample.label) {
                *count += 1;
            }
        }
        counts
    }

    /// The same set restricted to samples whose label is in `classes` (e.g. the fine-tuning classes S).
    pub fn restricted_to(&self, classes: &[usize], name: impl Into<String>) -> ImageSet {
        let mut keep = vec![false; self.num_classes];
        for class in classes {
            if let Some(flag) = keep.get_mut(*class) {
                *flag = true;
            }
        }
        ImageSet {
            name: name.into(),
            samples: self
                .samples
                .iter()
                .filter(|sample| keep.get(sample.label).copied().unwrap_or(false))
                .cloned()
                .collect(),
            memory: self.memory.clone(),
            num_classes: self.num_classes,
        }
    }

    /// Labels of all samples, in order.
    pub fn labels(&self) -> Vec<usize> {
        self.samples.iter().map(|sample| sample.label).collect()
    }

    /// The decoded 8-bit RGB image of sample `index`.
    pub fn load(&self, index: usize) -> Result<Arc<RgbImage>, DataError> {
        let sample = &self.samples[index];
        match &sample.origin {
            ImageOrigin::File(path) => crate::decode::decode_file(path).map(Arc::new),
            ImageOrigin::Memory(slot) => {
                let memory = self.memory.as_ref().ok_or_else(|| {
                    DataError::image(sample.describe(), "this set holds no in-memory images")
                })?;
                let image = memory
                    .get(*slot)
                    .ok_or_else(|| DataError::image(sample.describe(), "in-memory index out of range"))?;
                Ok(Arc::new(image.clone()))
            }
        }
    }
}

/// A dataset: the class space and its train and test splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Name, e.g. `digits2/optdigits`.
    pub name: String,
    /// Size of the class space (the model's output size).
    pub num_classes: usize,
    /// Class names, where the source knows them (folder names, Office-Home names, digits).
    pub class_names: Option<Vec<String>>,
    /// Training split (all classes).
    pub train: ImageSet,
    /// Test split (all classes).
    pub test: ImageSet,
    /// Problems found while listing (lines that could not be used, empty classes, duplicates).
    pub problems: Vec<Problem>,
}

/// What kind of problem a data check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// A listed file does not exist.
    MissingFile,
    /// A file exists but cannot be read or decoded (truncated, not an image, too large).
    CorruptImage,
    /// A list line without a label, or whose label is not an integer.
    MalformedLine,
    /// A label outside the class space.
    LabelOutOfRange,
    /// A path that is absolute or leaves the dataset root (`..`, a symlink).
    OutsideRoot,
    /// The same path listed twice in one split.
    DuplicatePath,
    /// A class of the class space without any sample in a split.
    EmptyClass,
    /// A folder that is not a class of the configured class order.
    UnknownClass,
}

impl ProblemKind {
    /// Whether the problem stops training (an empty class or a duplicate is only reported).
    pub fn is_fatal(self) -> bool {
        !matches!(self, ProblemKind::EmptyClass | ProblemKind::DuplicatePath)
    }

    /// Short name, as printed by `ftcal data check`.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::MissingFile => "missing file",
            ProblemKind::CorruptImage => "corrupt image",
            ProblemKind::MalformedLine => "malformed line",
            ProblemKind::LabelOutOfRange => "label out of range",
            ProblemKind::OutsideRoot => "outside the root",
            ProblemKind::DuplicatePath => "duplicate path",
            ProblemKind::EmptyClass => "empty class",
            ProblemKind::UnknownClass => "unknown class folder",
        }
    }
}

/// One problem, with the file (and line) it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The file or folder concerned.
    pub path: PathBuf,
    /// The list line, if the problem is on one.
    pub line: Option<usize>,
    /// Details and what to do.
    pub message: String,
}

impl Problem {
    /// A problem on `path` (and `line`, if any).
    pub fn new(kind: ProblemKind, path: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            kind,
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// The problem as an error that stops loading.
    pub fn to_error(&self) -> DataError {
        match self.line {
            Some(line) => DataError::ListLine {
                path: self.path.clone(),
                line,
                message: format!("{}: {}", self.kind.name(), self.message),
            },
            None => DataError::Image {
                path: self.path.clone(),
                message: format!("{}: {}", self.kind.name(), self.message),
            },
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.path.display(),
                line,
                self.kind.name(),
                self.message
            ),
            None => write!(
                f,
                "{}: {}: {}",
                self.path.display(),
                self.kind.name(),
                self.message
            ),
        }
    }
}
