//! What a run is, as a report's rows see it: the `method` tag of a plan's cell, or what a run directory's
//! config says.

use std::fmt;

/// The kind of run a table's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// Full fine-tuning on S (`fine_tuning.method = "full"`): the Pre-trained, Fine-tuning and + γ rows.
    FineTuning,
    /// Holistic Transfer, HT-style (ftcal) (`method = "holistic_transfer"`).
    HolisticTransfer,
    /// Fine-tuned on every class (U empty): Table 1's Oracle row.
    AllClasses,
    /// The frozen classifier (`method = "frozen_classifier"`).
    FrozenClassifier,
    /// Linear probing (`method = "linear_probe"`).
    LinearProbe,
    /// Full fine-tuning with the cosine classifier (`model.head = "cosine"`).
    CosineClassifier,
}

impl Method {
    /// Every method, in the order of their rows.
    pub const ALL: [Method; 6] = [
        Method::FineTuning,
        Method::HolisticTransfer,
        Method::AllClasses,
        Method::FrozenClassifier,
        Method::LinearProbe,
        Method::CosineClassifier,
    ];

    /// The tag a plan's cell carries (`tags = { method = "…" }`).
    pub fn tag(self) -> &'static str {
        match self {
            Method::FineTuning => "fine-tuning",
            Method::HolisticTransfer => "holistic-transfer",
            Method::AllClasses => "all-classes",
            Method::FrozenClassifier => "frozen-classifier",
            Method::LinearProbe => "linear-probe",
            Method::CosineClassifier => "cosine-classifier",
        }
    }

    /// The method named by `tag`; an unknown tag is an error naming the known ones and the nearest.
    pub fn from_tag(tag: &str) -> Result<Self, String> {
        if let Some(method) = Self::ALL.iter().find(|m| m.tag() == tag) {
            return Ok(*method);
        }
        let tags: Vec<&str> = Self::ALL.iter().map(|m| m.tag()).collect();
        let nearest = (tags.iter())
            .map(|known| (strsim::levenshtein(known, tag), *known))
            .min()
            .filter(|(distance, _)| *distance <= 3)
            .map(|(_, known)| format!(" (did you mean `{known}`?)"))
            .unwrap_or_default();
        Err(format!(
            "method tag `{tag}` is not one the tables know{nearest}; the tags: {}",
            tags.join(", ")
        ))
    }

    /// What a run is from its resolved config (as a TOML table) and whether its U is empty.
    pub fn of_config(config: &toml::Table, absent_is_empty: bool) -> Self {
        if absent_is_empty {
            return Method::AllClasses;
        }
        let lookup = |table: &str, key: &str| {
            (config.get(table))
                .and_then(|value| value.get(key))
                .and_then(|value| value.as_str())
                .map(str::to_string)
        };
        match lookup("fine_tuning", "method").as_deref() {
            Some("holistic_transfer") => Method::HolisticTransfer,
            Some("frozen_classifier") => Method::FrozenClassifier,
            Some("linear_probe") => Method::LinearProbe,
            _ if lookup("model", "head").as_deref() == Some("cosine") => Method::CosineClassifier,
            _ => Method::FineTuning,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_a_typo_is_named() {
        for method in Method::ALL {
            assert_eq!(Method::from_tag(method.tag()), Ok(method));
        }
        let error = Method::from_tag("fine-tunning").unwrap_err();
        assert!(error.contains("did you mean `fine-tuning`"), "{error}");
    }

    #[test]
    fn a_config_says_what_its_run_is() {
        let config = |text: &str| toml::from_str::<toml::Table>(text).unwrap();
        let full = config("[fine_tuning]\nmethod = \"full\"\n");
        assert_eq!(Method::of_config(&full, false), Method::FineTuning);
        assert_eq!(Method::of_config(&full, true), Method::AllClasses);
        let ht = config("[fine_tuning]\nmethod = \"holistic_transfer\"\n");
        assert_eq!(Method::of_config(&ht, false), Method::HolisticTransfer);
        let cosine = config("[model]\nhead = \"cosine\"\n[fine_tuning]\nmethod = \"full\"\n");
        assert_eq!(Method::of_config(&cosine, false), Method::CosineClassifier);
    }
}
