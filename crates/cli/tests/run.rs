//! `ftcal run` and `ftcal eval` end to end on the embedded Digits-2 data (CPU, flex): the paper's effect on
//! the quickstart with a reduced budget, resume, divergence, config errors, and `ftcal eval`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{digits_target_tables, ftcal, shipped_benchmark_configs, text};
use serde_json::Value;

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

fn summary(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

fn number(value: &Value, path: &[&str]) -> f64 {
    let mut current = value;
    for key in path {
        current = &current[key];
    }
    current
        .as_f64()
        .unwrap_or_else(|| panic!("{} is not a number in {value:#}", path.join(".")))
}

/// A small run without a source stage: the pre-trained model is the seeded initialisation of the quickstart's
/// ResNet, fine-tuned on optdigits 0–4 for `epochs` epochs. Enough to exercise every stage quickly.
fn small_config(dir: &Path, epochs: usize) -> PathBuf {
    let config = format!(
        r#"name = "small"
seed = 3

{}
[fine_tuning]
epochs = {epochs}
batch_size = 64
lr = 0.05

[fine_tuning.optimizer]
name = "sgd"
momentum = 0.9
nesterov = true
weight_decay = 5e-4

[eval]
calibration = ["alg", "oracle"]
"#,
        digits_target_tables()
    );
    let path = dir.join("small.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The quickstart with a reduced budget shows the paper's effect, with margins, measured by the run itself;
/// then `ftcal eval` recomputes the same summary from the saved outputs alone; then Holistic Transfer on the
/// same budget keeps what plain fine-tuning loses.
#[test]
fn quickstart_shows_the_effect_and_eval_reproduces_its_summary() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("quickstart");
    let out = dir.to_str().unwrap();
    let output = ftcal(&[
        "run",
        "configs/quickstart.toml",
        "--out",
        out,
        "--set",
        "source.epochs=4",
        "--set",
        "fine_tuning.epochs=6",
        "--set",
        "eval.pcv_folds=2",
        "--set",
        "eval.pcv_epochs=3",
        "--set",
        "eval.save.features=all",
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("| fine-tuned + PCV"),
        "the summary table is printed:\n{stdout}"
    );
    let run = summary(&dir);
    assert_eq!(run["status"], "completed", "{run:#}");
    let pretrained_u = number(&run, &["pretrained", "acc", "U/Y"]);
    let fine_tuned_u = number(&run, &["finetuned", "acc", "U/Y"]);
    let oracle_u = number(&run, &["calibrated", "oracle", "acc", "U/Y"]);
    let fine_tuned_y = number(&run, &["finetuned", "acc", "Y/Y"]);
    let alg_y = number(&run, &["calibrated", "alg", "acc", "Y/Y"]);
    assert!(
        fine_tuned_u <= pretrained_u - 20.0,
        "absent classes collapse: fine-tuned U/Y {fine_tuned_u} vs pre-trained {pretrained_u}"
    );
    assert!(
        oracle_u >= pretrained_u - 5.0,
        "γ* gives them back: oracle U/Y {oracle_u} vs pre-trained {pretrained_u}"
    );
    assert!(
        alg_y > fine_tuned_y,
        "ALG helps: Y/Y {alg_y} vs fine-tuned {fine_tuned_y}"
    );
    assert!(run["calibrated"]["pcv"]["gamma"].is_f64(), "{run:#}");
    // The PCV folds train for their own, shorter budget; the main fine-tuning keeps its own.
    for (stage, epochs) in [("fine_tuning", 6), ("pcv-0", 3), ("pcv-1", 3)] {
        let path = dir.join(format!("checkpoints/{stage}/state.json"));
        let state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(state["epochs_done"], epochs, "{}: {state:#}", path.display());
    }
    for file in [
        "config.toml",
        "log.txt",
        "metrics.csv",
        "report.md",
        "curve.png",
        "epochs.png",
        "head-norms.png",
    ] {
        assert!(dir.join(file).exists(), "{file} is written");
    }
    // The paper's explanation, in the head's weights: fine-tuning on S grows S's rows and biases against U's.
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = metrics.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    let value = |row: &[&str], column: &str| -> f64 {
        let at = header.iter().position(|h| *h == column).unwrap();
        row[at].parse().unwrap_or_else(|_| panic!("{column} in {row:?}"))
    };
    let (first, last) = (&rows[0], rows.last().unwrap());
    assert_eq!(first[0], "-1");
    let gap = |row: &[&str], s: &str, u: &str| value(row, s) - value(row, u);
    assert!(
        gap(last, "head norm S", "head norm U") > gap(first, "head norm S", "head norm U") + 0.1,
        "the norms of S's rows grow against U's:\n{metrics}"
    );
    assert!(
        gap(last, "head bias S", "head bias U") > gap(first, "head bias S", "head bias U") + 0.05,
        "S's biases grow against U's:\n{metrics}"
    );
    for split in ["train", "test"] {
        for epoch in -1..6 {
            let path = dir.join(format!("outputs/{split}/{epoch}.safetensors"));
            assert!(path.exists(), "{} is saved", path.display());
        }
    }
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        1 + 7,
        "a header and epochs −1..5:\n{metrics}"
    );

    // `ftcal eval` is a pure function of the saved outputs (here every epoch kept its features, so that
    // every cell of metrics.csv can be computed again from them).
    let before = std::fs::read(dir.join("summary.json")).unwrap();
    let metrics_before = std::fs::read(dir.join("metrics.csv")).unwrap();
    std::fs::remove_file(dir.join("summary.json")).unwrap();
    std::fs::remove_file(dir.join("metrics.csv")).unwrap();
    let output = ftcal(&["eval", out]);
    assert!(output.status.success(), "{}", describe(&output));
    let after = std::fs::read(dir.join("summary.json")).unwrap();
    assert_eq!(text(&before), text(&after), "ftcal eval reproduces summary.json");
    // Every cell but the head's norms, which were measured on each epoch's model (not saved): without
    // the recorded file they are left empty, never made up.
    let without_norms = |csv: &str| -> Vec<String> {
        csv.lines()
            .map(|line| line.split(',').take(21).collect::<Vec<_>>().join(","))
            .collect()
    };
    let metrics_after = String::from_utf8(std::fs::read(dir.join("metrics.csv")).unwrap()).unwrap();
    assert_eq!(
        without_norms(&text(&metrics_before)),
        without_norms(&metrics_after)
    );
    for line in metrics_after.lines().skip(1) {
        assert!(line.ends_with(",,,,"), "no norm is made up: {line}");
    }

    // `ftcal calibrate` on the run's files chooses the same γ by ALG and by PCV, and gives the same test
    // accuracies: one fold named by its split.json, the other by its class list.
    let fold_1: Value =
        serde_json::from_slice(&std::fs::read(dir.join("outputs/pcv/1/split.json")).unwrap()).unwrap();
    let pseudo_absent: Vec<String> = (fold_1["pseudo_absent"].as_array().unwrap().iter())
        .map(|class| class.to_string())
        .collect();
    let calibrated = temp.path().join("calibrated.json");
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let output = ftcal(&[
        "calibrate",
        "--train",
        &file("outputs/train/5.safetensors"),
        "--test",
        &file("outputs/test/5.safetensors"),
        "--absent",
        "5-9",
        "--pretrained-train",
        &file("outputs/train/-1.safetensors"),
        "--pcv-fold",
        &file("outputs/pcv/0/train.safetensors"),
        "--pcv-fold",
        &format!(
            "{}:{}",
            file("outputs/pcv/1/train.safetensors"),
            pseudo_absent.join(",")
        ),
        "--json",
        calibrated.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let calibrated: Value = serde_json::from_slice(&std::fs::read(&calibrated).unwrap()).unwrap();
    assert_eq!(calibrated["calibrated"], run["calibrated"], "{calibrated:#}");

    // A finished run is not redone.
    let output = ftcal(&[
        "run",
        "configs/quickstart.toml",
        "--out",
        out,
        "--set",
        "source.epochs=4",
        "--set",
        "fine_tuning.epochs=6",
        "--set",
        "eval.pcv_folds=2",
        "--set",
        "eval.pcv_epochs=3",
        "--set",
        "eval.save.features=all",
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("already finished"),
        "{}",
        describe(&output)
    );

    // Holistic Transfer (configs/quickstart-ht.toml) on the same setting and budget, without PCV: the same
    // pre-trained model (the source stage is deterministic), and the absent classes kept far better than
    // plain fine-tuning keeps them. An HT run is a run: ALG and γ* calibrate it as any other.
    let ht_dir = temp.path().join("quickstart-ht");
    let output = ftcal(&[
        "run",
        "configs/quickstart-ht.toml",
        "--out",
        ht_dir.to_str().unwrap(),
        "--set",
        "source.epochs=4",
        "--set",
        "fine_tuning.epochs=6",
        "--set",
        "eval.calibration=[\"alg\", \"oracle\"]",
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let ht = summary(&ht_dir);
    assert_eq!(ht["pretrained"], run["pretrained"], "the same pre-trained model");
    assert_eq!(ht["method"]["name"], "holistic_transfer", "{ht:#}");
    assert_eq!(ht["method"]["label"], "HT-style (ftcal)", "{ht:#}");
    assert_eq!(run["method"]["name"], "full", "{run:#}");
    let ht_u = number(&ht, &["finetuned", "acc", "U/Y"]);
    let collapse = pretrained_u - fine_tuned_u;
    assert!(
        ht_u >= fine_tuned_u + collapse / 2.0,
        "HT keeps U: U/Y {ht_u} vs fine-tuning's {fine_tuned_u} (pre-trained {pretrained_u})"
    );
    for calibration in ["alg", "oracle"] {
        assert!(
            ht["calibrated"][calibration]["gamma"].is_f64(),
            "{calibration}: {ht:#}"
        );
    }
}

/// A huge learning rate makes the loss NaN or infinite: the run stops, says where, and exits with 3.
/// The paper's all-classes oracle row: a run fine-tuned on every class (U empty) completes with every
/// accuracy that is still defined and no calibration, and `ftcal eval` reproduces it.
#[test]
fn a_run_fine_tuned_on_every_class_has_accuracies_and_nothing_to_calibrate() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path(), 1);
    let dir = temp.path().join("all-classes");
    let output = ftcal(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--set",
        "data.classes.fine_tuning=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]",
        "--set",
        "eval.calibration=[\"alg\", \"pcv\", \"oracle\"]",
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let run = summary(&dir);
    assert_eq!(run["status"], "completed", "{run:#}");
    for model in ["pretrained", "finetuned"] {
        let acc = &run[model]["acc"];
        assert_eq!(number(acc, &["Y/Y"]), number(acc, &["S/Y"]), "Y is S: {run:#}");
        assert!(
            acc.get("U/Y").is_none() && run[model].get("ausuc").is_none(),
            "{run:#}"
        );
    }
    assert_eq!(
        run["calibrated"],
        serde_json::json!({}),
        "nothing to calibrate: {run:#}"
    );
    assert!(!dir.join("outputs/pcv").exists(), "no PCV folds are trained");
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(log.contains("U is empty"), "{log}");
    let before = std::fs::read(dir.join("summary.json")).unwrap();
    let output = ftcal(&["eval", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(std::fs::read(dir.join("summary.json")).unwrap(), before);
}

#[test]
fn a_diverging_run_records_where_and_exits_with_its_own_code() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path(), 2);
    let dir = temp.path().join("diverged");
    let output = ftcal(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--set",
        "fine_tuning.lr=1e30",
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(text(&output.stderr).contains("diverged"), "{}", describe(&output));
    let run = summary(&dir);
    assert_eq!(run["status"], "diverged", "{run:#}");
    assert_eq!(run["diverged"]["stage"], "fine_tuning", "{run:#}");
    assert_eq!(run["diverged"]["epoch"], 0, "{run:#}");
    assert!(
        run["pretrained"]["acc"]["Y/Y"].is_f64(),
        "what was measured stays: {run:#}"
    );
    assert!(run.get("finetuned").is_none(), "nothing made up: {run:#}");
}

#[test]
fn config_errors_name_the_key_and_the_nearest_valid_one() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path(), 1);
    let text_config = std::fs::read_to_string(&config).unwrap();
    let typo = temp.path().join("typo.toml");
    std::fs::write(
        &typo,
        text_config.replace("lr = 0.05", "lr = 0.05\nbackbone_lr_multiplyer = 0.1"),
    )
    .unwrap();
    let output = ftcal(&["run", typo.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("unknown field `backbone_lr_multiplyer`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean `backbone_lr_multiplier`?"),
        "{stderr}"
    );
    assert!(stderr.contains("line 22"), "the line is named: {stderr}");

    let output = ftcal(&[
        "run",
        config.to_str().unwrap(),
        "--set",
        "fine_tuning.optimizer.betas=[0.9, 0.99]",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fine_tuning.optimizer.betas"), "{stderr}");

    let output = ftcal(&["run", config.to_str().unwrap(), "--set", "eval.evry=2"]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("unknown field `evry`") && stderr.contains("did you mean `every`?"),
        "{stderr}"
    );

    let output = ftcal(&["run", config.to_str().unwrap(), "--set", "fine_tuning.epochs=0"]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("fine_tuning.epochs: must be at least 1"),
        "{stderr}"
    );
}

#[test]
fn a_run_directory_of_another_config_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path(), 1);
    let dir = temp.path().join("run");
    let output = ftcal(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--stop-after-epoch",
        "0",
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let output = ftcal(&[
        "run",
        config.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--set",
        "seed=4",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another config (`seed` differs)") && stderr.contains("--force"),
        "{stderr}"
    );

    // A config.toml written before a key existed (here without `pcv_folds`) is the same run when its
    // default fills the gap: the run resumes and the file gains the key.
    let saved_path = dir.join("config.toml");
    let saved = std::fs::read_to_string(&saved_path).unwrap();
    let older: String = saved
        .lines()
        .filter(|line| !line.starts_with("pcv_folds = "))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(older, saved, "config.toml holds pcv_folds:\n{saved}");
    std::fs::write(&saved_path, older).unwrap();
    let output = ftcal(&["run", config.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(std::fs::read_to_string(&saved_path).unwrap(), saved);
    assert_eq!(summary(&dir)["status"], "completed");
}

/// The per-epoch training losses of a stage, from its `state.json`.
fn epoch_losses(dir: &Path, stage: &str) -> Vec<f64> {
    let path = dir.join(format!("checkpoints/{stage}/state.json"));
    let state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (state["history"].as_array().unwrap().iter())
        .map(|epoch| epoch["loss"].as_f64().unwrap())
        .collect()
}

/// `precision = "bf16"` (products in bfloat16, float32 master weights and optimizer state) against float32,
/// on flex, in the paper's setting: the same pre-trained model (a reduced quickstart's source model, trained
/// in float32) evaluated and fine-tuned on S in each precision. Measured: every accuracy within 0.75
/// points, AUSUC within 0.005, each epoch's loss within 0.5 %. (A source model trained from scratch in
/// bf16 is another model, as another seed's would be: on the full quickstart its fine-tuning differs as
/// seeds do; README §Backends.)
#[test]
fn bf16_mixed_precision_agrees_with_f32_on_the_quickstart() {
    let temp = tempfile::tempdir().unwrap();
    let run = |config: &Path, dir: &Path, overrides: &[&str]| {
        let mut args = vec!["run", config.to_str().unwrap(), "--out", dir.to_str().unwrap()];
        let reduced = [
            "fine_tuning.epochs=4",
            "eval.calibration=[\"alg\", \"oracle\"]",
            "eval.every=4",
        ];
        for value in reduced.iter().chain(overrides) {
            args.extend(["--set", value]);
        }
        let output = ftcal(&args);
        assert!(output.status.success(), "{}", describe(&output));
    };
    let full = temp.path().join("f32");
    run(Path::new("configs/quickstart.toml"), &full, &["source.epochs=3"]);
    // The quickstart's fine-tuning, from its source model's file, in bf16.
    let source_model = full.join("models/source.safetensors");
    let quickstart = std::fs::read_to_string(common::workspace().join("configs/quickstart.toml")).unwrap();
    let fine_tuning = &quickstart[quickstart.find("[fine_tuning]").unwrap()..];
    let config = format!(
        "name = \"bf16\"\nprecision = \"bf16\"\n\n{}\n{fine_tuning}",
        digits_target_tables().replace(
            "[model]\n",
            &format!("[model]\nweights = \"{}\"\n", source_model.display())
        )
    );
    let config_path = temp.path().join("bf16.toml");
    std::fs::write(&config_path, config).unwrap();
    let mixed = temp.path().join("bf16");
    run(&config_path, &mixed, &[]);
    let saved = std::fs::read_to_string(mixed.join("config.toml")).unwrap();
    assert!(saved.contains("precision = \"bf16\""), "{saved}");
    let log = std::fs::read_to_string(mixed.join("log.txt")).unwrap();
    assert!(log.contains("in bf16 mixed precision"), "{log}");

    let (expected, got) = (
        epoch_losses(&full, "fine_tuning"),
        epoch_losses(&mixed, "fine_tuning"),
    );
    assert_eq!(expected.len(), 4);
    assert_ne!(
        expected, got,
        "bf16 gave float32's losses exactly: no product ran in bf16"
    );
    for (epoch, (expected, got)) in expected.iter().zip(&got).enumerate() {
        assert!(
            (got - expected).abs() <= 0.02 * expected,
            "fine-tuning epoch {epoch}: loss {got} in bf16, {expected} in float32"
        );
    }
    let (full, mixed) = (summary(&full), summary(&mixed));
    let mut paths = vec![
        vec!["pretrained", "ncm", "Y/Y"],
        vec!["finetuned", "ncm", "Y/Y"],
        vec!["calibrated", "oracle", "acc", "Y/Y"],
    ];
    for model in [&["pretrained"][..], &["finetuned"], &["calibrated", "alg"]] {
        for column in ["Y/Y", "S/Y", "U/Y"] {
            paths.push([model, &["acc", column]].concat());
        }
    }
    for path in &paths {
        let (expected, got) = (number(&full, path), number(&mixed, path));
        assert!(
            (got - expected).abs() <= 1.5,
            "{}: {got} in bf16, {expected} in float32",
            path.join(".")
        );
    }
    for model in ["pretrained", "finetuned"] {
        let (expected, got) = (
            number(&full, &[model, "ausuc"]),
            number(&mixed, &[model, "ausuc"]),
        );
        assert!(
            (got - expected).abs() <= 0.01,
            "{model} AUSUC: {got} in bf16, {expected} in float32"
        );
    }
    for run in [&full, &mixed] {
        assert!(
            number(run, &["finetuned", "acc", "U/Y"]) <= 5.0,
            "U collapses: {run:#}"
        );
        assert!(
            number(run, &["calibrated", "alg", "acc", "Y/Y"])
                > number(run, &["finetuned", "acc", "Y/Y"]) + 5.0,
            "ALG recovers: {run:#}"
        );
    }
}

#[test]
fn a_backend_this_binary_cannot_use_is_an_error_not_a_panic() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path(), 1);
    let output = ftcal(&[
        "run",
        config.to_str().unwrap(),
        "--set",
        "backend=cuda",
        "--out",
        temp.path().join("cuda").to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cuda"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every shipped benchmark config is a complete run config: `ftcal run` gets as far as the dataset root.
#[test]
fn shipped_benchmark_configs_run_up_to_the_missing_data() {
    let temp = tempfile::tempdir().unwrap();
    for (index, path) in shipped_benchmark_configs().iter().enumerate() {
        let out = temp.path().join(index.to_string());
        let output = ftcal(&[
            "run",
            path.to_str().unwrap(),
            "--set",
            "backend=flex",
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(".root: ") && stderr.contains("is not a folder"),
            "{}: {stderr}",
            path.display()
        );
        // Nothing was computed, so a corrected config may take the directory over.
        let output = ftcal(&[
            "run",
            path.to_str().unwrap(),
            "--set",
            "backend=flex",
            "--set",
            "seed=7",
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = text(&output.stderr);
        assert!(stderr.contains("is not a folder"), "{}: {stderr}", path.display());
    }
}
