//! `ftcal data check` end to end: the quickstart data, a broken list, config errors, the shipped configs.

mod common;

use common::{ftcal, shipped_benchmark_configs, text};

#[test]
fn quickstart_data_is_clean() {
    let output = ftcal(&["data", "check", "configs/quickstart.toml"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", text(&output.stderr));
    assert!(stdout.contains("fine-tuning classes S (5): 0-4"), "{stdout}");
    assert!(stdout.contains("absent classes U (5): 5-9"), "{stdout}");
    // mnist: 500 a digit split 350/150; optdigits: 1,797 images.
    let total = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("total"))
        .unwrap();
    let totals: Vec<usize> = total
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(totals, vec![3500, 1500, 1258, 539]);
    assert!(stdout.contains("no problems found"));
}

#[test]
fn problems_are_listed_with_file_and_line_and_fail_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (name, class) in [("a.png", 0u8), ("b.png", 1), ("c.png", 1)] {
        image::RgbImage::from_pixel(8, 8, image::Rgb([class * 100, 0, 0]))
            .save(root.join(name))
            .unwrap();
    }
    std::fs::write(root.join("bad.jpg"), b"\xff\xd8 not really").unwrap();
    std::fs::write(
        root.join("train.txt"),
        "a.png 0\nb.png 1\nb.png 7\nbad.jpg 0\nnowhere.png 1\n",
    )
    .unwrap();
    std::fs::write(root.join("test.txt"), "a.png 0\nc.png 1\n").unwrap();
    let config = root.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[data.target]\nkind = \"image_list\"\nroot = \"{0}\"\ntrain = \"{0}/train.txt\"\ntest = \"{0}/test.txt\"\nnum_classes = 2\n\
             [data.classes]\nabsent = [1]\n[data.transforms]\ntrain = \"digits_train\"\neval = \"digits_eval\"\n",
            root.display()
        ),
    )
    .unwrap();
    let output = ftcal(&["data", "check", config.to_str().unwrap(), "--threads", "2"]);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("train.txt:3: label out of range: label 7"),
        "{stdout}"
    );
    assert!(stdout.contains("train.txt:5: missing file"), "{stdout}");
    assert!(
        stdout.contains("bad.jpg: corrupt image") && stdout.contains("train.txt:4"),
        "{stdout}"
    );
    assert!(stderr.contains("3 problem(s) found"), "{stderr}");
}

#[test]
fn unknown_keys_name_the_line_and_the_nearest_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[data.target]\nkind = \"digits2\"\ndomain = \"mnist\"\n[data.classes]\nfine_tuning = [1]\n[data.loader]\nworkres = 2\n",
    )
    .unwrap();
    let output = ftcal(&["data", "check", config.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("line 7") && stderr.contains("unknown field `workres`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `workers`?"), "{stderr}");
}

#[test]
fn shipped_benchmark_configs_are_valid_up_to_the_missing_data() {
    for path in shipped_benchmark_configs() {
        let output = ftcal(&["data", "check", path.to_str().unwrap()]);
        let stderr = text(&output.stderr);
        // Without the datasets on this machine, the only complaint is the dataset root.
        assert!(
            stderr.contains(".root: ") && stderr.contains("is not a folder"),
            "{}: {stderr}",
            path.display()
        );
    }
}
