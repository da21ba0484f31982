//! Leave-out local SGD (LOLSGD), HT-style: each round, M copies start from the current weights, each
//! takes K steps on batches from which a seeded random subset of S is left out, and the copies' weights
//! are averaged into the next weights. HT's abstract names LOLSGD; its recipe is not public, so this is
//! docs/science.md §Holistic Transfer's reading, every choice a key.
//!
//! Rounds are laid out inside each epoch, so that an epoch ends on averaged weights (what is evaluated and
//! checkpointed at its end); the epoch's last round shares the iterations left among at most M copies.
//! Copies run one after another on one device: besides the model being trained, a round keeps the
//! weights (and optimizer state) it started from and the running sum of the finished copies, whatever M.
//! A copy's left-out classes are drawn from (seed, epoch, round, copy), so a resumed run draws the same.

use std::collections::BTreeMap;

use ftcal_models::TensorMap;
use ftcal_models::weights::HostData;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// What becomes of the optimizer state (momentum, Adam's moments) across copies and rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalOptimizerState {
    /// Each copy starts from the round's state; the next round starts from the copies' average, as the
    /// weights do (with one copy and nothing left out, LOLSGD is then plain fine-tuning).
    #[default]
    Averaged,
    /// Each copy starts with an empty state (no momentum), and the average keeps none.
    Reset,
}

/// `[fine_tuning.lolsgd]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LolsgdSettings {
    /// Whether LOLSGD runs (default true once the table is written; `method = "holistic_transfer"`
    /// enables it without one).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Local copies per round, M (suggested 4).
    #[serde(default = "default_copies")]
    pub copies: usize,
    /// SGD steps each copy takes, K (suggested 50). One step is one iteration of the schedule.
    #[serde(default = "default_local_steps")]
    pub local_steps: usize,
    /// The fraction of S each copy leaves out, ρ (suggested 0.5): a copy keeps round((1 − ρ)·|S|) classes.
    #[serde(default = "default_leave_out")]
    pub leave_out: f64,
    /// The number of classes of S each copy leaves out, instead of `leave_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leave_out_classes: Option<usize>,
    /// `"averaged"` (default) or `"reset"`.
    #[serde(default)]
    pub optimizer_state: LocalOptimizerState,
}

fn yes() -> bool {
    true
}
fn default_copies() -> usize {
    4
}
fn default_local_steps() -> usize {
    50
}
fn default_leave_out() -> f64 {
    0.5
}

impl Default for LolsgdSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            copies: default_copies(),
            local_steps: default_local_steps(),
            leave_out: default_leave_out(),
            leave_out_classes: None,
            optimizer_state: LocalOptimizerState::default(),
        }
    }
}

impl LolsgdSettings {
    /// Checks the values; errors name `key.<field>`.
    pub fn validate(&self, key: &str) -> Result<(), TrainError> {
        if self.copies == 0 {
            return Err(TrainError::config(format!("{key}.copies"), "must be at least 1"));
        }
        if self.local_steps == 0 {
            return Err(TrainError::config(
                format!("{key}.local_steps"),
                "must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&self.leave_out) {
            return Err(TrainError::config(
                format!("{key}.leave_out"),
                format!(
                    "must be a fraction of S in [0, 1), not {}; use leave_out_classes for a count",
                    self.leave_out
                ),
            ));
        }
        Ok(())
    }

    /// How many of `classes` fine-tuning classes a copy leaves out: never all of them. With a fraction, a
    /// copy keeps round((1 − ρ)·|S|) classes (halves rounded up).
    pub fn left_out_count(&self, classes: usize) -> usize {
        let count = self.leave_out_classes.unwrap_or_else(|| {
            classes.saturating_sub(((1.0 - self.leave_out) * classes as f64).round() as usize)
        });
        count.min(classes.saturating_sub(1))
    }
}

/// The classes a copy trains on: `classes` less `left_out` of them, drawn from (seed, epoch, round, copy);
/// sorted.
pub fn kept_classes(
    classes: &[usize],
    left_out: usize,
    seed: u64,
    [epoch, round, copy]: [usize; 3],
) -> Vec<usize> {
    // "lolsgd" in ASCII: a stream of its own, apart from the loader's and the PCV halves' of the same seed.
    let stream = seed ^ 0x6c6f_6c73_6764;
    let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(mix(stream, epoch), round), copy));
    let mut shuffled = classes.to_vec();
    shuffled.shuffle(&mut rng);
    let mut kept = shuffled.split_off(left_out.min(classes.len().saturating_sub(1)));
    kept.sort_unstable();
    kept
}

/// splitmix64 of `state + value`: distinct seeds for neighbouring (epoch, round, copy).
fn mix(state: u64, value: usize) -> u64 {
    let mut z = state.wrapping_add((value as u64).wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where an iteration of an epoch falls in LOLSGD's rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The round within the epoch.
    pub round: usize,
    /// The copy within the round.
    pub copy: usize,
    /// The step within the copy.
    pub step: usize,
    /// The copy's steps.
    pub copy_steps: usize,
    /// The round's copies.
    pub copies: usize,
}

impl Position {
    /// The round's first iteration.
    pub fn starts_round(&self) -> bool {
        self.copy == 0 && self.step == 0
    }

    /// The copy's last iteration.
    pub fn ends_copy(&self) -> bool {
        self.step + 1 == self.copy_steps
    }

    /// The round's last iteration.
    pub fn ends_round(&self) -> bool {
        self.ends_copy() && self.copy + 1 == self.copies
    }
}

/// The rounds of an epoch of `iterations`: full rounds of M copies × K steps, then one round sharing what
/// is left among min(M, left) copies, the first ones a step longer when it does not divide.
pub fn position(settings: &LolsgdSettings, iterations: usize, index: usize) -> Position {
    let (copies, steps) = (settings.copies, settings.local_steps);
    let full_rounds = iterations / (copies * steps);
    let round = index / (copies * steps);
    if round < full_rounds {
        let offset = index % (copies * steps);
        return Position {
            round,
            copy: offset / steps,
            step: offset % steps,
            copy_steps: steps,
            copies,
        };
    }
    let left = iterations - full_rounds * copies * steps;
    let last_copies = copies.min(left);
    let (base, longer) = (left / last_copies, left % last_copies);
    let mut offset = index - full_rounds * copies * steps;
    for copy in 0..last_copies {
        let copy_steps = base + usize::from(copy < longer);
        if offset < copy_steps {
            return Position {
                round,
                copy,
                step: offset,
                copy_steps,
                copies: last_copies,
            };
        }
        offset -= copy_steps;
    }
    unreachable!("iteration {index} is past the epoch's {iterations}")
}

/// Keys of the optimizer state in a snapshot; the model's weights are under `model.`.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";
/// Keys of the model's weights in a snapshot.
pub const MODEL_PREFIX: &str = "model.";

/// A round in progress: the weights and optimizer state it started from and the sum of its finished
/// copies (both as snapshots: the model's tensors under `model.`, the optimizer's under `optimizer.`).
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// The snapshot each copy starts from.
    pub start: TensorMap,
    /// The sum of the finished copies' snapshots, in copy order (f32, as a checkpoint keeps it).
    pub sum: Option<TensorMap>,
    /// How many copies `sum` holds.
    pub copies_summed: usize,
}

/// LOLSGD during a stage: the round in progress, driven by the trainer around each step.
#[derive(Debug, Clone)]
pub struct LocalSgd {
    settings: LolsgdSettings,
    classes: Vec<usize>,
    seed: u64,
    round: Option<Round>,
}

impl LocalSgd {
    /// LOLSGD over the stage's fine-tuning `classes`, seeded by the stage's seed.
    pub fn new(settings: &LolsgdSettings, classes: &[usize], seed: u64) -> Self {
        Self {
            settings: settings.clone(),
            classes: classes.to_vec(),
            seed,
            round: None,
        }
    }

    /// Where iteration `index` of an epoch of `iterations` falls.
    pub fn position(&self, iterations: usize, index: usize) -> Position {
        position(&self.settings, iterations, index)
    }

    /// The classes the copy at `at` of `epoch` trains on.
    pub fn kept_classes(&self, epoch: usize, at: Position) -> Vec<usize> {
        let left_out = self.settings.left_out_count(self.classes.len());
        kept_classes(&self.classes, left_out, self.seed, [epoch, at.round, at.copy])
    }

    /// Before the step at `at`: a round's first step records where it starts (`snapshot`); a later copy's
    /// first step returns the snapshot the model and optimizer must be reset to.
    pub fn before_step(&mut self, at: Position, snapshot: impl FnOnce() -> TensorMap) -> Option<TensorMap> {
        if at.starts_round() {
            self.round = Some(Round {
                start: self.kept(snapshot()),
                sum: None,
                copies_summed: 0,
            });
            return None;
        }
        let round = self.round.as_ref().expect("a round in progress");
        (at.step == 0).then(|| round.start.clone())
    }

    /// After the step at `at`: a copy's last step adds its `snapshot` to the round's sum; the round's last
    /// returns the average the model and optimizer continue from.
    pub fn after_step(&mut self, at: Position, snapshot: impl FnOnce() -> TensorMap) -> Option<TensorMap> {
        if !at.ends_copy() {
            return None;
        }
        let copy = self.kept(snapshot());
        let round = self.round.as_mut().expect("a round in progress");
        match &mut round.sum {
            None => round.sum = Some(copy),
            Some(sum) => add_into(sum, &copy),
        }
        round.copies_summed += 1;
        if !at.ends_round() {
            return None;
        }
        let round = self.round.take().expect("a round in progress");
        Some(mean(round.sum.expect("a copy was summed"), round.copies_summed))
    }

    /// The round in progress (between rounds: none), for a checkpoint.
    pub fn round(&self) -> Option<&Round> {
        self.round.as_ref()
    }

    /// Continues the round a checkpoint saved.
    pub fn resume(&mut self, round: Round) {
        self.round = Some(round);
    }

    /// What a snapshot keeps: the optimizer state only when it is averaged.
    fn kept(&self, mut snapshot: TensorMap) -> TensorMap {
        if self.settings.optimizer_state == LocalOptimizerState::Reset {
            snapshot
                .tensors
                .retain(|key, _| !key.starts_with(OPTIMIZER_PREFIX));
        }
        snapshot
    }
}

/// Joins the model's tensors and the optimizer's state into one snapshot.
pub fn snapshot(model: TensorMap, optimizer: TensorMap) -> TensorMap {
    let mut tensors = BTreeMap::new();
    for (prefix, map) in [(MODEL_PREFIX, model), (OPTIMIZER_PREFIX, optimizer)] {
        for (key, tensor) in map.tensors {
            tensors.insert(format!("{prefix}{key}"), tensor);
        }
    }
    TensorMap {
        tensors,
        origin: Default::default(),
    }
}

/// Splits a snapshot into the model's tensors and the optimizer's state.
pub fn split(snapshot: &TensorMap) -> (TensorMap, TensorMap) {
    let part = |prefix: &str| TensorMap {
        tensors: (snapshot.tensors.iter())
            .filter_map(|(key, tensor)| Some((key.strip_prefix(prefix)?.to_string(), tensor.clone())))
            .collect(),
        origin: snapshot.origin.clone(),
    };
    (part(MODEL_PREFIX), part(OPTIMIZER_PREFIX))
}

/// `sum += other`, key by key, in f32 (a checkpoint holds the sum exactly as the next copy adds to it).
fn add_into(sum: &mut TensorMap, other: &TensorMap) {
    for (key, tensor) in &mut sum.tensors {
        match (&mut tensor.data, &other.tensors[key].data) {
            (HostData::Float(total), HostData::Float(values)) => {
                total
                    .iter_mut()
                    .zip(values)
                    .for_each(|(sum, value)| *sum += value);
            }
            (HostData::Int(total), HostData::Int(values)) => {
                total
                    .iter_mut()
                    .zip(values)
                    .for_each(|(sum, value)| *sum += value);
            }
            _ => panic!("`{key}` changed its type between copies"),
        }
    }
}

/// `sum / count`; integer counters are rounded down, and the optimizer's step counts (copies of one
/// round may take different numbers of steps) to the nearest whole step.
fn mean(mut sum: TensorMap, count: usize) -> TensorMap {
    if count == 1 {
        return sum;
    }
    for (key, tensor) in &mut sum.tensors {
        let step_count = key.starts_with(OPTIMIZER_PREFIX) && key.ends_with(".step");
        tensor.data = match std::mem::replace(&mut tensor.data, HostData::Int(Vec::new())) {
            HostData::Float(values) if step_count => HostData::Float(
                values
                    .into_iter()
                    .map(|value| (value / count as f32).round())
                    .collect(),
            ),
            HostData::Float(values) => {
                HostData::Float(values.into_iter().map(|value| value / count as f32).collect())
            }
            HostData::Int(values) => {
                HostData::Int(values.into_iter().map(|value| value / count as i64).collect())
            }
        };
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftcal_models::weights::HostTensor;

    fn settings(copies: usize, local_steps: usize) -> LolsgdSettings {
        LolsgdSettings {
            copies,
            local_steps,
            ..LolsgdSettings::default()
        }
    }

    #[test]
    fn rounds_cover_the_epoch_and_share_what_is_left() {
        let settings = settings(3, 4);
        // 29 iterations: two full rounds of 3 × 4, then 5 left for 3 copies: 2, 2, 1 steps.
        let positions: Vec<Position> = (0..29).map(|i| position(&settings, 29, i)).collect();
        assert_eq!(positions.iter().filter(|p| p.starts_round()).count(), 3);
        assert_eq!(positions.iter().filter(|p| p.ends_round()).count(), 3);
        assert!(positions[28].ends_round(), "the epoch ends a round");
        let last: Vec<(usize, usize)> = positions[24..].iter().map(|p| (p.copy, p.step)).collect();
        assert_eq!(last, [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]);
        // Fewer iterations left than copies: one step each for as many copies as there are steps.
        let two = position(&settings, 14, 13);
        assert_eq!((two.round, two.copy, two.copies, two.copy_steps), (1, 1, 2, 1));
        assert!(two.ends_round());
    }

    #[test]
    fn leave_out_subsets_are_seeded_and_never_all_of_s() {
        let classes = [0, 1, 2, 3, 4];
        let first = kept_classes(&classes, 2, 7, [0, 1, 2]);
        assert_eq!(first, kept_classes(&classes, 2, 7, [0, 1, 2]), "seeded");
        assert_eq!(first.len(), 3);
        let draws: std::collections::BTreeSet<Vec<usize>> = (0..20)
            .map(|copy| kept_classes(&classes, 2, 7, [0, 0, copy]))
            .collect();
        assert!(draws.len() > 3, "copies draw different subsets: {draws:?}");
        // Asking to leave out everything keeps one class.
        assert_eq!(kept_classes(&classes, 5, 7, [0, 0, 0]).len(), 1);
        let all = LolsgdSettings {
            leave_out_classes: Some(9),
            ..LolsgdSettings::default()
        };
        assert_eq!(all.left_out_count(5), 4);
        assert_eq!(
            LolsgdSettings::default().left_out_count(5),
            2,
            "round(0.5 · 5) = 2 (half to even)"
        );
        assert_eq!(LolsgdSettings::default().left_out_count(1), 0);
    }

    #[test]
    fn a_round_averages_its_copies_and_resets_each_copy_to_its_start() {
        let map = |values: Vec<f32>| TensorMap {
            tensors: [("model.w".to_string(), HostTensor::float(vec![2], values))].into(),
            origin: Default::default(),
        };
        let settings = settings(2, 1);
        let mut lolsgd = LocalSgd::new(&settings, &[0, 1], 0);
        let first = lolsgd.position(2, 0);
        assert!(lolsgd.before_step(first, || map(vec![0.0, 0.0])).is_none());
        assert!(lolsgd.after_step(first, || map(vec![1.0, 2.0])).is_none());
        let second = lolsgd.position(2, 1);
        let reset = lolsgd.before_step(second, || unreachable!()).unwrap();
        assert_eq!(
            reset.tensors["model.w"],
            HostTensor::float(vec![2], vec![0.0, 0.0])
        );
        let average = lolsgd.after_step(second, || map(vec![3.0, 6.0])).unwrap();
        assert_eq!(
            average.tensors["model.w"],
            HostTensor::float(vec![2], vec![2.0, 4.0])
        );
        assert!(lolsgd.round().is_none());
    }
}
