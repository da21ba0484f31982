//! `ftcal data check`: load every image of a configured setting once, count per split and class, and
//! collect every problem with its file and line.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::DataError;
use crate::classes::ClassSplit;
use crate::config::{DataConfig, PartialClassData};
use crate::dataset::{ImageOrigin, ImageSet, Problem, ProblemKind};

/// Counts of one split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitCounts {
    /// e.g. `target train`.
    pub name: String,
    /// Samples per class.
    pub per_class: Vec<usize>,
    /// Samples that decoded.
    pub readable: usize,
}

/// Everything `ftcal data check` prints.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The listed data and class split.
    pub data: PartialClassData,
    /// Counts for source train/test (if any), target train/test.
    pub splits: Vec<SplitCounts>,
    /// Every problem found, in the order found.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Text report: S and U, a table of counts per class and split, then the problems.
    pub fn to_text(&self) -> String {
        let split = &self.data.split;
        let names = self.data.target.class_names.as_ref();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "dataset: {} ({} classes)",
            self.data.target.name,
            split.num_classes()
        );
        let _ = writeln!(
            out,
            "fine-tuning classes S ({}): {}",
            split.fine_tuning().len(),
            ranges(split.fine_tuning())
        );
        let _ = writeln!(
            out,
            "absent classes U ({}): {}",
            split.absent().len(),
            ranges(split.absent())
        );
        if split.num_outside() > 0 {
            let _ = writeln!(
                out,
                "outside classes: {} ({})",
                split.num_outside(),
                if split.outside_compete() {
                    "they compete in Y"
                } else {
                    "excluded from Y"
                }
            );
        }
        let _ = writeln!(out);
        let mut header = format!("{:>6}  {:<5} {:<20}", "class", "group", "name");
        for counts in &self.splits {
            let _ = write!(header, " {:>14}", counts.name);
        }
        let _ = writeln!(out, "{header}");
        let in_use = |class: usize| self.splits.iter().any(|counts| counts.per_class[class] > 0);
        for class in 0..split.num_classes() {
            let group = match split.group(class) {
                ftcal_eval::Group::FineTuning => "S",
                ftcal_eval::Group::Absent => "U",
                ftcal_eval::Group::Outside => "-",
            };
            // ImageNet-R lives in a 1000-class space: leave out outside classes nobody has samples of.
            if group == "-" && !in_use(class) {
                continue;
            }
            let name = names
                .and_then(|names| names.get(class))
                .map(String::as_str)
                .unwrap_or("");
            let mut row = format!("{class:>6}  {group:<5} {name:<20}");
            for counts in &self.splits {
                let _ = write!(row, " {:>14}", counts.per_class[class]);
            }
            let _ = writeln!(out, "{row}");
        }
        let mut total = format!("{:>6}  {:<5} {:<20}", "total", "", "");
        for counts in &self.splits {
            let _ = write!(total, " {:>14}", counts.per_class.iter().sum::<usize>());
        }
        let _ = writeln!(out, "{total}");
        let _ = writeln!(out);
        if self.problems.is_empty() {
            let _ = writeln!(out, "no problems found");
        } else {
            let _ = writeln!(out, "{} problem(s):", self.problems.len());
            for problem in &self.problems {
                let _ = writeln!(out, "  {problem}");
            }
        }
        out
    }
}

/// `1-3, 7, 9-12`.
fn ranges(classes: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut index = 0;
    while index < classes.len() {
        let start = classes[index];
        let mut end = start;
        while index + 1 < classes.len() && classes[index + 1] == end + 1 {
            index += 1;
            end += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        index += 1;
    }
    parts.join(", ")
}

/// Lists, decodes and counts every image of `config` on `threads` threads; `progress(done, total)` is
/// called as images are decoded. `key` is the config table (`data`).
pub fn check(
    config: &DataConfig,
    key: &str,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<CheckReport, DataError> {
    let data = config.open(key)?;
    let mut problems: Vec<Problem> = Vec::new();
    let mut sets: Vec<(&str, &ImageSet)> = Vec::new();
    if let Some(source) = &data.source {
        problems.extend(source.problems.iter().cloned());
        sets.push(("source train", &source.train));
        sets.push(("source test", &source.test));
    }
    problems.extend(data.target.problems.iter().cloned());
    sets.push(("target train", &data.target.train));
    sets.push(("target test", &data.target.test));

    let total: usize = sets.iter().map(|(_, set)| set.len()).sum();
    let done = AtomicUsize::new(0);
    let mut splits = Vec::new();
    for (name, set) in &sets {
        let unreadable = decode_all(set, threads, &done, total, progress);
        let mut per_class = set.class_counts();
        for (index, problem) in &unreadable {
            per_class[set.samples[*index].label] -= 1;
            problems.push(problem.clone());
        }
        splits.push(SplitCounts {
            name: name.to_string(),
            readable: set.len() - unreadable.len(),
            per_class,
        });
    }
    problems.extend(empty_classes(&data.split, &splits, data.source.is_some()));
    Ok(CheckReport {
        data,
        splits,
        problems,
    })
}

/// Decodes every image of `set`; returns the unreadable ones (sample index, problem), in sample order.
fn decode_all(
    set: &ImageSet,
    threads: usize,
    done: &AtomicUsize,
    total: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Vec<(usize, Problem)> {
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= set.len() {
                        break;
                    }
                    if let Err(error) = set.load(index) {
                        let sample = &set.samples[index];
                        let path = match &sample.origin {
                            ImageOrigin::File(path) => path.clone(),
                            ImageOrigin::Memory(_) => set.name.clone().into(),
                        };
                        let message = match error {
                            DataError::Image { message, .. } => message,
                            other => other.to_string(),
                        };
                        let mut problem = Problem::new(ProblemKind::CorruptImage, &path, None, message);
                        if let Some(at) = &sample.listed_at {
                            problem.message = format!(
                                "{} (listed at {}:{})",
                                problem.message,
                                at.list.display(),
                                at.line
                            );
                        }
                        found
                            .lock()
                            .expect("no panics while holding the lock")
                            .push((index, problem));
                    }
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if finished.is_multiple_of(64) || finished == total {
                        progress(finished, total);
                    }
                }
            });
        }
    });
    let mut found = found.into_inner().expect("threads joined");
    found.sort_by_key(|(index, _)| *index);
    found
}

/// Classes of S without training or test images, classes of U without test images, and (with a source)
/// classes of S ∪ U without source training images.
fn empty_classes(split: &ClassSplit, splits: &[SplitCounts], has_source: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    let find = |name: &str| splits.iter().find(|counts| counts.name == name);
    let mut require = |counts: Option<&SplitCounts>, classes: &[usize], why: &str| {
        let Some(counts) = counts else { return };
        for &class in classes {
            if counts.per_class[class] == 0 {
                problems.push(Problem::new(
                    ProblemKind::EmptyClass,
                    counts.name.as_ref(),
                    None,
                    format!("class {class} has no readable image; {why}"),
                ));
            }
        }
    };
    require(
        find("target train"),
        split.fine_tuning(),
        "fine-tuning class S needs training images",
    );
    require(
        find("target test"),
        split.fine_tuning(),
        "every class needs test images",
    );
    require(
        find("target test"),
        split.absent(),
        "every class needs test images",
    );
    if has_source {
        let all: Vec<usize> = split
            .fine_tuning()
            .iter()
            .chain(split.absent())
            .copied()
            .collect();
        require(
            find("source train"),
            &all,
            "the source model is trained on every class",
        );
    }
    problems
}
