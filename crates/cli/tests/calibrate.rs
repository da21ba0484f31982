//! End-to-end tests of `ftcal calibrate` on the score files of `tests/fixtures/eval/` (written by NumPy).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{ftcal, text};
use serde_json::Value;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eval")
        .join(name);
    path.to_string_lossy().into_owned()
}

fn calibrate(train: &str, test: &str, absent: &str, extra: &[&str]) -> Output {
    let mut args = vec!["calibrate", "--train", train, "--test", test, "--absent", absent];
    args.extend_from_slice(extra);
    ftcal(&args)
}

fn stderr(output: &Output) -> String {
    text(&output.stderr)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn calibrate_prints_the_tables_and_writes_json_csv_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (json, csv, png, curve) = (path("s.json"), path("t.csv"), path("c.png"), path("curve.csv"));
    let output = calibrate(
        &fixture("train.npz"),
        &fixture("test.safetensors"),
        "1,4,7-8",
        &[
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--plot",
            png.to_str().unwrap(),
            "--curve",
            curve.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    for row in [
        "| fine-tuned ",
        "| fine-tuned + ALG ",
        "| oracle γ* ",
        "| NCM, fine-tuned ",
        "Top-5 accuracy",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in\n{stdout}");
    }

    let expected = read_json(&PathBuf::from(fixture("expected.json")));
    let summary = read_json(&json);
    for key in ["Y/Y", "S/Y", "U/Y", "S/S", "U/U"] {
        let ours = summary["finetuned"]["acc"][key].as_f64().unwrap();
        let numpy = expected["acc"][key].as_f64().unwrap();
        assert!((ours - numpy).abs() < 1e-9, "{key}: {ours} vs {numpy}");
        let ours = summary["calibrated"]["alg"]["acc"][key].as_f64().unwrap();
        let numpy = expected["alg_acc"][key].as_f64().unwrap();
        assert!((ours - numpy).abs() < 1e-9, "ALG {key}: {ours} vs {numpy}");
    }
    let gamma = summary["calibrated"]["alg"]["gamma"].as_f64().unwrap();
    assert!((gamma - expected["alg_gamma"].as_f64().unwrap()).abs() < 1e-9);
    assert!(
        summary["calibrated"].get("pcv").is_none(),
        "PCV needs fine-tunings: not run here"
    );
    assert!(summary.get("pretrained").is_none());

    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(
        csv.starts_with("model,γ,Y/Y,S/Y,U/Y,S/S,U/U,AUSUC\nfine-tuned,,"),
        "{csv}"
    );
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let curve = std::fs::read_to_string(&curve).unwrap();
    let rows: Vec<&str> = curve.lines().collect();
    assert_eq!(rows[0], "gamma,gamma_low,gamma_high,S/Y,U/Y,Y/Y");
    assert!(
        rows[1].contains(",-inf,") && rows.last().unwrap().contains(",inf,"),
        "{curve}"
    );
}

#[test]
fn an_absent_list_file_gives_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("absent.txt");
    std::fs::write(&list, "# U of the fixture\n1\n4\n7-8\n").unwrap();
    let inline = calibrate(&fixture("train.npz"), &fixture("test.npz"), "1,4,7,8", &[]);
    let from_file = calibrate(
        &fixture("train.npz"),
        &fixture("test.npz"),
        &format!("@{}", list.display()),
        &[],
    );
    assert!(
        inline.status.success() && from_file.status.success(),
        "{}",
        stderr(&from_file)
    );
    assert_eq!(inline.stdout, from_file.stdout);
}

#[test]
fn explicit_fine_tuning_classes_leave_the_rest_outside() {
    let output = calibrate(
        &fixture("train.npz"),
        &fixture("test.safetensors"),
        "1,4",
        &["--fine-tuning", "0,2,3,5,6,9", "--exclude-outside"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("|S| = 6, |U| = 2, 2 outside both (excluded from Y)"),
        "{stdout}"
    );
}

#[test]
fn bad_inputs_fail_with_a_message_naming_the_problem() {
    let (train, test) = (fixture("train.npz"), fixture("test.safetensors"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![train.clone(), fixture("bad_nan.safetensors"), "1".into()],
            "bad_nan.safetensors: logits[7, 3] is NaN",
        ),
        (
            vec![train.clone(), fixture("bad_rows.safetensors"), "1".into()],
            "`labels` has 59 rows but `logits` has 60",
        ),
        (
            vec![train.clone(), fixture("bad_label.npz"), "1".into()],
            "bad_label.npz: labels[11] = 10 is outside 0..10",
        ),
        (
            vec![fixture("bad_missing.npz"), test.clone(), "1".into()],
            "no tensor `labels`",
        ),
        (
            vec![train.clone(), test.clone(), "".into()],
            "--absent: the class list is empty",
        ),
        (
            vec![train.clone(), test.clone(), "3,12".into()],
            "absent (U) class 12 is out of range: the logits have 10 classes (0–9)",
        ),
        (
            vec![train.clone(), test.clone(), "0-9".into()],
            "the absent list names all 10 classes",
        ),
        (
            vec![train.clone(), test.clone(), "1,x".into()],
            "--absent: `x` is not a class index",
        ),
        (
            vec![train.clone(), test.clone(), "@/nonexistent/u.txt".into()],
            "--absent: cannot read /nonexistent/u.txt",
        ),
        (
            vec![train.clone(), "/nonexistent/test.npz".into(), "1".into()],
            "/nonexistent/test.npz",
        ),
    ];
    for (args, message) in cases {
        let output = calibrate(&args[0], &args[1], &args[2], &[]);
        assert!(!output.status.success(), "{args:?} should fail");
        let error = stderr(&output);
        assert!(
            error.contains(message),
            "{args:?}: {error:?} should contain {message:?}"
        );
        assert!(error.starts_with("error: "), "{error}");
    }
}

#[test]
fn train_and_test_from_different_heads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("three_classes.safetensors");
    let logits = ftcal_eval::Matrix::new(2, 3, vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let scores = ftcal_eval::Scores::new("mem", logits, &[0, 2], None).unwrap();
    ftcal_eval::write_scores(&other, &scores).unwrap();
    let output = calibrate(other.to_str().unwrap(), &fixture("test.safetensors"), "1", &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("has 3 classes but"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn pcv_folds_name_their_pseudo_absent_classes_of_s() {
    let (train, test) = (fixture("train.npz"), fixture("test.safetensors"));
    // Here any training scores stand in for a fold's model: the fixture has S = 0–5 and U = 6–9.
    let fold = |spec: &str| {
        calibrate(
            &train,
            &test,
            "6-9",
            &["--pretrained-train", &train, "--pcv-fold", spec],
        )
    };
    let output = fold(&format!("{train}:1,4"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        text(&output.stdout).contains("PCV = "),
        "{}",
        text(&output.stdout)
    );
    assert!(
        text(&output.stdout).contains("| fine-tuned + PCV"),
        "{}",
        text(&output.stdout)
    );
    for (spec, message) in [
        (
            format!("{train}:1,7"),
            "pseudo-absent class 7 is not a fine-tuning class",
        ),
        (format!("{train}:0-5"), "needs classes of S on both sides"),
        (train.clone(), "no class list given and cannot read"),
    ] {
        let output = fold(&spec);
        assert!(!output.status.success(), "{spec} should fail");
        assert!(stderr(&output).contains(message), "{spec}: {}", stderr(&output));
    }
    let output = calibrate(&train, &test, "6-9", &["--pcv-fold", &format!("{train}:1")]);
    assert!(
        stderr(&output).contains("--pretrained-train"),
        "{}",
        stderr(&output)
    );
}
