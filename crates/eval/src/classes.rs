//! The partial-class label space: fine-tuning classes S, absent classes U, and the parsing of class lists.

use crate::EvalError;
use crate::scores::Scores;

/// The part of the label space a class belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// S: the classes the target data covers, seen during fine-tuning.
    FineTuning,
    /// U: the classes absent from the fine-tuning data; calibration adds γ to their logits.
    Absent,
    /// A logit column in neither S nor U (e.g. the 800 ImageNet-1k classes outside ImageNet-R's 200).
    Outside,
}

impl Group {
    /// All groups, in the order used to index per-group arrays.
    pub const ALL: [Group; 3] = [Group::FineTuning, Group::Absent, Group::Outside];

    /// The position of this group in [`Group::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A validated split of the C logit columns into S, U and (possibly) classes outside both.
///
/// Y, the candidate set of "overall" predictions, is every logit column by default, as in the reference
/// code (ImageNet-R is evaluated with the argmax over all 1000 logits); [`ClassSplit::exclude_outside`]
/// restricts Y to S ∪ U.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassSplit {
    groups: Vec<Group>,
    fine_tuning: Vec<usize>,
    absent: Vec<usize>,
    outside_compete: bool,
}

impl ClassSplit {
    /// S and U given explicitly; columns in neither are outside classes that still compete in Y.
    ///
    /// U may be empty: a model fine-tuned on every class (the paper's all-classes oracle row), whose
    /// accuracies stand and whose curve, AUSUC and calibrations are undefined.
    ///
    /// Errors when a class is out of `0..num_classes`, listed twice, in both S and U, or when S is empty.
    pub fn new(num_classes: usize, fine_tuning: &[usize], absent: &[usize]) -> Result<Self, EvalError> {
        if fine_tuning.is_empty() {
            return Err(EvalError::ClassSplit(
                "the fine-tuning classes S are empty; at least one class must be fine-tuned on".into(),
            ));
        }
        let mut groups: Vec<Option<Group>> = vec![None; num_classes];
        for (list, group, name) in [
            (fine_tuning, Group::FineTuning, "fine-tuning (S)"),
            (absent, Group::Absent, "absent (U)"),
        ] {
            for &class in list {
                let Some(slot) = groups.get_mut(class) else {
                    return Err(EvalError::ClassSplit(format!(
                        "{name} class {class} is out of range: the logits have {num_classes} classes (0–{})",
                        num_classes.saturating_sub(1)
                    )));
                };
                match slot {
                    Some(previous) if *previous == group => {
                        return Err(EvalError::ClassSplit(format!(
                            "{name} class {class} is listed twice"
                        )));
                    }
                    Some(_) => {
                        return Err(EvalError::ClassSplit(format!(
                            "class {class} is both a fine-tuning class (S) and an absent class (U)"
                        )));
                    }
                    None => *slot = Some(group),
                }
            }
        }
        let groups: Vec<Group> = groups.into_iter().map(|g| g.unwrap_or(Group::Outside)).collect();
        let members = |wanted| (0..num_classes).filter(|&c| groups[c] == wanted).collect();
        Ok(ClassSplit {
            fine_tuning: members(Group::FineTuning),
            absent: members(Group::Absent),
            groups,
            outside_compete: true,
        })
    }

    /// U given; S is every other class (the usual case: S ∪ U = Y).
    pub fn from_absent(num_classes: usize, absent: &[usize]) -> Result<Self, EvalError> {
        if let Some(&class) = absent.iter().find(|&&c| c >= num_classes) {
            return Err(EvalError::ClassSplit(format!(
                "absent (U) class {class} is out of range: the logits have {num_classes} classes (0–{})",
                num_classes.saturating_sub(1)
            )));
        }
        let mut is_absent = vec![false; num_classes];
        for &class in absent {
            is_absent[class] = true;
        }
        let fine_tuning: Vec<usize> = (0..num_classes).filter(|&c| !is_absent[c]).collect();
        if fine_tuning.is_empty() && !absent.is_empty() {
            return Err(EvalError::ClassSplit(format!(
                "the absent list names all {num_classes} classes; at least one fine-tuning class (S) must remain"
            )));
        }
        ClassSplit::new(num_classes, &fine_tuning, absent)
    }

    /// Restricts Y to S ∪ U: outside classes can no longer be predicted (ImageNet-R's 200-class evaluation).
    pub fn exclude_outside(mut self) -> Self {
        self.outside_compete = false;
        self
    }

    /// Number of logit columns C.
    pub fn num_classes(&self) -> usize {
        self.groups.len()
    }

    /// S, sorted.
    pub fn fine_tuning(&self) -> &[usize] {
        &self.fine_tuning
    }

    /// U, sorted.
    pub fn absent(&self) -> &[usize] {
        &self.absent
    }

    /// Number of classes in neither S nor U.
    pub fn num_outside(&self) -> usize {
        self.groups.len() - self.fine_tuning.len() - self.absent.len()
    }

    /// The group of class `class`.
    pub fn group(&self, class: usize) -> Group {
        self.groups[class]
    }

    /// The group of every class, indexed by class.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Whether outside classes are candidates of Y.
    pub fn outside_compete(&self) -> bool {
        self.outside_compete
    }

    /// Errors unless `scores` has one logit column per class of this split.
    pub fn check_columns(&self, scores: &Scores) -> Result<(), EvalError> {
        if scores.num_classes() == self.num_classes() {
            return Ok(());
        }
        Err(EvalError::Incompatible {
            message: format!(
                "{}: logits have {} classes but the class split has {}",
                scores.origin(),
                scores.num_classes(),
                self.num_classes()
            ),
        })
    }

    /// The groups whose classes are candidates of the overall prediction (Y).
    pub fn overall_candidates(&self) -> &'static [Group] {
        if self.outside_compete {
            &[Group::FineTuning, Group::Absent, Group::Outside]
        } else {
            &[Group::FineTuning, Group::Absent]
        }
    }

    /// The candidate groups that γ does not shift: S, and the outside classes when they compete.
    pub fn unshifted_candidates(&self) -> &'static [Group] {
        if self.outside_compete {
            &[Group::FineTuning, Group::Outside]
        } else {
            &[Group::FineTuning]
        }
    }
}

/// Parses a class list such as `5,6,7-9` (ranges inclusive, spaces ignored) into class indices, in order.
///
/// `origin` names the argument in errors.
pub fn parse_class_list(text: &str, origin: &str) -> Result<Vec<usize>, EvalError> {
    let mut classes = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            if text.trim().is_empty() {
                break;
            }
            return Err(class_list_error(origin, format!("empty entry in `{text}`")));
        }
        classes.extend(parse_class_item(item).map_err(|message| class_list_error(origin, message))?);
    }
    if classes.is_empty() {
        return Err(class_list_error(origin, "the class list is empty".into()));
    }
    Ok(classes)
}

/// Parses a class list file: one class or range a line (`7` or `10-19`); blank lines and `#` comments are skipped.
///
/// `path` names the file in errors, with the line number.
pub fn parse_class_list_lines(text: &str, path: &str) -> Result<Vec<usize>, EvalError> {
    let mut classes = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let items = parse_class_item(line)
            .map_err(|message| class_list_error(&format!("{path}:{}", number + 1), message))?;
        classes.extend(items);
    }
    if classes.is_empty() {
        return Err(class_list_error(
            path,
            "the class list file names no class".into(),
        ));
    }
    Ok(classes)
}

fn parse_class_item(item: &str) -> Result<std::ops::RangeInclusive<usize>, String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{}` is not a class index (a non-negative integer)", s.trim()))
    };
    match item.split_once('-') {
        Some((first, last)) => {
            let (first, last) = (parse(first)?, parse(last)?);
            if first > last {
                return Err(format!("range `{item}` is empty (its start is after its end)"));
            }
            Ok(first..=last)
        }
        None => {
            let class = parse(item)?;
            Ok(class..=class)
        }
    }
}

fn class_list_error(origin: &str, message: String) -> EvalError {
    EvalError::ClassList {
        origin: origin.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_list_leaves_every_other_class_in_s() {
        let split = ClassSplit::from_absent(6, &[4, 1]).unwrap();
        assert_eq!(split.fine_tuning(), &[0, 2, 3, 5]);
        assert_eq!(split.absent(), &[1, 4]);
        assert_eq!(split.num_outside(), 0);
        assert_eq!(split.group(4), Group::Absent);
    }

    #[test]
    fn explicit_split_leaves_outside_classes() {
        let split = ClassSplit::new(5, &[0, 1], &[3]).unwrap();
        assert_eq!(split.num_outside(), 2);
        assert_eq!(split.group(2), Group::Outside);
        assert_eq!(split.overall_candidates().len(), 3);
        assert_eq!(
            split.exclude_outside().overall_candidates(),
            &[Group::FineTuning, Group::Absent]
        );
    }

    #[test]
    fn an_empty_u_is_a_split_of_every_class_into_s() {
        let split = ClassSplit::from_absent(4, &[]).unwrap();
        assert_eq!(split.fine_tuning(), &[0, 1, 2, 3]);
        assert!(split.absent().is_empty());
        assert_eq!(split.num_outside(), 0);
    }

    #[test]
    fn invalid_splits_are_refused_with_the_reason() {
        let cases: [(Result<ClassSplit, EvalError>, &str); 5] = [
            (ClassSplit::from_absent(4, &[0, 1, 2, 3]), "names all 4 classes"),
            (
                ClassSplit::from_absent(4, &[4]),
                "class 4 is out of range: the logits have 4 classes (0–3)",
            ),
            (ClassSplit::new(4, &[0, 1], &[1]), "class 1 is both"),
            (ClassSplit::new(4, &[0, 0], &[1]), "class 0 is listed twice"),
            (ClassSplit::new(4, &[], &[1]), "fine-tuning classes S are empty"),
        ];
        for (result, expected) in cases {
            let message = result.unwrap_err().to_string();
            assert!(
                message.contains(expected),
                "{message:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn class_lists_accept_single_classes_and_inclusive_ranges() {
        assert_eq!(
            parse_class_list("5,6,7-9", "--absent").unwrap(),
            vec![5, 6, 7, 8, 9]
        );
        assert_eq!(
            parse_class_list(" 3 , 1 - 2 ", "--absent").unwrap(),
            vec![3, 1, 2]
        );
    }

    #[test]
    fn bad_class_lists_name_the_entry() {
        for (text, expected) in [
            ("", "the class list is empty"),
            ("1,,2", "empty entry"),
            ("1,x", "`x` is not a class index"),
            ("-3", "`` is not a class index"),
            ("5-2", "range `5-2` is empty"),
        ] {
            let message = parse_class_list(text, "--absent").unwrap_err().to_string();
            assert!(message.starts_with("--absent: "), "{message}");
            assert!(
                message.contains(expected),
                "{message:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn class_list_files_skip_comments_and_name_the_bad_line() {
        let text = "# absent classes\n5\n\n7-8  # a range\n";
        assert_eq!(parse_class_list_lines(text, "u.txt").unwrap(), vec![5, 7, 8]);
        let message = parse_class_list_lines("1\n2\ntwo\n", "u.txt")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("u.txt:3: `two` is not a class index"),
            "{message}"
        );
        let message = parse_class_list_lines("# nothing\n", "u.txt")
            .unwrap_err()
            .to_string();
        assert!(message.contains("names no class"), "{message}");
    }
}
