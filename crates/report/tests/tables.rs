//! `ftcal report`'s tables from hand-made run directories: every figure is written into a `summary.json`
//! (or saved outputs) by the test, and read back cell by cell.

use std::path::{Path, PathBuf};

use ftcal_eval::{Matrix, Scores, write_scores};
use ftcal_report::{ReportTable, Runs, TableCell, write_report};
use ftcal_sweep::Sweep;
use ftcal_train::RunDir;
use ftcal_train::run_dir::SavedSplit;

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/quickstart.toml")
}

/// A plan over two benchmarks, four methods and three seeds, writing into `out`.
fn plan(dir: &Path) -> Sweep {
    let path = dir.join("plan.toml");
    let base = quickstart().display().to_string();
    std::fs::write(
        &path,
        format!(
            r#"name = "plan"
output_dir = "{out}"
[[cells]]
base = "{base}"
tags = {{ benchmark = "A→B" }}
[[cells]]
base = "{base}"
tags = {{ benchmark = "C→D" }}
"data.classes.fine_tuning" = [5, 6, 7, 8, 9]
[grid]
"tags.method" = ["fine-tuning", "holistic-transfer", "all-classes", "frozen-classifier"]
seed = [0, 1, 2]
[bundles."tags.method"]
holistic-transfer = {{ "fine_tuning.method" = "holistic_transfer" }}
all-classes = {{ "data.classes" = {{ absent = [] }} }}
frozen-classifier = {{ "fine_tuning.method" = "frozen_classifier" }}
"#,
            out = dir.join("runs").display()
        ),
    )
    .unwrap();
    Sweep::load(&path, &[]).unwrap()
}

fn cell_dir(sweep: &Sweep, benchmark: &str, method: &str, seed: u64) -> PathBuf {
    let cell = (sweep.cells.iter())
        .find(|c| {
            c.tag("benchmark").as_deref() == Some(benchmark)
                && c.tag("method").as_deref() == Some(method)
                && c.config.seed == seed
        })
        .unwrap();
    std::fs::create_dir_all(&cell.dir).unwrap();
    // A run directory holds its config from its start.
    std::fs::write(
        cell.dir.join("config.toml"),
        ftcal_train::run_dir::config_text(&cell.config),
    )
    .unwrap();
    cell.dir.clone()
}

/// A completed run's summary.json: the fine-tuned model's Y/Y, S/Y, U/Y and AUSUC, the pre-trained
/// model's (50, 50, 50), ALG at Y/Y + 10 and the oracle at Y/Y + 20.
fn completed(dir: &Path, y_y: f64, s_y: f64, u_y: f64, ausuc: f64) {
    let acc = |y: f64, s: f64, u: f64| serde_json::json!({"Y/Y": y, "S/Y": s, "U/Y": u});
    let summary = serde_json::json!({
        "status": "completed",
        "pretrained": {"acc": acc(50.0, 50.0, 50.0), "acc_top5": acc(90.0, 90.0, 90.0), "ausuc": 0.25,
                       "ncm": acc(70.0, 71.0, 69.0)},
        "finetuned": {"acc": acc(y_y, s_y, u_y), "acc_top5": acc(y_y + 1.0, s_y, u_y + 2.0), "ausuc": ausuc,
                      "ncm": acc(75.0, 80.0, 70.0)},
        "calibrated": {
            "alg": {"gamma": 1.5, "acc": acc(y_y + 10.0, s_y - 5.0, u_y + 25.0), "acc_top5": acc(99.0, 99.0, 99.0)},
            "oracle": {"gamma": 2.5, "acc": acc(y_y + 20.0, s_y - 5.0, u_y + 45.0), "acc_top5": acc(99.5, 99.0, 100.0)}
        }
    });
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap(),
    )
    .unwrap();
}

fn value(table: &ReportTable, row: &str, benchmark: usize, column: usize) -> TableCell {
    let index = table
        .rows
        .iter()
        .position(|r| r.label == row)
        .unwrap_or_else(|| panic!("no row {row}"));
    table.cell(index, benchmark, column).clone()
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    // Two passes over the values, written out here rather than taken from the code under test.
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, (squares / (values.len() as f64 - 1.0)).sqrt())
}

fn assert_value(cell: &TableCell, mean: f64, std: Option<f64>, seeds: usize) {
    match cell {
        TableCell::Value {
            mean: m,
            std: s,
            seeds: n,
        } => {
            assert!((m - mean).abs() < 1e-9, "mean {m} vs {mean}");
            assert_eq!(*n, seeds);
            match (s, std) {
                (Some(s), Some(std)) => assert!((s - std).abs() < 1e-9, "std {s} vs {std}"),
                (None, None) => {}
                other => panic!("std {other:?}"),
            }
        }
        other => panic!("not a value: {other:?}"),
    }
}

#[test]
fn tables_read_every_cell_from_the_runs_with_seed_means_and_states() {
    let temp = tempfile::tempdir().unwrap();
    let sweep = plan(temp.path());

    // A→B: fine-tuning, three seeds.
    let fine_tuning = [
        (40.0, 98.0, 1.0, 0.70),
        (44.0, 97.0, 3.0, 0.74),
        (45.5, 99.0, 2.5, 0.72),
    ];
    for (seed, (y, s, u, ausuc)) in fine_tuning.iter().enumerate() {
        let dir = cell_dir(&sweep, "A→B", "fine-tuning", seed as u64);
        completed(&dir, *y, *s, *u, *ausuc);
        if seed == 0 {
            std::fs::write(
                dir.join("curve.csv"),
                "gamma,gamma_low,gamma_high,S/Y,U/Y,Y/Y\n0,-inf,1,98,1,40\n3,1,inf,60,70,65\n",
            )
            .unwrap();
        }
        // S and U of the benchmark, which the Oracle row evaluates the all-classes model under.
        let split = SavedSplit {
            num_classes: 4,
            fine_tuning: vec![0, 1],
            absent: vec![2, 3],
            outside_compete: true,
        };
        std::fs::write(
            RunDir::new(&dir).classes(),
            serde_json::to_string(&split).unwrap(),
        )
        .unwrap();
    }
    // A→B: Holistic Transfer, seed 1 diverged.
    completed(
        &cell_dir(&sweep, "A→B", "holistic-transfer", 0),
        60.0,
        90.0,
        30.0,
        0.5,
    );
    std::fs::write(
        cell_dir(&sweep, "A→B", "holistic-transfer", 1).join("summary.json"),
        r#"{"status": "diverged", "diverged": {"stage": "fine_tuning", "epoch": 2, "iteration": 7}}"#,
    )
    .unwrap();
    completed(
        &cell_dir(&sweep, "A→B", "holistic-transfer", 2),
        62.0,
        91.0,
        33.0,
        0.55,
    );
    // A→B: the all-classes run of seed 0 alone completed, with saved outputs on 4 test images of
    // classes 0, 1, 2, 3: right on 0, 2 and 3, so under S = {0, 1}, U = {2, 3}: S/Y 50, U/Y 100.
    let oracle = cell_dir(&sweep, "A→B", "all-classes", 0);
    completed(&oracle, 75.0, 75.0, f64::NAN, 0.0);
    let logits = Matrix::new(
        4,
        4,
        vec![
            9.0f32, 0.0, 0.0, 0.0, //
            0.0, 0.0, 9.0, 0.0, //
            0.0, 0.0, 9.0, 0.0, //
            0.0, 0.0, 0.0, 9.0,
        ],
    )
    .unwrap();
    let scores = Scores::new("test", logits, &[0, 1, 2, 3], None).unwrap();
    let output = RunDir::new(&oracle).output("test", 9);
    std::fs::create_dir_all(output.parent().unwrap()).unwrap();
    write_scores(&output, &scores).unwrap();
    let split = SavedSplit {
        num_classes: 4,
        fine_tuning: vec![0, 1, 2, 3],
        absent: vec![],
        outside_compete: true,
    };
    std::fs::write(
        RunDir::new(&oracle).classes(),
        serde_json::to_string(&split).unwrap(),
    )
    .unwrap();
    // A→B: a frozen-classifier run is running (its directory locked).
    let running = RunDir::new(cell_dir(&sweep, "A→B", "frozen-classifier", 0));
    let _lock = running.lock_existing().unwrap();
    // C→D: one fine-tuning seed failed, the others completed.
    completed(&cell_dir(&sweep, "C→D", "fine-tuning", 0), 50.0, 95.0, 5.0, 0.8);
    completed(&cell_dir(&sweep, "C→D", "fine-tuning", 1), 52.0, 96.0, 8.0, 0.82);
    let failed = (sweep.cells.iter())
        .find(|c| {
            c.tag("benchmark").as_deref() == Some("C→D")
                && c.tag("method").as_deref() == Some("fine-tuning")
                && c.config.seed == 2
        })
        .unwrap();
    sweep.record_failure(failed, "x.png: not an image").unwrap();

    let runs = Runs::from_sweep(&sweep).unwrap();
    assert_eq!(runs.benchmarks, ["A→B", "C→D"]);
    let out = temp.path().join("report");
    let report = write_report(&runs, &out).unwrap();
    let tables = ftcal_report::tables::all_tables(&runs);
    let table = |name: &str| {
        tables
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };

    let table1 = table("table1");
    let labels: Vec<&str> = table1.rows.iter().map(|r| r.label.as_str()).collect();
    // PCV was not run anywhere: its row is left out.
    assert_eq!(
        labels,
        [
            "Pre-trained",
            "Fine-tuning",
            "Holistic Transfer (HT-style, ftcal)",
            "Fine-tuning + γ (ALG)",
            "Oracle (all classes)"
        ]
    );
    for (column, pick) in [(0, 0usize), (1, 1), (2, 2)] {
        let values: Vec<f64> = fine_tuning.iter().map(|t| [t.0, t.1, t.2][pick]).collect();
        let (mean, std) = mean_std(&values);
        assert_value(&value(table1, "Fine-tuning", 0, column), mean, Some(std), 3);
        let alg: Vec<f64> = values.iter().map(|v| v + [10.0, -5.0, 25.0][pick]).collect();
        let (mean, std) = mean_std(&alg);
        assert_value(
            &value(table1, "Fine-tuning + γ (ALG)", 0, column),
            mean,
            Some(std),
            3,
        );
    }
    assert_value(&value(table1, "Pre-trained", 0, 0), 50.0, Some(0.0), 3);
    // One seed diverged: the cell says so, and shows no number.
    assert_eq!(
        value(table1, "Holistic Transfer (HT-style, ftcal)", 0, 0),
        TableCell::State("diverged 1/3".into())
    );
    // The oracle: two seeds never ran; C→D has no Holistic Transfer started at all.
    assert_eq!(
        value(table1, "Oracle (all classes)", 0, 0),
        TableCell::State("pending 2/3".into())
    );
    assert_eq!(
        value(table1, "Holistic Transfer (HT-style, ftcal)", 1, 0),
        TableCell::State("pending 3/3".into())
    );
    assert_eq!(
        value(table1, "Fine-tuning", 1, 2),
        TableCell::State("failed 1/3".into())
    );

    // With every seed of the oracle in place, its S/Y and U/Y are measured under the benchmark's S and U.
    for seed in [1, 2] {
        let dir = cell_dir(&sweep, "A→B", "all-classes", seed);
        std::fs::copy(oracle.join("summary.json"), dir.join("summary.json")).unwrap();
        std::fs::create_dir_all(dir.join("outputs/test")).unwrap();
        std::fs::copy(&output, RunDir::new(&dir).output("test", 9)).unwrap();
    }
    let runs = Runs::from_sweep(&sweep).unwrap();
    let tables = ftcal_report::tables::all_tables(&runs);
    let table1 = tables.iter().find(|t| t.name == "table1").unwrap();
    assert_value(&value(table1, "Oracle (all classes)", 0, 0), 75.0, Some(0.0), 3);
    assert_value(&value(table1, "Oracle (all classes)", 0, 1), 50.0, Some(0.0), 3);
    assert_value(&value(table1, "Oracle (all classes)", 0, 2), 100.0, Some(0.0), 3);
    // The best of a column is bold, references (the oracle) excluded: fine-tuning's S/Y beats ALG's.
    let markdown = ftcal_report::render::markdown(table1);
    let fine_tuning_line = markdown
        .lines()
        .find(|l| l.starts_with("| Fine-tuning |"))
        .unwrap();
    assert!(
        fine_tuning_line.contains(&format!("**{:.2}** ±", (98.0 + 97.0 + 99.0) / 3.0)),
        "{fine_tuning_line}"
    );
    let oracle_line = markdown.lines().find(|l| l.starts_with("| Oracle")).unwrap();
    assert!(!oracle_line.contains("**"), "{oracle_line}");

    // Table 2 and the appendix tables exist; the frozen classifier's cell in C→D was never planned there.
    let table2 = table("table2");
    assert_value(&value(table2, "Pre-trained", 0, 0), 0.25, Some(0.0), 3);
    let methods = table("appendix-methods");
    assert_eq!(
        value(methods, "Frozen classifier", 0, 0),
        TableCell::State("pending 2/3, running 1/3".into())
    );
    let calibration = table("appendix-calibration");
    assert_value(
        &value(calibration, "Fine-tuning + γ (ALG)", 0, 0),
        1.5,
        Some(0.0),
        3,
    );

    // The files: every table three ways, the figures, and report.md.
    for name in [
        "table1",
        "table1-top5",
        "table2",
        "appendix-calibration",
        "appendix-methods",
        "appendix-ncm",
    ] {
        for extension in ["md", "csv", "tex"] {
            assert!(
                out.join(format!("{name}.{extension}")).exists(),
                "{name}.{extension}"
            );
        }
    }
    // Figure 1 of A→B from seed 0's curve; C→D's runs saved no curve: no figure, and the note says why.
    assert!(out.join("figure1-A_B.png").exists());
    assert!(!out.join("figure1-C_D.png").exists());
    assert!(
        (report.skipped_figures.iter()).any(|note| note.contains("C→D") && note.contains("curve.csv")),
        "{:?}",
        report.skipped_figures
    );
    assert!(out.join("ncm.png").exists());
    let csv = std::fs::read_to_string(out.join("table1.csv")).unwrap();
    assert!(
        csv.contains("\"Holistic Transfer (HT-style, ftcal)\",A→B,Y/Y,,,,diverged 1/3\n"),
        "{csv}"
    );
    let (mean, std) = mean_std(&[40.0, 44.0, 45.5]);
    assert!(
        csv.contains(&format!("Fine-tuning,A→B,Y/Y,{mean},{std},3,completed\n")),
        "{csv}"
    );
    assert!(report.markdown.contains("## Table 2: AUSUC"));
}
