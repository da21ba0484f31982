//! `ftcal models` end to end: the listing, and running a timm fixture to timm's own outputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use ftcal_models::TensorMap;
use ftcal_models::weights::HostData;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models")
}

fn floats(map: &TensorMap, name: &str) -> Vec<f32> {
    match &map.tensors[name].data {
        HostData::Float(values) => values.clone(),
        HostData::Int(_) => panic!("{name} is not float"),
    }
}

#[test]
fn lists_the_registered_models() {
    let output = Command::new(env!("CARGO_BIN_EXE_ftcal"))
        .arg("models")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    let resnet50 = stdout.lines().find(|line| line.starts_with("resnet50 ")).unwrap();
    assert!(
        resnet50.contains("25.6M") && resnet50.contains("224x224"),
        "{resnet50}"
    );
    assert!(stdout.contains("vit_base_patch16_224") && stdout.contains("vit_base_patch32_clip_224"));
}

#[test]
fn runs_a_converted_checkpoint_to_timms_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    for name in ["resnet_bottleneck", "vit_clip_test"] {
        let status = Command::new(env!("CARGO_BIN_EXE_ftcal"))
            .args(["models", "run", "--model"])
            .arg(fixtures().join(format!("{name}.toml")))
            .arg("--weights")
            .arg(fixtures().join(format!("{name}.safetensors")))
            .arg("--input")
            .arg(fixtures().join(format!("{name}.io.safetensors")))
            .arg("--out")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        let ours = TensorMap::read(&out).unwrap();
        let timm = TensorMap::read(&fixtures().join(format!("{name}.io.safetensors"))).unwrap();
        for tensor in ["features", "logits"] {
            let error = floats(&ours, tensor)
                .iter()
                .zip(floats(&timm, tensor))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(error < 1e-4, "{name} {tensor}: {error}");
        }
    }
}

#[test]
fn a_mismatched_checkpoint_names_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ftcal"))
        .args(["models", "run", "--model"])
        .arg(fixtures().join("resnet_basic.toml"))
        .arg("--weights")
        .arg(fixtures().join("resnet_bottleneck.safetensors"))
        .arg("--input")
        .arg(fixtures().join("resnet_basic.io.safetensors"))
        .arg("--out")
        .arg(dir.path().join("out.safetensors"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("do not fit the model") && stderr.contains("unexpected key `layer1.0.conv3.weight`"),
        "{stderr}"
    );
}

/// `bench-train` trains (the loss falls on its one fixed batch) and records what it measured.
#[test]
fn bench_train_trains_and_writes_its_figures() {
    let temp = tempfile::tempdir().unwrap();
    let json = temp.path().join("bench.json");
    // bench-train of the quickstart's model on batches of 8, with `options`; its JSON record.
    let bench = |options: &[&str]| -> serde_json::Value {
        let output = Command::new(env!("CARGO_BIN_EXE_ftcal"))
            .args(["models", "bench-train", "--model"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/models/resnet_digits.toml"))
            .args(["--image-size", "32", "--batch-size", "8", "--classes", "10"])
            .args(options)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
    };
    let record = bench(&[
        "--steps",
        "6",
        "--warmup",
        "1",
        "--lr",
        "0.05",
        "--read-loss-every",
        "1,4",
    ]);
    assert_eq!(record["steps"], 6, "{record:#}");
    assert!(record["images_per_s"].as_f64().unwrap() > 0.0, "{record:#}");
    let first = record["loss_first"].as_f64().unwrap();
    let last = record["loss_last"].as_f64().unwrap();
    assert!(
        last < first,
        "13 SGD steps on one batch lower its loss: {first} -> {last}"
    );
    // One timed phase per read-back interval; with 6 steps read every 4, intervals of 4 and 2 steps.
    let phases = record["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "{record:#}");
    assert_eq!(phases[1]["read_loss_every"], 4, "{record:#}");
    assert_eq!(
        record["read_loss_every"], 1,
        "the first phase at the top: {record:#}"
    );

    // --forward-only times evaluation: no update, so the loss of the fixed batch never moves; --precision
    // is recorded.
    let record = bench(&[
        "--steps",
        "3",
        "--warmup",
        "1",
        "--forward-only",
        "--precision",
        "bf16",
    ]);
    assert_eq!(record["forward_only"], true, "{record:#}");
    assert_eq!(record["precision"], "bf16", "{record:#}");
    assert_eq!(record["loss_first"], record["loss_last"], "{record:#}");

    let output = Command::new(env!("CARGO_BIN_EXE_ftcal"))
        .args(["models", "bench-train", "--steps", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--steps and --batch-size must be at least 1"));
}
