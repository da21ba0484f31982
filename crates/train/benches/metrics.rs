//! What the metrics of one evaluated epoch cost at ImageNet-Sketch's size (40,889 training and 10,000 test
//! images, 1000 logits, 2048 features; random values), at epoch 1 and at epoch 50 of a run: the epoch's
//! row of metrics.csv, computed from the outputs in memory and recorded, and, for comparison, `ftcal
//! eval`'s recomputation of every row from the saved files (what every evaluated epoch cost before each
//! recorded its own row).
//!
//!   cargo bench -p ftcal-train --bench metrics [-- --epochs 50]
//!
//! Writes the synthetic outputs to a temporary run directory (1.2 GB; later epochs are hard links to the
//! first, so the disk holds one copy and the page cache serves the reads). Under `cargo test` (no
//! `--bench` argument) it only checks that it works: 1/100 of the images, 2 epochs.

use std::time::Instant;

use ftcal_eval::{Matrix, Scores, write_scores};
use ftcal_train::run_dir::{RunDir, SavedSplit};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TRAIN: usize = 40_889;
const TEST: usize = 10_000;
const CLASSES: usize = 1000;
const FEATURES: usize = 2048;

fn scores(rows: usize, seed: u64) -> Scores {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let logits: Vec<f32> = (0..rows * CLASSES)
        .map(|_| rng.random::<f32>() * 8.0 - 4.0)
        .collect();
    let features: Vec<f32> = (0..rows * FEATURES)
        .map(|_| rng.random::<f32>().max(0.3) - 0.3)
        .collect();
    let labels: Vec<i64> = (0..rows).map(|_| rng.random_range(0..CLASSES as i64)).collect();
    Scores::new(
        "synthetic",
        Matrix::new(rows, CLASSES, logits).unwrap(),
        &labels,
        Some(Matrix::new(rows, FEATURES, features).unwrap()),
    )
    .unwrap()
}

fn link_epoch(dir: &RunDir, epoch: i64) {
    for split in ["train", "test"] {
        let target = dir.output(split, epoch);
        if !target.exists() {
            std::fs::hard_link(dir.output(split, -1), target).unwrap();
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this main without it.
    let benching = std::env::args().any(|arg| arg == "--bench");
    let (epochs, scale) = if benching {
        let epochs = std::env::args()
            .skip_while(|arg| arg != "--epochs")
            .nth(1)
            .map_or(50, |n| n.parse().expect("--epochs N"));
        (epochs, 1)
    } else {
        eprintln!("a check that the bench runs (cargo bench -p ftcal-train --bench metrics measures)");
        (2, 100)
    };
    let temp = tempfile::tempdir().unwrap();
    let dir = RunDir::new(temp.path());
    std::fs::create_dir_all(temp.path().join("outputs/train")).unwrap();
    std::fs::create_dir_all(temp.path().join("outputs/test")).unwrap();
    let split = SavedSplit {
        num_classes: CLASSES,
        fine_tuning: (0..CLASSES / 2).collect(),
        absent: (CLASSES / 2..CLASSES).collect(),
        outside_compete: true,
    };
    std::fs::write(dir.classes(), serde_json::to_vec(&split).unwrap()).unwrap();
    let made = Instant::now();
    let (train, test) = (scores(TRAIN / scale, 1), scores(TEST / scale, 2));
    write_scores(&dir.output("train", -1), &train).unwrap();
    write_scores(&dir.output("test", -1), &test).unwrap();
    eprintln!(
        "synthetic outputs made and written in {:.1} s",
        made.elapsed().as_secs_f64()
    );

    let split_classes = split.split().unwrap();
    for epoch in 0..epochs {
        link_epoch(&dir, epoch);
        let started = Instant::now();
        let row =
            ftcal_train::report::epoch_metrics(epoch, &test, Some(&train), &split_classes, &[]).unwrap();
        ftcal_train::report::record_epoch(&dir, row).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        if epoch == 0 || epoch == epochs - 1 {
            println!(
                "the metrics of epoch {} (1-based), recorded beside {} rows: {seconds:.2} s",
                epoch + 1,
                epoch + 1
            );
        }
    }
    // The pre-trained model's row too, as a run has it, then every row again from the files.
    let row = ftcal_train::report::epoch_metrics(-1, &test, Some(&train), &split_classes, &[]).unwrap();
    ftcal_train::report::record_epoch(&dir, row).unwrap();
    let started = Instant::now();
    let recomputed = ftcal_train::report::recompute_rows(&dir, &split_classes, &[]).unwrap();
    println!(
        "every row again from the saved files ({} evaluated epochs; what each evaluated epoch cost before): {:.2} s",
        recomputed.len(),
        started.elapsed().as_secs_f64()
    );
}
