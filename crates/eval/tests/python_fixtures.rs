//! Score files written by NumPy and safetensors (`scripts/make_eval_fixtures.py`), read by ftcal-eval, with
//! every metric checked against the script's own naive NumPy computation in `expected.json`.

use std::path::PathBuf;

use ftcal_eval::{
    AccuracyPercent, ClassSplit, ModelEvaluation, Scores, calibrate, read_scores, write_scores,
};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eval")
        .join(name)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

fn split(expected: &Value) -> ClassSplit {
    let absent: Vec<usize> = expected["absent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    ClassSplit::from_absent(expected["num_classes"].as_u64().unwrap() as usize, &absent).unwrap()
}

fn assert_table(name: &str, ours: &AccuracyPercent, numpy: &Value) {
    let ours = [
        ("Y/Y", ours.y_y),
        ("S/Y", ours.s_y),
        ("U/Y", ours.u_y),
        ("S/S", ours.s_s),
        ("U/U", ours.u_u),
    ];
    for (key, value) in ours {
        let theirs = numpy[key].as_f64();
        match (value, theirs) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{name} {key}: ftcal {a}, numpy {b}"),
            _ => assert_eq!(value, theirs, "{name} {key}"),
        }
    }
}

#[test]
fn every_format_python_writes_reads_back_to_the_same_scores() {
    let reference = read_scores(&fixture("test.safetensors")).unwrap();
    assert_eq!(reference.len(), 60);
    assert_eq!(reference.num_classes(), 10);
    assert_eq!(reference.features().map(|f| f.cols()), Some(16));
    // float64 Fortran-order logits and int32 labels in an uncompressed .npz.
    let npz = read_scores(&fixture("test.npz")).unwrap();
    // float16 logits and uint8 labels, no features.
    let half = read_scores(&fixture("test_f16.safetensors")).unwrap();
    for other in [&npz, &half] {
        assert_eq!(other.logits(), reference.logits(), "{}", other.origin());
        assert_eq!(other.labels(), reference.labels(), "{}", other.origin());
    }
    assert_eq!(npz.features(), reference.features());
    assert!(half.features().is_none());
    // The compressed training split.
    let train = read_scores(&fixture("train.npz")).unwrap();
    assert_eq!((train.len(), train.features().map(|f| f.cols())), (80, Some(16)));
}

#[test]
fn metrics_match_numpy() {
    let expected = expected();
    let split = split(&expected);
    let train = read_scores(&fixture("train.npz")).unwrap();
    let test = read_scores(&fixture("test.safetensors")).unwrap();
    let report = calibrate(&train, &test, &split).unwrap();
    let metrics = report.test.metrics();
    assert_table("acc", &metrics.acc, &expected["acc"]);
    assert_table("acc_top5", &metrics.acc_top5, &expected["acc_top5"]);
    assert_table("ncm", metrics.ncm.as_ref().unwrap(), &expected["ncm"]);
    let alg = expected["alg_gamma"].as_f64().unwrap();
    assert!(
        (report.alg.gamma - alg).abs() < 1e-9,
        "ALG: ftcal {}, numpy {alg}",
        report.alg.gamma
    );
    assert_table("alg_acc", &report.alg.acc, &expected["alg_acc"]);
    let ausuc = expected["ausuc"].as_f64().unwrap();
    assert!(
        (metrics.ausuc.unwrap() - ausuc).abs() < 1e-12,
        "AUSUC: ftcal {:?}, numpy {ausuc}",
        metrics.ausuc
    );
    let best = expected["oracle_best_overall"].as_f64().unwrap();
    assert!((report.oracle.acc.y_y.unwrap() - best).abs() < 1e-9);
}

#[test]
fn every_format_gives_the_same_metrics() {
    let expected = expected();
    let split = split(&expected);
    let evaluate =
        |name: &str| ModelEvaluation::new(&read_scores(&fixture(name)).unwrap(), &split, None).unwrap();
    let reference = evaluate("test.safetensors");
    for name in ["test.npz", "test_f16.safetensors"] {
        let other = evaluate(name);
        assert_eq!(other.metrics().acc, reference.metrics().acc, "{name}");
        assert_eq!(other.metrics().ausuc, reference.metrics().ausuc, "{name}");
    }
}

#[test]
fn scores_written_by_ftcal_read_back_identically() {
    let original: Scores = read_scores(&fixture("train.npz")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.safetensors");
    write_scores(&path, &original).unwrap();
    let back = read_scores(&path).unwrap();
    assert_eq!(back.logits(), original.logits());
    assert_eq!(back.labels(), original.labels());
    assert_eq!(back.features(), original.features());
}

#[test]
fn bad_files_are_refused_with_the_file_and_the_defect() {
    let cases = [
        ("bad_nan.safetensors", "logits[7, 3] is NaN"),
        ("bad_rows.safetensors", "`labels` has 59 rows but `logits` has 60"),
        ("bad_label.npz", "labels[11] = 10 is outside 0..10"),
        (
            "bad_missing.npz",
            "no tensor `labels` (the file holds: logits, targets)",
        ),
    ];
    for (name, message) in cases {
        let error = read_scores(&fixture(name)).unwrap_err().to_string();
        assert!(error.contains(name), "{error:?} should name the file");
        assert!(error.contains(message), "{error:?} should contain {message:?}");
    }
}
